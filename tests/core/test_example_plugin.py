"""The example third-party plugin under docs/: installed, discovered, and its maths checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import videomage

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


def test_example_plugin_shows_up_once_installed(installed_example, capsys):
    from videomage.cli import main

    assert main(["plugins", "--json"]) == 0  # this process: the example is not installed here
    before = json.loads(capsys.readouterr().out)
    assert "huber" not in {p["name"] for p in before["plugins"]}
    after = plugins_json(installed_example)
    plugin = {p["name"]: p for p in after["plugins"]}["huber"]
    assert plugin["version"] == "0.1.0"
    assert plugin["components"] == {"objective": ["huber_denoise"], "sampler": ["rescaled_cfg"]}
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


# -- the example's objective and sampler, used from the CLI and from a recipe ----------------------
def write_recipe(path: Path, model: str) -> None:
    path.write_text(f"""
[model]
id = {json.dumps(model)}

[[subjects]]
token = "<toy>"
class_word = "toy"
images = "photos"
steps = 2
objective = "huber_denoise"
objective_options = {{ delta = 0.75 }}

[sampling]
prompt = "a <toy>"
sampler = "rescaled_cfg"
steps = 2

[sampling.options]
phi = 0.5

[output]
dir = "out"
""")


def test_example_objective_and_sampler_train_and_sample_from_cli_and_recipe(installed_example, tiny_model_dir,
                                                                           tmp_path, monkeypatch):
    """Done when: a third-party objective and sampler, installed by entry point, run with their own
    options from the command line and from a recipe, with no change to the core."""
    import imageio.v3 as iio
    import numpy as np

    from videomage import plugins
    from videomage.cli import main

    # The installed distribution on the path: its entry point is found like any installed plugin's.
    monkeypatch.syspath_prepend(str(installed_example))
    monkeypatch.delenv("VIDEOMAGE_LOAD_PLUGINS", raising=False)
    plugins.reset()
    try:
        registry = plugins.get_registry()
        huber = registry.get("objective", "huber_denoise")
        rescaled = registry.get("sampler", "rescaled_cfg")
        assert huber.__module__ == rescaled.__module__ == "videomage_huber"
        with pytest.raises(videomage.ConfigError, match=r"sampler 'rescaled_cfg': unknown option 'ph'. Did you mean 'phi'"):
            registry.build_options("sampler", "rescaled_cfg", {"ph": 1})
        used = {"loss": [], "sample": []}
        loss, sample = huber.loss, rescaled.sample
        monkeypatch.setattr(huber, "loss", lambda self, ctx, batch: used["loss"].append(self.options.delta)
                            or loss(self, ctx, batch))
        monkeypatch.setattr(rescaled, "sample", lambda self, b, a, request: used["sample"].append(self.options.phi)
                            or sample(self, b, a, request))
        photos = tmp_path / "photos"
        photos.mkdir()
        for i in range(2):
            frame = np.full((32, 32, 3), 30, np.uint8)
            frame[8 + 4 * i : 20 + 4 * i, 10:22] = (220, 40, 40)
            iio.imwrite(photos / f"{i}.png", frame)
        common = ["--model", str(tiny_model_dir), "--no-progress"]
        assert main(["learn-subject", *common, "--images", str(photos), "--token", "<toy>", "--class-word", "toy",
                     "--objective", "huber_denoise", "-o", "delta=0.5", "--steps", "2",
                     "--out", str(tmp_path / "toy.safetensors")]) == 0
        assert main(["generate", *common, "--subjects", str(tmp_path / "toy.safetensors"), "--prompt", "a <toy>",
                     "--sampler", "rescaled_cfg", "-o", "phi=0.25", "--steps", "2", "--out", str(tmp_path / "cli.mp4")]) == 0
        write_recipe(tmp_path / "recipe.toml", str(tiny_model_dir))
        assert main(["run", str(tmp_path / "recipe.toml"), "--no-progress"]) == 0
    finally:
        plugins.reset()
    # The example's loss ran at every training step with each run's own delta; its sampler with its phi.
    assert used["loss"] == [0.5, 0.5, 0.75, 0.75]
    assert used["sample"] == [0.25, 0.5]
    cli_record = json.loads((tmp_path / "cli.json").read_text())
    recipe_record = json.loads((tmp_path / "out" / "video.json").read_text())
    assert cli_record["sampler"] == "rescaled_cfg" and cli_record["options"] == {"phi": 0.25}
    assert recipe_record["sampler"] == "rescaled_cfg" and recipe_record["options"] == {"phi": 0.5}
