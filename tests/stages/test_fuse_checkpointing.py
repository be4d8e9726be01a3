"""`fuse --gradient-checkpointing` on both backbones: the attention capture of L_attn stays open
through the backward pass, whose checkpointed layers run again (and must save what they saved)."""

from __future__ import annotations

import pytest
import torch

from videomage.artifact import Artifact
from videomage.config import FusionConfig
from videomage.loading import load_backbone, make_adapter
from videomage.stages.fusion import fuse
from videomage.stages.subject import StageOptions


def subjects(backbone, adapter, folder):
    paths = []
    for i, (token, word) in enumerate([("<toy>", "toy"), ("<pup>", "dog")]):
        backbone.add_tokens([token], [word])
        adapter.attach(backbone, f"src{i}", roles=["spatial"], rank=2)
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in adapter.parameters(backbone, f"src{i}"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        art = Artifact(kind="subject", backbone=backbone.name, fingerprint=backbone.fingerprint(), adapter=adapter.name,
                       adapter_config={"rank": 2}, roles=["spatial"], tokens={token: word},
                       adapter_tensors=adapter.state_dict(backbone, f"src{i}"), embeddings=backbone.token_embeddings([token]))
        paths.append(art.save(folder / f"{word}.safetensors"))
        adapter.remove(backbone, f"src{i}")
    return paths


def fused_weights(model, paths, checkpointing, work):
    backbone, adapter = load_backbone(model), make_adapter()
    opts = StageOptions(progress=False, prior_steps=1, gradient_checkpointing=checkpointing, work_dir=work)
    art = fuse(backbone, adapter, paths, FusionConfig(steps=2, videos_per_subject=1, lambda_attn=1.0), opts)
    return art.adapter_tensors


@pytest.mark.parametrize("family", ["zeroscope", "wan"])
def test_fuse_with_gradient_checkpointing_gives_the_same_student(family, tiny_model_dir, tmp_path):
    if family == "wan":
        from videomage_wan.tiny import save_tiny_wan

        model = str(save_tiny_wan(tmp_path / "wan"))
    else:
        model = str(tiny_model_dir)
    paths = subjects(load_backbone(model), make_adapter(), tmp_path)
    work = tmp_path / "work"  # shared: the second run reuses the teacher videos of the first
    plain = fused_weights(model, paths, False, work)
    (work / "ckpt-fusion" / "checkpoint.safetensors").unlink()
    checkpointed = fused_weights(model, paths, True, work)
    assert plain.keys() == checkpointed.keys()
    for key in plain:  # recomputation gives the same gradients, up to float rounding
        assert torch.allclose(plain[key], checkpointed[key], atol=1e-5), key
