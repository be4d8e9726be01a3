"""`ObjectiveContract` over every registered objective (bundled, and the example plugin's).

Each case is the tiny ZeroScope with a fresh LoRA (the ``tiny_backbone_with_lora`` fixture of
`videomage.testing.fixtures`) and a batch of the keys the objective documents.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from videomage import get_registry
from videomage.testing import ObjectiveContract

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "videomage-huber"


def huber_class():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from videomage_huber import HuberDenoise
    finally:
        sys.path.remove(str(EXAMPLE))
    return HuberDenoise


def clip(backbone, seed=0):
    spec = backbone.video_spec
    video = torch.rand(1, spec.frames, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return backbone.encode_video(video)


def teacher(ctx, name="teacher"):
    """A second spatial LoRA with non-zero weights, so a student has something to match."""
    ctx.adapter.attach(ctx.backbone, name, roles=["spatial"])
    with torch.no_grad():
        for p in ctx.adapter.parameters(ctx.backbone, name):
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    ctx.adapter.activate(ctx.backbone, {ctx.trained[0]: 1.0})
    return name


def denoise_batch(ctx):
    return {"latents": clip(ctx.backbone), "prompts": ["a toy"],
            "prior_latents": clip(ctx.backbone, 1), "prior_prompts": ["a video of a toy"]}


def motion_batch(ctx):
    return {"latents": clip(ctx.backbone), "prompts": ["a dog is riding a horse"],
            "appearance_prompts": ["a static video of a dog and a horse"]}


def fusion_batch(ctx):
    name = teacher(ctx)
    return {"subjects": [{"latents": clip(ctx.backbone), "prompts": ["a toy"], "teacher": name}]}


def attention_batch(ctx):
    backbone, prompt = ctx.backbone, "a toy and a dog"
    latents = clip(ctx.backbone)
    spec = backbone.video_spec
    masks = torch.zeros(1, 2, spec.frames, spec.height, spec.width)
    masks[:, 0, :, :, : spec.width // 2] = 1.0
    masks[:, 1, :, :, spec.width // 2 :] = 1.0
    positions = [backbone.word_positions(prompt, "toy"), backbone.word_positions(prompt, "dog")]
    return {"latents": latents, "prompts": [prompt], "masks": masks, "token_positions": positions}


#: Objective name -> the batch for its case. An objective registered without one fails below.
BATCHES = {
    "attention_reg": attention_batch,
    "denoise": denoise_batch,
    "fusion_distill": fusion_batch,
    "huber_denoise": denoise_batch,
    "negative_cfg_motion": motion_batch,
}


def test_every_registered_objective_has_a_case():
    assert set(get_registry().names("objective")) <= set(BATCHES)


def objective_classes():
    classes = {name: get_registry().get("objective", name) for name in get_registry().names("objective")}
    classes.setdefault("huber_denoise", huber_class())
    return classes


@pytest.mark.parametrize("name", sorted(BATCHES))
class TestEveryObjective(ObjectiveContract):
    @pytest.fixture
    def component_class(self, name):
        return objective_classes()[name]

    @pytest.fixture
    def objective_case(self, name, tiny_backbone_with_lora):
        return tiny_backbone_with_lora, BATCHES[name](tiny_backbone_with_lora)
