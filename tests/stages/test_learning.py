"""The learning stages on a tiny model: losses fall, and each stage touches only its own part."""

from __future__ import annotations

import pytest
import torch

from videomage.artifact import Artifact
from videomage.components import TrainingContext
from videomage.config import MotionConfig, SubjectConfig
from videomage.plugins import get_registry
from videomage.stages.fusion import cutmix
from videomage.stages.motion import learn_motion, motion_prompts
from videomage.stages.subject import StageOptions, learn_subject
from videomage.trainer import ParamGroup, Trainer, TrainerConfig


def fixed_batch(backbone, prompts, seed=0, frames=2):
    spec = backbone.video_spec
    g = torch.Generator().manual_seed(seed)
    latents = backbone.encode_video(torch.rand(1, frames, 3, spec.height, spec.width, generator=g))
    return {
        "latents": latents,
        "prompts": prompts,
        "noise": torch.randn(latents.shape, generator=g),
        "timesteps": torch.tensor([500]),
    }


def train_on(ctx, objective, batch, params, steps=8, lr=3e-3):
    before = objective.loss(ctx, batch).loss.item()
    Trainer(TrainerConfig(steps=steps, progress=False, max_grad_norm=None), [ParamGroup(name="p", params=params, lr=lr)],
            lambda s, g: objective.loss(ctx, batch)).fit()
    return before, objective.loss(ctx, batch).loss.item()


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_subject_objective_lowers_its_loss_on_a_fixed_batch(backbone, adapter):
    adapter.attach(backbone, "s", roles=["spatial"])
    adapter.activate(backbone, {"s": 1.0})
    ctx = TrainingContext(backbone=backbone, adapter=adapter, trained=("s",))
    batch = fixed_batch(backbone, ["A toy"], frames=1)
    prior = fixed_batch(backbone, ["A video of a toy"], seed=1)
    batch.update(prior_latents=prior["latents"], prior_prompts=prior["prompts"], prior_noise=prior["noise"],
                 prior_timesteps=prior["timesteps"])
    before, after = train_on(ctx, get_registry().create("objective", "denoise"), batch, adapter.parameters(backbone, "s"))
    assert after < before


def test_motion_objective_lowers_its_loss_on_a_fixed_batch(backbone, adapter):
    adapter.attach(backbone, "m", roles=["temporal"])
    adapter.activate(backbone, {"m": 1.0})
    ctx = TrainingContext(backbone=backbone, adapter=adapter, trained=("m",))
    batch = fixed_batch(backbone, ["a person is riding a horse"], frames=4)
    batch["appearance_prompts"] = ["A static video of person and horse"]
    objective = get_registry().create("objective", "negative_cfg_motion", omega=0.5)
    before, after = train_on(ctx, objective, batch, adapter.parameters(backbone, "m"))
    assert after < before


def test_subject_stage_changes_only_spatial_lora_and_its_token_row(backbone, adapter, subject_images, tmp_path):
    unet_before = snapshot(backbone.denoiser)
    config = SubjectConfig(token="<toy>", class_word="toy", images=subject_images, steps=3, lr=1e-2, text_lr=1e-2)
    backbone.add_tokens(["<toy>"], ["toy"])
    emb_before = backbone.token_embedding_weight().detach().clone()
    art = learn_subject(backbone, adapter, config, StageOptions(progress=False, prior_count=1, prior_steps=2, frames=2))
    spatial = set(backbone.role_modules("spatial"))
    assert art.adapter_tensors and art.roles == ("spatial",)
    for key in art.adapter_tensors:
        assert any(key.startswith(m + ".") for m in spatial), f"{key} is not in a spatial module"
    assert torch.equal(backbone.token_embedding_weight().detach(), emb_before)  # the vocabulary is bit-exact
    assert not torch.equal(art.embeddings["<toy>"], backbone.text.rows["<toy>"].new_zeros(emb_before.shape[1]))
    assert set(backbone.text.rows) == {"<toy>"}  # the one learned row
    for k, v in snapshot(backbone.denoiser).items():
        if "lora_" not in k:  # every base weight is bit-exact
            assert torch.equal(v, unet_before[k.replace(".base_layer", "")]), k
    path = art.save(tmp_path / "toy.safetensors")
    assert Artifact.load(path).tokens == {"<toy>": "toy"}


def test_motion_stage_changes_only_temporal_lora(backbone, adapter, motion_clip):
    config = MotionConfig(video=motion_clip, prompt="a square is chasing a circle", entities=["square", "circle"],
                          steps=2, inversion_steps=2)
    art = learn_motion(backbone, adapter, config, StageOptions(progress=False))
    temporal = set(backbone.role_modules("temporal"))
    assert art.adapter_tensors and art.roles == ("temporal",)
    assert all(any(k.startswith(m + ".") for m in temporal) for k in art.adapter_tensors)
    assert set(art.tokens) == {"<motion:square>", "<motion:circle>"}
    assert art.info["motion_prompt"] == "a <motion:square> is chasing a <motion:circle>"
    assert art.info["appearance_prompt"] == "A static video of <motion:square> and <motion:circle>"


def test_motion_prompts_refuse_missing_entities(tmp_path):
    from videomage.errors import ConfigError

    config = MotionConfig(video=tmp_path / "x.mp4", prompt="a person is riding a horse", entities=["person", "camel"])
    with pytest.raises(ConfigError, match="'camel' does not appear"):
        motion_prompts(config)


def test_cutmix_places_each_subject_in_its_own_strip():
    a, b = torch.zeros(2, 3, 8, 16), torch.ones(2, 3, 8, 16)
    ma, mb = torch.zeros(2, 8, 16), torch.zeros(2, 8, 16)
    ma[..., 2:6] = 1  # subject a on the left
    mb[..., 10:14] = 1  # subject b on the right
    video, masks = cutmix([a, b], [ma, mb])
    assert video.shape == (2, 3, 8, 16) and masks.shape == (2, 2, 8, 16)
    assert video[..., :8].max() == 0 and video[..., 8:].min() == 1
    assert masks[0, ..., 8:].sum() == 0 and masks[1, ..., :8].sum() == 0
    assert masks[0].sum() == ma.sum() and masks[1].sum() == mb.sum()  # both strips keep the whole subject


def test_a_stage_result_is_a_function_of_its_seed(tiny_model_dir, subject_images):
    from videomage.loading import load_backbone, make_adapter

    def learn(seed):
        backbone, adapter = load_backbone(str(tiny_model_dir)), make_adapter("lora")
        torch.rand(int(torch.randint(1, 100, ()).item()))  # whatever the process drew before
        config = SubjectConfig(token="<toy>", class_word="toy", images=subject_images, steps=2, lambda_reg=0.0)
        art = learn_subject(backbone, adapter, config, StageOptions(progress=False, seed=seed, frames=2))
        return art.adapter_tensors

    first, again, other = learn(0), learn(0), learn(1)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)  # the adapter's initial weights are seeded too
    assert any(not torch.equal(first[k], other[k]) for k in first)
