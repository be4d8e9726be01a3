"""The paper's objectives against hand computations, on a stand-in backbone whose output is a
known function of its inputs (the tiny-model tests check the same objectives train real LoRAs)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from videomage.components import TrainingContext
from videomage.errors import ConfigError
from videomage_objectives.denoise import Denoise
from videomage_objectives.fusion import AttentionRegularization, FusionDistill
from videomage_objectives.motion import NegativeCFGMotion
from videomage_objectives.fusion import attention_loss
from videomage_objectives.motion import appearance_free_target


class StandIn:
    """predict = scale * x_t + prompt bias; the adapter state changes ``scale``."""

    def __init__(self):
        self.scale = 1.0
        self.calls = []

    def add_noise(self, x0, noise, t):
        return 0.6 * x0 + 0.8 * noise

    def training_target(self, x0, noise, t):
        return noise

    def sample_timesteps(self, n, generator=None):
        return torch.zeros(n, dtype=torch.long)

    def encode_prompt(self, prompts):
        return torch.tensor([[float(len(p))] for p in prompts])

    def predict(self, x, t, embeds):
        self.calls.append((self.scale, torch.is_grad_enabled()))
        return self.scale * x + embeds.reshape(-1, 1, 1, 1, 1) / 100


class StandInAdapter:
    """Adapter "on" multiplies the output by 2; teacher "a" by 3."""

    scales = {"motion": 2.0, "student": 2.0, "a": 3.0, "b": 5.0}

    def activate(self, backbone, weights):
        backbone.scale = 1.0
        for name in weights:
            backbone.scale *= self.scales[name]

    @contextlib.contextmanager
    def disabled(self, backbone):
        old, backbone.scale = backbone.scale, 1.0
        yield
        backbone.scale = old


def case(**extra):
    x0 = torch.tensor([0.5, -1.0]).reshape(1, 2, 1, 1, 1)
    noise = torch.tensor([1.0, 0.25]).reshape(1, 2, 1, 1, 1)
    return x0, noise, {"latents": x0, "noise": noise, "timesteps": torch.zeros(1), **extra}


def test_denoise_is_mse_to_the_noise_plus_weighted_prior():
    bb = StandIn()
    x0, noise, batch = case(prompts=["ab"])
    prior_x0 = torch.ones(1, 2, 1, 1, 1)
    batch.update(prior_latents=prior_x0, prior_noise=torch.zeros_like(prior_x0), prior_timesteps=torch.zeros(1),
                 prior_prompts=["abcd"])
    out = Denoise(lambda_reg=0.25).loss(TrainingContext(backbone=bb, adapter=None), batch)
    x_t = 0.6 * x0 + 0.8 * noise
    l_sub = ((x_t + 0.02 - noise) ** 2).mean()
    l_reg = ((0.6 * prior_x0 + 0.04) ** 2).mean()
    assert out.loss.item() == pytest.approx((l_sub + 0.25 * l_reg).item())
    assert out.logs["l_sub"] == pytest.approx(l_sub.item()) and out.logs["l_reg"] == pytest.approx(l_reg.item())


def test_negative_cfg_target_formula():
    target, base = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    assert torch.allclose(appearance_free_target(target, base, 0.5), torch.tensor([1.25, 3.5]))


def test_motion_loss_uses_a_gradient_free_base_pass_with_adapters_off():
    bb, adapter = StandIn(), StandInAdapter()
    adapter.activate(bb, {"motion": 1.0})
    x0, noise, batch = case(prompts=["a person rides"], appearance_prompts=["A static video"])
    out = NegativeCFGMotion(omega=0.5).loss(TrainingContext(backbone=bb, adapter=adapter), batch)
    x_t = 0.6 * x0 + 0.8 * noise
    base = x_t + len("A static video") / 100
    target = 1.5 * noise - 0.5 * base
    pred = 2.0 * x_t + len("a person rides") / 100
    assert out.loss.item() == pytest.approx(((pred - target) ** 2).mean().item())
    assert bb.calls == [(1.0, False), (2.0, True)]  # base: adapters off, no grad; then the motion LoRA


def test_motion_loss_with_omega_zero_is_the_plain_denoising_loss():
    bb, adapter = StandIn(), StandInAdapter()
    adapter.activate(bb, {"motion": 1.0})
    _, _, batch = case(prompts=["p"], appearance_prompts=["q"])
    ctx = TrainingContext(backbone=bb, adapter=adapter)
    motion = NegativeCFGMotion(omega=0.0).loss(ctx, batch).loss
    plain = Denoise(lambda_reg=0.0).loss(ctx, batch).loss
    assert motion.item() == plain.item()
    assert all(scale == 2.0 for scale, _ in bb.calls)  # no base pass at all


def test_negative_options_are_refused():
    with pytest.raises(ConfigError, match="omega"):
        NegativeCFGMotion(omega=-1)
    with pytest.raises(ConfigError, match="lambda_reg"):
        Denoise(lambda_reg=-0.1)


def test_fusion_distill_averages_student_teacher_gaps():
    bb, adapter = StandIn(), StandInAdapter()
    x0, noise, item = case(prompts=[""])
    items = [dict(item, teacher="a"), dict(item, teacher="b")]
    ctx = TrainingContext(backbone=bb, adapter=adapter, trained=("student",))
    out = FusionDistill().loss(ctx, {"subjects": items})
    x_t = 0.6 * x0 + 0.8 * noise
    expected = (((2 * x_t - 3 * x_t) ** 2).mean() + ((2 * x_t - 5 * x_t) ** 2).mean()) / 2
    assert out.loss.item() == pytest.approx(expected.item())
    assert [c for c in bb.calls if not c[1]] == [(3.0, False), (5.0, False)]  # teachers without grad


def test_attention_loss_formula_groups_split_tokens():
    maps = torch.zeros(1, 3, 1, 2, 2)
    maps[0, 0] = 1.0  # subject 0: one token, all ones
    maps[0, 1, 0, 0, 0] = 1.0  # subject 1 spans tokens 1 and 2
    masks = torch.zeros(1, 2, 1, 2, 2)
    masks[0, 0, 0, 0] = 1.0  # top row
    masks[0, 1, 0, 0, 0] = 1.0
    # subject 0: error 1 on the bottom row -> mean 0.5; subject 1: mean map [0.5 at (0,0)] -> (0.5^2)/4
    expected = (0.5 + 0.0625) / 2
    assert attention_loss(maps, masks, [[0], [1, 2]]).item() == pytest.approx(expected)


def test_objectives_register_under_their_names():
    import videomage_objectives

    names = {cls.name for cls in videomage_objectives.register_objectives()}
    assert names == {"denoise", "negative_cfg_motion", "fusion_distill", "attention_reg"}
    assert AttentionRegularization.name in names
