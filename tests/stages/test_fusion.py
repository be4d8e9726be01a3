"""Fusion on a tiny model: the student starts at the teachers' average and learns from them."""

from __future__ import annotations

import torch

from videomage.artifact import Artifact
from videomage.components import TrainingContext
from videomage.config import FusionConfig
from videomage.plugins import get_registry
from videomage.stages.fusion import fuse
from videomage.stages.subject import StageOptions
from videomage.trainer import ParamGroup, Trainer, TrainerConfig


def random_teacher(backbone, adapter, name, token, word, seed):
    backbone.add_tokens([token], [word])
    adapter.attach(backbone, name, roles=["spatial"], rank=2)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters(backbone, name):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return name


def fixed(backbone, seed, prompt):
    spec = backbone.video_spec
    g = torch.Generator().manual_seed(seed)
    latents = backbone.encode_video(torch.rand(1, 2, 3, spec.height, spec.width, generator=g))
    return {"latents": latents, "prompts": [prompt], "noise": torch.randn(latents.shape, generator=g),
            "timesteps": torch.tensor([400])}


def optimise(ctx, objective, batch, params, steps=10, lr=3e-3):
    before = objective.loss(ctx, batch).loss.item()
    Trainer(TrainerConfig(steps=steps, progress=False, max_grad_norm=None), [ParamGroup(name="p", params=params, lr=lr)],
            lambda s, g: objective.loss(ctx, batch)).fit()
    return before, objective.loss(ctx, batch).loss.item()


def test_student_lowers_fusion_loss_below_its_initialisation(backbone, adapter):
    teachers = [random_teacher(backbone, adapter, "t0", "<toy>", "toy", 0), random_teacher(backbone, adapter, "t1", "<dog>", "dog", 1)]
    adapter.attach_average(backbone, "student", teachers)
    ctx = TrainingContext(backbone=backbone, adapter=adapter, trained=("student",))
    items = [dict(fixed(backbone, 2, "A <toy>"), teacher="t0"), dict(fixed(backbone, 3, "A <dog>"), teacher="t1")]
    objective = get_registry().create("objective", "fusion_distill")
    before, after = optimise(ctx, objective, {"subjects": items}, adapter.parameters(backbone, "student"))
    assert after < before


def test_attention_regularisation_falls_when_optimised(backbone, adapter):
    random_teacher(backbone, adapter, "t0", "<toy>", "toy", 0)
    random_teacher(backbone, adapter, "t1", "<dog>", "dog", 1)
    adapter.attach_average(backbone, "student", ["t0", "t1"])
    adapter.activate(backbone, {"student": 1.0})
    ctx = TrainingContext(backbone=backbone, adapter=adapter, trained=("student",))
    spec = backbone.video_spec
    batch = fixed(backbone, 4, "A <toy> and a <dog>")
    masks = torch.zeros(1, 2, 2, spec.height, spec.width)
    masks[:, 0, ..., : spec.width // 2] = 1
    masks[:, 1, ..., spec.width // 2 :] = 1
    batch.update(masks=masks, token_positions=[backbone.word_positions(batch["prompts"][0], t) for t in ("<toy>", "<dog>")])
    objective = get_registry().create("objective", "attention_reg")
    before, after = optimise(ctx, objective, batch, adapter.parameters(backbone, "student"), lr=1e-2)
    assert after < before


def test_fuse_stage_writes_a_fused_artifact(backbone, adapter, tmp_path):
    paths = []
    for i, (token, word) in enumerate([("<toy>", "toy"), ("<dog>", "dog")]):
        name = random_teacher(backbone, adapter, f"src{i}", token, word, i)
        art = Artifact(kind="subject", backbone=backbone.name, fingerprint=backbone.fingerprint(), adapter=adapter.name,
                       adapter_config={"rank": 2}, roles=["spatial"], tokens={token: word},
                       adapter_tensors=adapter.state_dict(backbone, name), embeddings=backbone.token_embeddings([token]))
        paths.append(art.save(tmp_path / f"{word}.safetensors"))
    opts = StageOptions(progress=False, prior_steps=2, frames=2, work_dir=tmp_path / "work")
    fused = fuse(backbone, adapter, paths, FusionConfig(steps=2, videos_per_subject=1, mask_source="foreground"), opts)
    assert fused.kind == "fused" and fused.tokens == {"<toy>": "toy", "<dog>": "dog"}
    assert fused.adapter_config["rank"] == 4 and fused.roles == ("spatial",)
    assert list((tmp_path / "work" / "cache").glob("teacher-*.safetensors"))  # teacher videos cached
