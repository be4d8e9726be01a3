"""The tiny model: built from configs, saved in the diffusers layout, loaded by the zeroscope backbone."""

from __future__ import annotations

import json

import torch
from videomage_toyworld.model import (
    MODEL_DIR,
    ToyModelConfig,
    build_components,
    load_model,
    save_model,
)

from videomage.loading import load_backbone
from videomage.modelfiles import SPEC_FILE


def test_save_and_load_round_trip(tmp_path):
    components = build_components(ToyModelConfig.tiny(), tmp_path / "tok", seed=3)
    folder = save_model(components, tmp_path / "model")
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / sub).is_dir()
    assert not list(folder.rglob("*.bin")), "weights are safetensors only"
    assert json.loads((folder / SPEC_FILE).read_text())["video_spec"] == {"height": 32, "width": 32, "frames": 8, "fps": 8}
    again = load_model(folder)
    for name in ("unet", "vae", "text_encoder"):
        a, b = components[name].state_dict(), again[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights(tmp_path):
    a = build_components(ToyModelConfig.tiny(), tmp_path / "a", seed=1)["unet"].state_dict()
    b = build_components(ToyModelConfig.tiny(), tmp_path / "b", seed=1)["unet"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_shipped_model_is_small_trained_and_loads_through_the_backbone_plugin():
    size = sum(p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file())
    assert size < 12 * 2**20, f"the shipped model should be a few MB, it is {size / 2**20:.1f} MiB"
    backbone = load_backbone(str(MODEL_DIR))
    assert backbone.name == "zeroscope"
    assert (backbone.video_spec.height, backbone.video_spec.frames) == (64, 8)
    assert backbone.vae.config.scaling_factor != 0.18215, "training fixes the latent scale from the world's frames"
    video = torch.rand(1, 2, 3, 64, 64)
    assert backbone.encode_video(video).shape == (1, 4, 2, 16, 16)
