"""The direction gap and the time-reversed pairs of the direction fine-tune."""

from __future__ import annotations

import json
import math

import attrs
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from toyworld import diagnose
from videomage_toyworld.metrics import TextAlignment, parse_prompt
from videomage_toyworld.model import ToyModelConfig, build_components
from toyworld.train import TrainPlan, is_temporal, main, motion_batch, train


def test_swap_direction_replaces_exactly_the_direction_word():
    assert diagnose.swap_direction("a red circle moving left quickly in the snow") == (
        "a red circle moving right quickly in the snow")
    assert diagnose.swap_direction("a square moving up") == "a square moving down"
    with pytest.raises(ValueError):
        diagnose.swap_direction("a red circle in the snow")


def test_a_reversed_clip_is_the_time_reverse_and_moves_the_opposite_way():
    rng = np.random.default_rng(3)
    metric = TextAlignment()
    for _ in range(6):
        clip = diagnose.moving_clip(rng)
        back = diagnose.reversed_clip(clip)
        assert np.array_equal(back.frames, clip.frames[::-1])
        assert parse_prompt(back.caption)["direction"] == diagnose.OPPOSITE[parse_prompt(clip.caption)["direction"]]
        assert back.caption.replace(parse_prompt(back.caption)["direction"], "") == (
            clip.caption.replace(parse_prompt(clip.caption)["direction"], ""))
        assert metric.compute(clip.video(), {"prompt": clip.caption})["direction"] == 1.0
        assert metric.compute(back.video(), {"prompt": back.caption})["direction"] == 1.0
        assert metric.compute(back.video(), {"prompt": clip.caption})["direction"] == 0.0


def test_the_gap_is_positive_for_a_model_that_uses_the_word_and_zero_for_a_blind_one():
    probes = diagnose.probe_set(6, seed=1, size=32, frames=4)
    latents = torch.randn(6, 4, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    noise, _ = diagnose.probe_noise(tuple(latents.shape), seed=0)
    alphas = torch.linspace(0.999, 0.01, 1000)
    right = {c: i for i, c in enumerate(probes["captions"])}

    def oracle(sign):  # knows the noise, but only when told the right (sign > 0) or wrong direction
        def predict(noisy, t, texts):
            rows = []
            for text in texts:
                i = right.get(text)
                if i is None:
                    i = right[diagnose.swap_direction(text)]
                    rows.append(noise[i] if sign < 0 else torch.zeros_like(noise[i]))
                else:
                    rows.append(noise[i] if sign > 0 else torch.zeros_like(noise[i]))
            return torch.stack(rows)
        return predict

    def blind(noisy, t, texts):
        return noisy * 0.5

    args = (latents, probes["captions"], probes["swapped"])
    assert diagnose.gap_of(oracle(+1), *args, alphas=alphas, batch=4)["gap"] > 0.5
    assert diagnose.gap_of(oracle(-1), *args, alphas=alphas, batch=4)["gap"] < -0.5
    blind_gap = diagnose.gap_of(blind, *args, alphas=alphas, batch=4)
    assert blind_gap["gap"] == 0.0 and blind_gap["stderr"] == 0.0


def test_direction_gap_of_a_model_is_finite_and_repeatable(tmp_path):
    components = build_components(ToyModelConfig.tiny(), tmp_path / "tok", seed=0)
    a = diagnose.direction_gap(components, n=4, batch=2, frames=4)
    b = diagnose.direction_gap(components, n=4, batch=2, frames=4)
    assert a == b and all(math.isfinite(v) for v in a.values())
    assert components["unet"].training, "the model is handed back in its own mode"


PLAN = TrainPlan(vae_steps=1, steps=1, batch=4, still_batch=2, frames=4, checkpoint_every=1, export_every=2,
                 motion_steps=3, gap_every=2, gap_probes=4)


def test_motion_batches_are_reversed_pairs_with_opposite_words_and_a_function_of_the_step():
    data = motion_batch(PLAN, 32, 5)
    assert data["video"].shape == (4, 4, 3, 32, 32)
    assert torch.equal(data["video"], motion_batch(PLAN, 32, 5)["video"])
    assert not torch.equal(data["video"], motion_batch(PLAN, 32, 6)["video"])
    dropped = 0
    for step in range(12):
        data = motion_batch(PLAN, 32, step)
        for i in range(0, 4, 2):
            assert torch.equal(data["video"][i + 1], data["video"][i].flip(0))
            first, second = data["captions"][i : i + 2]
            if first == "":
                assert second == ""
                dropped += 1
            else:
                assert second == diagnose.swap_direction(first)
    assert 0 < dropped < 12  # the caption dropout is exercised, and drops whole pairs


def test_temporal_parameters_are_the_frame_mixing_layers(tmp_path):
    unet = build_components(ToyModelConfig.tiny(), tmp_path / "tok")["unet"]
    names = [n for n, _ in unet.named_parameters()]
    temporal = [n for n in names if is_temporal(n)]
    assert temporal and len(temporal) < len(names)
    assert all(("temp_" in n or "transformer_in" in n) for n in temporal)
    assert not any(is_temporal(n) for n in names if ".attentions." in n or "resnets" in n)


def test_the_motion_fine_tune_changes_the_weights_logs_the_gap_and_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    config = ToyModelConfig.tiny()
    plan = attrs.evolve(PLAN, motion_contrast=5.0)
    train(tmp_path / "base", attrs.evolve(plan, motion_steps=0), config)
    train(tmp_path / "straight", plan, config)
    train(tmp_path / "resumed", attrs.evolve(plan, motion_steps=2), config)
    train(tmp_path / "resumed", plan, config)

    def unet(run):
        return load_file(str(tmp_path / run / "model" / "unet" / "diffusion_pytorch_model.safetensors"))

    base, straight, resumed = unet("base"), unet("straight"), unet("resumed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert any(not torch.equal(base[k], straight[k]) for k in base)
    steps = [json.loads(line)["step"] for line in (tmp_path / "straight" / "motion" / "gap.jsonl").read_text().splitlines()]
    assert steps == [0, 2]


def test_the_cli_runs_the_plain_motion_fine_tune(tmp_path, capsys):
    main(["--out", str(tmp_path), "--tiny", "--vae-steps", "1", "--steps", "1", "--batch", "2", "--still-batch", "2",
          "--motion-focus", "1", "--gap-every", "1", "--gap-probes", "2"])
    assert "model written to" in capsys.readouterr().out
    assert len((tmp_path / "motion" / "gap.jsonl").read_text().splitlines()) == 2
