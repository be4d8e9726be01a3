"""The contract-test example of docs/writing-a-plugin.md runs as a third party's suite would."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "videomage-huber"


def test_writing_a_plugin_contract_example_passes(pytester, monkeypatch, tiny_backbone_with_lora):
    import torch

    monkeypatch.syspath_prepend(str(EXAMPLE))
    from videomage_huber import HuberDenoise

    # The in-process run below forgets the modules it imports when it ends, and torch's
    # operator libraries cannot be imported twice: import everything the example uses first.
    ctx = tiny_backbone_with_lora
    spec = ctx.backbone.video_spec
    latents = ctx.backbone.encode_video(torch.rand(1, spec.frames, 3, spec.height, spec.width))
    HuberDenoise().loss(ctx, {"latents": latents, "prompts": ["a toy"]}).loss.backward()

    page = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "Contract" in b]
    # What the page tells a plugin author to put in their conftest.py.
    (line,) = re.findall(r"`(pytest_plugins = \[.*?\])`", page)
    pytester.makeconftest(line)
    pytester.makepyfile(test_huber=snippet)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
