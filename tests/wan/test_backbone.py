"""The Wan backbone loads by path, is told apart from other families, and does flow matching right."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from videomage.errors import ConfigError, VideomageError
from videomage.loading import detect_backbone
from videomage_wan.backbone import WanBackbone
from videomage_wan.files import is_family


# The backbone contract runs on WanBackbone.tiny() in tests/contracts/test_backbones.py.


def test_detected_by_its_folder(wan_dir):
    assert detect_backbone(str(wan_dir)) == "wan"
    assert WanBackbone.detect("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")


def test_other_families_are_not_claimed(tmp_path, wan_dir):
    zeroscope = tmp_path / "zeroscope"
    (zeroscope / "unet").mkdir(parents=True)
    (zeroscope / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet3DConditionModel"}))
    (zeroscope / "model_index.json").write_text(json.dumps({"_class_name": "TextToVideoSDPipeline"}))
    assert not is_family(str(zeroscope))
    assert not is_family("cerspense/zeroscope_v2_576w")
    i2v = tmp_path / "i2v"
    shutil.copytree(wan_dir / "transformer", i2v / "transformer")
    config = json.loads((i2v / "transformer" / "config.json").read_text())
    (i2v / "transformer" / "config.json").write_text(json.dumps({**config, "image_dim": 1280}))
    assert not is_family(str(i2v))


def test_a_folder_missing_a_component_is_a_teaching_error(tmp_path, wan_dir):
    broken = tmp_path / "broken"
    shutil.copytree(wan_dir, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(ConfigError, match="'vae' subfolder"):
        WanBackbone.from_pretrained(str(broken))


def test_video_size_and_frame_counts(backbone):
    assert backbone.latent_shape(5, 32, 48) == (4, 2, 4, 6)
    assert backbone.latent_shape(1, 32, 48)[1] == 1
    with pytest.raises(ConfigError, match=r"use 5 or 9 frames"):
        backbone.latent_shape(8, 32, 48)
    with pytest.raises(VideomageError, match="multiples of 16"):
        backbone.latent_shape(5, 40, 48)
    # An image is a one-frame video, as in subject learning.
    assert backbone.encode_video(torch.rand(2, 1, 3, 32, 48)).shape == (2, 4, 1, 4, 6)


def test_flow_matching_conventions(backbone):
    x0, noise = torch.randn(2, 4, 2, 4, 6), torch.randn(2, 4, 2, 4, 6)
    t = torch.tensor([250.0, 750.0])
    x_t = backbone.add_noise(x0, noise, t)
    assert torch.allclose(x_t[0], 0.75 * x0[0] + 0.25 * noise[0])
    target = backbone.training_target(x0, noise, t)
    assert torch.allclose(target, noise - x0)
    # A sampling step with the true velocity lands exactly on the path at the next noise
    # level, for Wan's default scheduler and for flow-matching Euler alike.
    for name in (None, "FlowMatchEulerDiscreteScheduler"):
        scheduler = backbone.make_scheduler(name)
        scheduler.set_timesteps(4)
        sigma, next_sigma = float(scheduler.sigmas[0]), float(scheduler.sigmas[1])
        assert abs(float(scheduler.timesteps[0]) / 1000 - sigma) < 2e-3  # the model sees t = 1000 sigma
        x_t = (1 - sigma) * x0 + sigma * noise
        stepped = scheduler.step(noise - x0, scheduler.timesteps[0], x_t).prev_sample
        assert torch.allclose(stepped, (1 - next_sigma) * x0 + next_sigma * noise, atol=1e-4), name
    assert backbone.prediction_type == "flow"


def test_training_timesteps_lie_in_the_training_range(backbone):
    t = backbone.sample_timesteps(256, torch.Generator().manual_seed(0))
    assert t.shape == (256,) and t.is_floating_point()
    assert float(t.min()) >= 0 and float(t.max()) < 1000
    # Shift 3 favours high noise: the median sigma is 0.75, not 0.5.
    assert 650 < float(t.median()) < 850


def test_flow_schedulers_by_name(backbone):
    euler = backbone.make_scheduler("FlowMatchEulerDiscreteScheduler")
    assert euler.config.shift == 3.0
    with pytest.raises(ConfigError, match="cannot sample a flow-matching"):
        backbone.make_scheduler("DDIMScheduler")


def test_a_real_zeroscope_folder_is_left_to_its_plugin(tiny_model_dir):
    # The tiny ZeroScope model of the shared fixtures: the two families never claim each other.
    assert not WanBackbone.detect(str(tiny_model_dir))
    assert detect_backbone(str(tiny_model_dir)) == "zeroscope"
    with pytest.raises(ConfigError, match="'transformer' subfolder"):
        WanBackbone.from_pretrained(str(tiny_model_dir))


def test_bfloat16_loading_keeps_the_vae_in_float32_and_runs(wan_dir):
    from videomage.plugins import get_registry

    backbone = WanBackbone.from_pretrained(str(wan_dir), dtype="bfloat16")
    assert backbone.dtype == torch.bfloat16 and backbone.vae.dtype == torch.float32
    latents = backbone.encode_video(torch.rand(1, 5, 3, 32, 48))
    assert latents.dtype == torch.bfloat16
    x = latents.float().requires_grad_(True)
    with backbone.capture_attention(cross_tokens=[1], temporal=True) as store:
        backbone.predict(x, torch.tensor([500.0]), backbone.encode_prompt(["a toy"]))
    (grad,) = torch.autograd.grad(store.temporal[0].pow(2).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    out = get_registry().create("sampler", "cfg").sample(backbone, None, {"prompt": "a toy", "steps": 2, "progress": False})
    assert out.dtype == torch.float32 and torch.isfinite(out).all()  # sampler latents stay float32 in a bf16 model
