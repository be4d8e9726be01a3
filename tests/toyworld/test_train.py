"""The base-model training script: both phases run, export, and resume exactly."""

from __future__ import annotations

import attrs
import torch
from safetensors.torch import load_file
from videomage_toyworld.model import ToyModelConfig
from videomage_toyworld.train import TrainPlan, main, train

PLAN = TrainPlan(vae_steps=2, steps=4, decay_steps=4, batch=2, still_batch=2, frames=4, checkpoint_every=1, export_every=2,
                 still_fraction=0.5)


def unet_weights(folder):
    return load_file(str(folder / "model" / "unet" / "diffusion_pytorch_model.safetensors"))


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    train(tmp_path / "straight", PLAN, ToyModelConfig.tiny())
    train(tmp_path / "resumed", attrs.evolve(PLAN, steps=2), ToyModelConfig.tiny())
    train(tmp_path / "resumed", PLAN, ToyModelConfig.tiny())
    a, b = unet_weights(tmp_path / "straight"), unet_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "vae" / "checkpoint.safetensors").is_file()
    assert (tmp_path / "straight" / "denoiser" / "checkpoint.safetensors").is_file()


def test_training_changes_the_weights_and_the_cli_runs(tmp_path, capsys):
    main(["--out", str(tmp_path), "--tiny", "--vae-steps", "1", "--steps", "1", "--batch", "1", "--still-batch", "2"])
    assert "model written to" in capsys.readouterr().out
    from videomage_toyworld.model import build_components

    fresh = build_components(ToyModelConfig.tiny(), tmp_path / "fresh", seed=0)["unet"].state_dict()
    trained = unet_weights(tmp_path)
    assert any(not torch.equal(fresh[k], trained[k]) for k in fresh)
