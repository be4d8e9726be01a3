"""The base-model training script: both phases run, export, and resume exactly."""

from __future__ import annotations

import attrs
import torch
from safetensors.torch import load_file
from videomage_toyworld.model import ToyModelConfig
from toyworld.train import TrainPlan, main, train

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


def test_offset_noise_adds_one_constant_per_clip_and_channel():
    from toyworld.train import training_noise

    shape = (512, 4, 8, 16, 16)
    plain = training_noise(shape, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    # Plain noise: a clip-channel mean over 2048 values has std 1/sqrt(2048) = 0.022, the leak the
    # offset is there to hide; with offset 0.2 it is sqrt(0.2**2 + 1/2048) = 0.201.
    offset = training_noise(shape, 0.2, torch.Generator().manual_seed(0))
    assert abs(float(plain.mean(dim=(2, 3, 4)).std()) - 0.0221) < 0.003
    assert abs(float(offset.mean(dim=(2, 3, 4)).std()) - 0.201) < 0.02
    # What is left around each clip-channel mean is still unit-variance noise.
    centred = offset - offset.mean(dim=(2, 3, 4), keepdim=True)
    assert abs(float(centred.std()) - 1.0) < 0.01
    # Stills (one frame) get their offset too.
    assert training_noise((3, 4, 1, 8, 8), 0.5, torch.Generator().manual_seed(1)).shape == (3, 4, 1, 8, 8)


def test_learning_rate_decays_and_restarts_where_asked():
    from toyworld.train import denoiser_lr

    plan = TrainPlan(lr=1e-3, steps=100, decay_steps=100)
    assert denoiser_lr(plan, 0) == 1e-3
    assert abs(denoiser_lr(plan, 50) - 1e-3 * 0.55) < 1e-12
    assert abs(denoiser_lr(plan, 100) - 1e-4) < 1e-12 and denoiser_lr(plan, 150) == denoiser_lr(plan, 100)
    restarted = attrs.evolve(plan, steps=140, decay_steps=140, restart=100)
    assert denoiser_lr(restarted, 99) == denoiser_lr(attrs.evolve(plan, steps=140, decay_steps=140), 99)
    assert denoiser_lr(restarted, 100) == 1e-3  # back to the full rate
    assert abs(denoiser_lr(restarted, 120) - 1e-3 * 0.55) < 1e-12
    assert abs(denoiser_lr(restarted, 140) - 1e-4) < 1e-12


def test_the_offset_noise_option_reaches_the_denoiser(tmp_path):
    torch.set_num_threads(1)
    args = ["--tiny", "--vae-steps", "1", "--steps", "1", "--batch", "1", "--still-batch", "2"]
    main(["--out", str(tmp_path / "plain"), *args])
    main(["--out", str(tmp_path / "offset"), *args, "--offset-noise", "0.5"])
    plain, offset = unet_weights(tmp_path / "plain"), unet_weights(tmp_path / "offset")
    assert any(not torch.equal(plain[k], offset[k]) for k in plain)
