"""``videomage plan``: estimates on the meta device against the same stages measured for real.

A plan runs the stage code on a backbone built on the meta device; the measurement runs the
same code on the loaded model (``plan(..., build=load)``) and counts live tensors the same way.
The estimate must stay within 15% of the measured peak for tiny and mid-size configs of both
backbones, and the meta-device attention kernel must be the one a real run uses.
"""

from __future__ import annotations

import json

import attrs
import pytest
import torch

from videomage.loading import load_backbone
from videomage.memory import LiveBytes, meta_kernels
from videomage.planning import PlanRequest, plan, suggest


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from videomage_toyworld.model import MODEL_DIR
    from videomage_wan.tiny import save_tiny_wan

    from benchmarks.models import save_small_wan

    from tests.conftest import save_tiny_model, tiny_configs

    root = tmp_path_factory.mktemp("plan-models")
    return {
        "wan-tiny": str(save_tiny_wan(root / "wan-tiny")),
        "wan-mid": str(save_small_wan(root / "wan-mid", frames=5)),  # 4 blocks of 4 heads x 32
        "zeroscope-tiny": str(save_tiny_model(root / "zs-tiny", tiny_configs()["tiny"])),
        "zeroscope-mid": str(MODEL_DIR),  # the toy world's model: 2.4 M parameters, 64 x 64 frames
    }


@pytest.mark.slow
@pytest.mark.parametrize(("model", "stage", "dtype"), [
    ("wan-tiny", "generate", "bfloat16"),
    ("wan-mid", "subject", "float32"),
    ("zeroscope-tiny", "fusion", "float32"),
    ("zeroscope-mid", "motion", "float32"),
])
def test_the_plan_is_within_15_percent_of_the_measured_peak(models, model, stage, dtype):
    path = models[model]
    request = PlanRequest(model=path, dtype=dtype)
    (estimate,) = plan(request, [stage])
    (measured,) = plan(request, [stage], build=lambda: load_backbone(path, dtype=dtype))
    assert estimate.weights_bytes == pytest.approx(measured.weights_bytes, rel=0.01)
    assert measured.working_bytes > 0
    assert estimate.device_bytes == pytest.approx(measured.device_bytes, rel=0.15)
    assert estimate.step_flops == pytest.approx(measured.step_flops, rel=0.15)


def test_meta_attention_costs_what_the_fused_kernel_costs():
    """The meta device decomposes attention into the math path, which keeps the whole attention
    matrix for backward; ``meta_kernels`` makes it keep what the fused kernel keeps."""
    def step(device, masked):
        torch.manual_seed(0)
        with torch.device(device):
            proj = torch.nn.Linear(64, 64)
            x = torch.randn(2, 4, 256, 16, requires_grad=True)
            bias = torch.randn(1, 4, 256, 256) if masked else None  # T5's position bias: no gradient
        with LiveBytes() as live:
            q = proj(x.transpose(1, 2).reshape(2, 256, 64)).reshape(2, 256, 4, 16).transpose(1, 2)
            torch.nn.functional.scaled_dot_product_attention(q, x, x, attn_mask=bias).square().mean().backward()
        return live.peak

    for masked in (False, True):
        real = step("cpu", masked)
        with meta_kernels():
            fused = step("meta", masked)
        assert fused == real, masked
        assert step("meta", masked) > 2 * real  # without it, the estimate would be off by the attention matrices


def test_published_configs_build_on_meta_with_their_parameter_counts():
    from videomage_wan.backbone import WanBackbone
    from videomage_zeroscope.backbone import ZeroScopeBackbone

    def params(module):
        return sum(p.numel() for p in module.parameters())

    wan = WanBackbone.on_meta("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    assert params(wan.denoiser) == 1_418_996_800
    assert params(wan.text.encoder) == 5_680_910_336  # UMT5-XXL's encoder
    assert wan.denoiser.patch_embedding.weight.dtype == torch.bfloat16
    assert wan.denoiser.scale_shift_table.dtype == torch.float32  # kept in float32, as from_pretrained does
    assert wan.text.length == 512 and wan.device.type == "meta"
    assert params(WanBackbone.on_meta("Wan-AI/Wan2.1-T2V-14B-Diffusers").denoiser) == 14_288_491_584
    zs = ZeroScopeBackbone.on_meta("cerspense/zeroscope_v2_576w", dtype="float16")
    assert params(zs.denoiser) == 1_411_233_860  # ModelScope 1.7B's UNet
    assert zs.video_spec.height == 320 and zs.video_spec.width == 576


def test_an_unknown_model_is_refused_naming_what_plan_needs(tmp_path):
    from videomage.errors import ConfigError
    from videomage_wan.backbone import WanBackbone

    with pytest.raises(ConfigError, match="transformer/config.json"):
        WanBackbone.on_meta(str(tmp_path))


@pytest.mark.slow
def test_plan_command_and_budget(models, capsys):
    """The command prints the stages as JSON; a budget between the plain and the checkpointed
    subject stage is met by activation checkpointing, which the planner proposes."""
    from videomage.cli import main

    path = models["wan-mid"]
    assert main(["plan", "--model", path, "--stage", "subject", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (subject,) = out["stages"]
    assert subject["stage"] == "subject" and subject["device_bytes"] > subject["weights_bytes"] > 0
    assert subject["seconds_per_step"] > 0

    request = PlanRequest(model=path)  # bfloat16: checkpointing is the one change left to propose
    checkpointed = plan(attrs.evolve(request, gradient_checkpointing=True), ["subject"])[0]
    assert checkpointed.device_bytes < subject["device_bytes"]
    budget = (checkpointed.device_bytes + subject["device_bytes"]) // 2
    fits = suggest(request, budget, ["subject"])
    assert any("checkpointing" in what for what, _, _ in fits)
    assert all(max(e.device_bytes for e in est) <= budget for _, _, est in fits)


def test_fused_attention_on_the_meta_device_counts_its_operations():
    """The kernel meta_kernels runs is missing from PyTorch's table of formulas; the plan adds it."""
    from videomage.planning import _MetaRun

    with torch.device("meta"):
        q = torch.randn(1, 4, 256, 32, requires_grad=True)
    with meta_kernels(), _MetaRun() as live:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
    forward = 4 * 4 * 256 * 256 * 32  # q k^T and p v: 2 multiply-adds per element each
    assert live.flops == pytest.approx(3.5 * forward)  # and backward's 2.5 forwards


def test_sampler_options_reach_the_planned_sampler(models):
    """``sampler_options`` are the sampler's own: SCS with its guidance checkpointing off plans the
    stored guided step, which saves the recomputation: one forward per branch, as much as half an
    unguided step (whose two batched forwards are one per branch at twice the batch)."""
    path, size = models["wan-tiny"], {"frames": 5, "height": 32, "width": 32}
    (checkpointed,) = plan(PlanRequest(model=path, **size), ["generate"])
    (stored,) = plan(PlanRequest(model=path, sampler_options={"guidance_checkpointing": False}, **size), ["generate"])
    assert stored.step_flops < checkpointed.step_flops
    assert checkpointed.step_flops - stored.step_flops == pytest.approx(checkpointed.unguided_step_flops / 2, rel=0.5)
    from videomage.errors import ConfigError

    with pytest.raises(ConfigError, match="no_such_option"):  # at once, before any stage is planned
        plan(PlanRequest(model=path, sampler_options={"no_such_option": 1}, **size), ["subject", "generate"])


def test_a_recipe_is_planned_with_its_sampler_options(tmp_path):
    """A recipe that turns SCS's guidance checkpointing off is planned with it off (a plan of the
    checkpointed step would understate the stored step's memory)."""
    import argparse

    from videomage.plan_command import request_from_args

    from tests.core.test_config import RECIPE

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.replace("tau = 0", "tau = 4\nguidance_checkpointing = false"))
    args = argparse.Namespace(stage=None, frames=None, height=None, width=None, recipe=recipe, dtype=None,
                              gradient_checkpointing=False, release_text_encoder=False)
    request, stages = request_from_args(args)
    assert stages == list(("subject", "motion", "fusion", "generate"))
    assert request.tau == 4 and request.sampler_options == {"tau": 4, "guidance_checkpointing": False}
    # -o on the command line overrides the recipe's options, as it does for generate
    request, _ = request_from_args(argparse.Namespace(**vars(args), option=["guidance_checkpointing=true", "tau=2"]))
    assert request.sampler_options == {"tau": 2, "guidance_checkpointing": True}
    assert request.tau == 2  # the guided steps the plan counts follow the option too
