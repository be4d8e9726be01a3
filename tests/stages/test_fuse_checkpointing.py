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


def test_fusion_backpropagates_each_term_at_once_with_the_gradients_of_the_sum(tiny_model_dir, tmp_path, monkeypatch):
    """Each distillation term and the attention term is backpropagated as soon as it is computed
    (a step holds one forward graph, not three); the student's gradients are the summed loss's."""
    import videomage.stages.fusion as fusion
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    model = str(tiny_model_dir)
    paths = subjects(load_backbone(model), make_adapter(), tmp_path)
    work = tmp_path / "work"  # the teacher videos are made once and read by both runs
    backward = torch.Tensor.backward

    def step(summed):
        if summed:  # the loss as it was: every term summed, one backward pass
            monkeypatch.setattr(fusion, "backward_now", lambda loss: loss)
        calls, grads = [], []

        def counted(self, *args, **kwargs):
            calls.append(1)
            return backward(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "backward", counted)
        hook = register_optimizer_step_pre_hook(
            lambda opt, *_: grads.extend(p.grad.clone() for g in opt.param_groups for p in g["params"]))
        try:
            opts = StageOptions(progress=False, prior_steps=1, work_dir=work)
            fuse(load_backbone(model), make_adapter(), paths, FusionConfig(steps=1, videos_per_subject=1), opts)
        finally:
            hook.remove()
            monkeypatch.undo()
        (work / "ckpt-fusion" / "checkpoint.safetensors").unlink()
        return len(calls), grads

    n_sum, summed = step(True)
    n_each, each = step(False)
    assert (n_sum, n_each) == (1, 3)  # two subjects' distillation terms and the attention term
    assert len(summed) == len(each) > 0
    for a, b in zip(summed, each):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
