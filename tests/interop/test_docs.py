"""The code blocks of docs/interop.md run, in order, on tiny models."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import torch

from videomage.cli import main

from interop_helpers import as_bin, random_artifact

PAGE = Path(__file__).resolve().parents[2] / "docs" / "interop.md"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(PAGE.read_text())


def test_the_page_has_code_and_is_in_the_nav():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") >= 3 and kinds.count("bash") >= 4
    assert "interop.md" in (PAGE.parents[1] / "mkdocs.yml").read_text()


def test_every_code_block_of_the_page_runs(wan_dir, zs_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toy = random_artifact(wan_dir, ["spatial", "temporal"])
    toy.save("toy.safetensors")
    random_artifact(zs_dir, ["spatial"], token="<dog>").save("dog.safetensors")
    bin_dir = as_bin(zs_dir, tmp_path / "bin-model")
    names = {"~/models/zeroscope_v2_576w": str(bin_dir), "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": str(wan_dir),
             "cerspense/zeroscope_v2_576w": str(zs_dir)}
    namespace: dict = {}
    after: list[dict] = []  # the namespace after each python block
    for kind, code in blocks():
        for name, local in names.items():
            code = code.replace(name, local)
        if kind == "python":
            exec(compile(code, str(PAGE), "exec"), namespace)
            after.append(dict(namespace))
            continue
        for line in code.replace("\\\n", " ").splitlines():  # a command wrapped with backslashes is one line
            if line.startswith("hf download "):
                continue  # needs the network; the folder it makes is the tiny one here
            assert line.startswith("videomage "), f"unexpected shell line in the docs: {line!r}"
            assert main(shlex.split(line)[1:]) == 0, line
    assert Path("toy-imported.safetensors").is_file()
    assert not list((bin_dir / "unet").glob("*.bin"))  # convert-model ran
    assert not namespace["result"].unexpected_keys

    # The T5 token snippet put the learned vector on the row videomage uses for it.
    from videomage.loading import load_backbone, make_adapter

    wan_pipe = after[0]["pipe"]
    backbone = load_backbone(str(wan_dir))
    toy.install(backbone, make_adapter(), "toy")
    row = wan_pipe.tokenizer.convert_tokens_to_ids("<toy>")
    assert row == backbone.token_ids(["<toy>"])[0]
    assert wan_pipe.tokenizer("a <toy>").input_ids == backbone.text.tokenizer("a <toy>").input_ids
    weight = wan_pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(weight[row], toy.embeddings["<toy>"].to(weight.dtype))
