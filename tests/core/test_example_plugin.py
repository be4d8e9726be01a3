"""The example third-party plugin under docs/: installed, discovered, and its maths checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videomage.components import TrainingContext

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "videomage-huber"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the example distribution into a private folder (no network, no deps)."""
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
           "--target", str(target), str(EXAMPLE)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return target


def plugins_json(extra_path=None):
    env = dict(os.environ)
    env.pop("VIDEOMAGE_LOAD_PLUGINS", None)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "videomage", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_example_plugin_shows_up_once_installed(installed_example):
    before = plugins_json()
    assert "huber" not in {p["name"] for p in before["plugins"]}
    after = plugins_json(installed_example)
    plugin = {p["name"]: p for p in after["plugins"]}["huber"]
    assert plugin["version"] == "0.1.0"
    assert plugin["components"] == {"objective": ["huber_denoise"]}
    assert {"name": "huber_denoise", "plugin": "huber", "class": "videomage_huber.HuberDenoise"} in after["components"]["objective"]


class LinearBackbone:
    """Just enough of a backbone for a hand computation: predict = 2 * x_t, epsilon target."""

    def add_noise(self, x0, noise, t):
        return 0.6 * x0 + 0.8 * noise

    def predict(self, x, t, embeds):
        return 2 * x

    def training_target(self, x0, noise, t):
        return noise

    def encode_prompt(self, prompts):
        return torch.zeros(len(prompts), 1, 1)

    def sample_timesteps(self, n, generator=None):
        return torch.zeros(n, dtype=torch.long)


def test_huber_objective_matches_hand_computation():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from videomage_huber import HuberDenoise
    finally:
        sys.path.remove(str(EXAMPLE))
    x0 = torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1, 1)
    noise = torch.tensor([0.5, 0.0]).reshape(1, 2, 1, 1, 1)
    # pred = 2 * (0.6 x0 + 0.8 noise) = [0.8, 1.2]; error vs noise [0.5, 0.0] = [0.3, 1.2]
    # Huber(delta=1): 0.5 * 0.3^2 = 0.045 ; 1.0 * (1.2 - 0.5) = 0.7 ; mean = 0.3725
    ctx = TrainingContext(backbone=LinearBackbone(), adapter=None)
    out = HuberDenoise(delta=1.0).loss(ctx, {"latents": x0, "noise": noise, "prompts": ["a"], "timesteps": torch.zeros(1)})
    assert out.loss.item() == pytest.approx(0.3725)
