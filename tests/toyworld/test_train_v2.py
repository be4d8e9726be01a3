"""Toy world v2's base model: a Wan folder the ordinary backbone loads, and training that survives restarts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from toyworld import evaluate_v2, train_v2
from videomage_toyworld import alignment, wan_model, world2

TINY = ["--tiny", "--vae-steps", "1", "--batch", "2", "--log-every", "1", "--export-every", "100",
        "--checkpoint-every", "1", "--threads", "1"]


def weights(folder):
    return load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("v2-straight")
    train_v2.main([*TINY, "--out", str(out), "--steps", "3"])
    return out


def test_the_model_loads_through_the_ordinary_wan_backbone_and_codes_frames_alone(straight):
    from videomage.loading import load_backbone

    backbone = load_backbone(str(straight / "model"))
    assert backbone.name == "wan" and backbone.latent_shape(9, 32, 32) == (wan_model.LATENT_CHANNELS, 9, 8, 8)
    video = torch.from_numpy(world2.random_clip(np.random.default_rng(0), size=32).frames)[None]
    changed = video.clone()
    changed[:, 0] = 1 - changed[:, 0]
    with torch.no_grad():
        a, b = backbone.encode_video(video), backbone.encode_video(changed)
    # Frame by frame: a changed first frame changes its own latents only, so motion is the transformer's.
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-2
    assert torch.allclose(a[:, :, 1:], b[:, :, 1:], atol=1e-5)
    assert backbone.decode_latents(a).shape == video.shape


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(straight, tmp_path):
    train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "1"])
    train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "3"])  # resumes from the step-1 checkpoint
    a, b = weights(straight / "model"), weights(tmp_path / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "model" / train_v2.TRAINING_RECORD).read_text())["step"] == 3


def test_a_warm_restart_continues_from_saved_weights_and_step(straight, tmp_path):
    # No checkpoint in the new folder (a fresh machine): start from the saved model at its step.
    train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "3", "--warm", str(straight / "model")])
    assert all(torch.equal(v, weights(straight / "model")[k]) for k, v in weights(tmp_path / "model").items())
    train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "4", "--warm", str(straight / "model")])
    assert json.loads((tmp_path / "model" / train_v2.TRAINING_RECORD).read_text())["step"] == 4
    assert not all(torch.equal(v, weights(straight / "model")[k]) for k, v in weights(tmp_path / "model").items())


def test_a_frozen_text_encoder_is_the_seeds_own_and_only_the_transformer_trains(straight, tmp_path):
    def text(folder):
        return load_file(str(folder / "text_encoder" / "model.safetensors"))

    initial = {k: v.float() for k, v in train_v2.wan_model.build_pipeline(0, tiny=True).text_encoder.state_dict().items()}
    trained = text(straight / "model")
    assert not all(torch.equal(trained[k].float(), initial[k]) for k in trained)  # the straight run trained its own
    # A warm restart drops the warm model's encoder for the seed's, and two steps leave it there.
    train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "5", "--warm", str(straight / "model"),
                   "--text-encoder", "frozen"])
    frozen = text(tmp_path / "model")
    assert all(torch.equal(frozen[k].float(), initial[k]) for k in frozen)
    assert not all(torch.equal(v, weights(straight / "model")[k]) for k, v in weights(tmp_path / "model").items())
    with pytest.raises(SystemExit, match="--text-encoder trained would resume"):
        train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "6"])


def test_weights_ship_only_when_their_evaluation_improves(straight, tmp_path, monkeypatch):
    shipped = tmp_path / "package" / "model_v2"
    monkeypatch.setattr(evaluate_v2, "MODEL_V2_DIR", shipped)
    good = {"colour": 0.5, "shape": 0.5, "background": 0.5, "direction": 0.3, "n": 64.0, "colourless": {"object": 0.6}}
    assert evaluate_v2.ship(straight / "model", good, commit=False)
    assert weights(shipped)["proj_out.weight"].dtype == torch.float16
    assert not evaluate_v2.ship(straight / "model", {**good, "direction": 0.2}, commit=False)
    assert json.loads((shipped / evaluate_v2.EVALUATION).read_text())["direction"] == 0.3
    # Better parts do not make up for prompts without a colour that show no object.
    assert not evaluate_v2.ship(straight / "model", {**good, "direction": 0.4, "colourless": {"object": 0.1}}, commit=False)
    assert evaluate_v2.ship(straight / "model", {**good, "direction": 0.4}, commit=False)


def test_a_token_carries_at_most_half_the_transformer_width():
    """The denoiser's only way from its input to its output runs through its width: a token of more
    numbers than that (48 latent channels x a 2x2 patch = 192 against 128) leaves part of every
    token's noise unpredictable, a floor under the loss, and that part of the initial noise
    untouched by sampling. v2's latents are sized so a token fits in half the width."""
    config = wan_model.build_transformer().config
    per_token = config.in_channels * config.patch_size[1] * config.patch_size[2]
    width = config.num_attention_heads * config.attention_head_dim
    assert per_token <= width // 2, f"a token carries {per_token} numbers through a width of {width}"


def test_a_new_denoiser_can_start_from_another_latent_widths_blocks(straight):
    pipe = wan_model.build_pipeline(1, tiny=True, latent_channels=8)
    fresh = train_v2.load_blocks(pipe, straight / "model")
    assert fresh == ["patch_embedding.weight", "proj_out.bias", "proj_out.weight"]
    saved = weights(straight / "model")
    own = pipe.transformer.state_dict()
    assert torch.equal(own["blocks.0.attn1.to_q.weight"], saved["blocks.0.attn1.to_q.weight"])
    assert own["patch_embedding.weight"].shape[1] == 8 != saved["patch_embedding.weight"].shape[1]


def test_what_a_too_narrow_denoiser_cannot_reach_survives_sampling_untouched(tmp_path):
    """Why the invariant above: the output lies in the span of the head's columns, so outside it the
    velocity is a constant and every solver step moves those latent coordinates by a constant:
    they end as the initial noise (tiny model: 8 channels x 2x2 = 32 numbers a token, width 24)."""
    from toyworld.common import guided, scheduler_step

    pipe = wan_model.build_pipeline(0, tiny=True, latent_channels=8)
    torch.nn.init.normal_(pipe.transformer.proj_out.weight, std=0.5)  # a trained-looking head
    backbone = train_v2.make_backbone(pipe, tmp_path)
    head = pipe.transformer.proj_out.weight.detach()
    basis = torch.linalg.svd(head, full_matrices=True)[0][:, head.shape[1]:]  # what the head cannot write
    assert basis.shape[1] == 32 - 24
    scheduler = backbone.make_scheduler(None)
    scheduler.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, *backbone.latent_shape(9, 32, 32)), generator=g)
    start, embeds = x.clone(), backbone.encode_prompt(["", "", "a red circle", "a blue square"])
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler_step(scheduler, guided(backbone, x, t, embeds, 5.0, scheduler), t, x, g)

    def outside(z):  # tokens in the head's order (row, column of the 2x2 patch, then channel)
        b, c, f, h, w = z.shape
        z = z.reshape(b, c, f, h // 2, 2, w // 2, 2).permute(0, 2, 3, 5, 4, 6, 1).reshape(-1, 4 * c) @ basis
        return z - z.mean(0)

    moved = (x - start).abs().mean()
    assert moved > 0.1  # sampling changed the latents ...
    assert torch.allclose(outside(x), outside(start), atol=1e-3 * float(moved))  # ... but not there


def test_a_warm_folder_of_another_latent_width_gives_its_blocks_to_a_new_run(straight, tmp_path, capsys):
    # The shipped model may predate a change of latent width: the restart trains a new VAE and
    # takes the old transformer's blocks, instead of failing on the shapes.
    train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "1", "--latent-channels", "8", "--warm", str(straight / "model")])
    assert "training a new VAE" in capsys.readouterr().err
    assert train_v2.latent_channels_of(tmp_path / "model") == 8
    assert json.loads((tmp_path / "model" / train_v2.TRAINING_RECORD).read_text())["step"] == 1


def test_a_warm_folder_whose_vae_was_made_otherwise_gives_only_its_blocks(straight, tmp_path, capsys):
    # The first v2 models record no VAE recipe: theirs was 400 unweighted steps, not this run's.
    old = tmp_path / "old"
    import shutil

    shutil.copytree(straight / "model", old)
    (old / train_v2.TRAINING_RECORD).write_text(json.dumps({"step": 3}) + "\n")
    assert train_v2.recipe_of(old) == {"latent_channels": wan_model.LATENT_CHANNELS, **train_v2.FIRST_VAE_RECIPE}
    train_v2.main([*TINY, "--out", str(tmp_path / "run"), "--steps", "1", "--warm", str(old)])
    assert "training a new VAE" in capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "model" / train_v2.TRAINING_RECORD).read_text())
    assert record == {"step": 1, "vae": {"latent_channels": wan_model.LATENT_CHANNELS, "vae_steps": 1, "object_weight": 5.0}}
    # Its own export records the recipe, so a restart from it is an ordinary warm restart.
    train_v2.main([*TINY, "--out", str(tmp_path / "again"), "--steps", "2", "--warm", str(tmp_path / "run" / "model")])
    assert "training a new VAE" not in capsys.readouterr().err


def test_the_moving_average_follows_its_formula_and_resumes_only_at_its_own_step(tmp_path):
    p = torch.nn.Parameter(torch.zeros(3))
    average = train_v2.MovingAverage([p], decay=0.5)
    expected = torch.zeros(3)
    for value in (1.0, 2.0, 3.0):
        with torch.no_grad():
            p.fill_(value)
        d = min(0.5, (1 + average.updates) / (10 + average.updates))
        expected = d * expected + (1 - d) * value
        average.update()
    assert torch.allclose(average.shadow[0], expected)
    with average.applied():
        assert torch.equal(p.detach(), expected)
    assert torch.equal(p.detach(), torch.full((3,), 3.0))  # the trained weights come back
    average.save(tmp_path / "ema.safetensors", step=7)
    other = train_v2.MovingAverage([p], decay=0.5)
    assert not other.load(tmp_path / "ema.safetensors", step=8)  # another step's checkpoint: a new average
    assert other.load(tmp_path / "ema.safetensors", step=7) and other.updates == 3
    assert torch.equal(other.shadow[0], expected)


def test_the_export_is_the_moving_average_of_the_trained_weights(straight, tmp_path):
    train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "3", "--ema-decay", "0"])
    averaged, trained = weights(straight / "model"), weights(tmp_path / "model")
    assert not all(torch.equal(averaged[k], trained[k]) for k in trained)
    assert (tmp_path / "denoiser" / train_v2.EMA_FILE).exists() is False
    assert (straight / "denoiser" / train_v2.EMA_FILE).exists()


def test_the_held_out_loss_splits_object_latents_from_the_background(straight):
    from videomage.loading import load_backbone

    error = torch.zeros(2, 4, 3, 4, 4)
    covered = torch.zeros(2, 1, 3, 4, 4, dtype=torch.bool)
    covered[0, :, 1, 2, 2] = True
    error[0, :, 1, 2, 2] = 5.0  # wrong only where an object is
    assert evaluate_v2.split_loss(error, covered) == (5.0, 0.0)
    loss = evaluate_v2.held_out_loss(load_backbone(str(straight / "model")), n=4, batch=2)
    assert set(loss) == {"object", "background"}
    assert all(len(v) == len(evaluate_v2.SIGMAS) and all(np.isfinite(v)) and min(v) > 0 for v in loss.values())
    # Fixed clips, noise and levels: the same model measures the same.
    assert loss == evaluate_v2.held_out_loss(load_backbone(str(straight / "model")), n=4, batch=2)


def test_the_vae_weighs_the_pixels_off_the_border_colour_more():
    x = torch.full((1, 3, 1, 8, 8), 0.2)
    x[..., 3:5, 3:5] = 0.9  # an object on a flat background
    w = train_v2.pixel_weights(x, 5.0)
    assert w.shape == (1, 1, 1, 8, 8)
    assert torch.all(w[..., 3:5, 3:5] == 5.0) and w.sum() == 60 + 4 * 5.0


def test_the_vae_phase_reports_what_its_reconstructions_score(straight, capsys):
    from videomage.loading import load_backbone

    scores = evaluate_v2.reconstruction_scores(load_backbone(str(straight / "model")), n=4)
    assert set(scores) == {"colour", "shape", "background", "direction"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_a_longer_vae_phase_never_changes_the_vae_under_a_begun_denoiser(straight, tmp_path):
    import shutil

    shutil.copytree(straight, tmp_path / "run")
    train_v2.main([*TINY, "--out", str(tmp_path / "run"), "--steps", "4", "--vae-steps", "3"])
    vae = "vae/diffusion_pytorch_model.safetensors"
    before, after = load_file(str(straight / "model" / vae)), load_file(str(tmp_path / "run" / "model" / vae))
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((tmp_path / "run" / "model" / train_v2.TRAINING_RECORD).read_text())["step"] == 4


def test_each_stage_alone_runs_on_a_v2_model_and_reports_against_its_targets(straight, tmp_path, capsys):
    from toyworld import stages_v2

    stages_v2.main(["--model", str(straight / "model"), "--out", str(tmp_path), "--quick", "--samples", "2"])
    result = json.loads((tmp_path / "stages.json").read_text())
    assert set(result["targets"]) == {"subject_fidelity", "motion_fidelity", "reference_colour_share"}
    for key in (*result["targets"], "subject_fidelity_pet", "subject_fidelity_toy"):
        assert 0.0 <= result[key] <= 1.0, key
    # The motion alone is prompted with other objects than the reference's, in the held-out verb.
    assert result["motion_prompt"] == "a red circle is chasing a yellow square in the snow"
    assert (tmp_path / "subject-pet" / "video-frames.png").is_file() and (tmp_path / "motion" / "video.mp4").is_file()
    # Each stage's samples, one a row; the last row is the last seed's own sheet.
    import imageio.v3 as iio

    from videomage_toyworld.recipe import read_sheet

    size = iio.imread(tmp_path / "motion" / stages_v2.SAMPLES_SHEET).shape[1] // world2.FRAMES
    both = read_sheet(tmp_path / "motion" / stages_v2.SAMPLES_SHEET, 2 * world2.FRAMES, size, columns=world2.FRAMES)
    assert torch.equal(both[world2.FRAMES:], read_sheet(tmp_path / "motion" / "video-frames.png", world2.FRAMES, size))


def test_failure_modes_count_missing_and_unmoving_objects_and_colour_by_word():
    rng = np.random.default_rng(2)
    moving = world2.random_clip(rng, drops=world2.NO_DROPS, family="line")
    still = world2.random_clip(rng, drops=world2.NO_DROPS, family="static")
    named = moving.caption.split()[1]
    still_prompt = still.caption.replace("a static video of ", "")
    assert still_prompt.split()[1] != named  # (this seed's two clips differ in colour)
    empty = moving.frames.copy()
    empty[:] = empty[:, :, :1, :1]  # every pixel the corner's (the background's) colour: no object
    half = moving.frames.copy()
    half[5:] = empty[5:]  # the object in frames 0-4 only: seen in 5 of 9, still "an object"
    videos = [moving.frames, still.frames, empty, half]
    prompts = [moving.caption, still_prompt, moving.caption, moving.caption]
    scores = [alignment.score(v, p) for v, p in zip(videos, prompts)]
    modes = evaluate_v2.failure_modes(videos, prompts, scores)
    assert modes["no_object"] == 0.25  # the empty clip
    assert modes["static"] == 0.25  # the still one (a half-seen moving object still travels)
    assert modes["seen_frames"] == round((1 + 1 + 0 + 5 / 9) / 4, 4)
    # The moving clip's colour: right in the clip and its half, wrong where nothing is drawn.
    assert modes["colour_by_word"] == {named: round(2 / 3, 4), still_prompt.split()[1]: 1.0}
    shapes = {}
    for prompt, score in zip(prompts, scores):
        shapes.setdefault(alignment.parse(prompt)["nouns"][0][1], []).append(score["shape"])
    assert modes["shape_by_word"] == {k: round(float(np.mean(v)), 4) for k, v in sorted(shapes.items())}
    assert modes["shape_by_word"][moving.caption.split()[2]] == round(2 / 3, 4)  # nothing drawn: wrong
    assert modes["outline_fit"] > 0.8  # rendered shapes fit their templates


def test_outline_fit_tells_a_drawn_shape_from_a_blob():
    from videomage_toyworld import analysis as an

    rng = np.random.default_rng(4)
    clip = world2.random_clip(rng, drops=world2.NO_DROPS, family="static")
    prompt = clip.caption.replace("a static video of ", "")
    blob = clip.frames.copy()
    mask = clip.masks.any(0)
    ys, xs = np.mgrid[:64, :64]
    for f in range(len(blob)):
        cy, cx = np.argwhere(mask[f]).mean(0)
        # the object's pixels scattered into a ragged cloud about its centre: no shape's outline
        ragged = (np.hypot(ys - cy, xs - cx) < 4 + 6 * rng.random((64, 64))) & ~mask[f]
        blob[f][:, ragged] = blob[f][:, mask[f]].mean(1, keepdims=True)
    drawn = evaluate_v2.failure_modes([clip.frames], [prompt], [alignment.score(clip.frames, prompt)])
    ragged = evaluate_v2.failure_modes([blob], [prompt], [alignment.score(blob, prompt)])
    assert an.shape_fit(np.zeros((8, 8), bool)) == (None, 0.0)
    assert drawn["outline_fit"] > 0.85 and ragged["outline_fit"] < drawn["outline_fit"] - 0.15


def test_word_gaps_change_one_word_each_and_vanish_for_a_denoiser_that_cannot_read(straight, monkeypatch):
    from videomage.loading import load_backbone

    assert evaluate_v2.opposite_direction("a red circle arcing up slowly in the snow") == \
        "a red circle arcing down slowly in the snow"
    assert evaluate_v2.opposite_direction("a static video of a red circle") == "a static video of a red circle"
    text = "a red circle arcing up slowly in the snow"
    assert evaluate_v2.other_shape(text) == "a red square arcing up slowly in the snow"
    assert evaluate_v2.other_colour(text) == "a green circle arcing up slowly in the snow"
    assert evaluate_v2.other_shape("a blue triangle moving left") == "a blue circle moving left"
    backbone = load_backbone(str(straight / "model"))
    gaps = evaluate_v2.word_gaps(backbone, n=4, batch=2)
    assert set(gaps) == {"direction", "shape", "colour"}
    assert all(len(v) == len(evaluate_v2.GAP_SIGMAS) and all(np.isfinite(v)) for v in gaps.values())
    assert gaps == evaluate_v2.word_gaps(backbone, n=4, batch=2)  # same clips, noise and levels
    # A denoiser that cannot read the caption shows no gap at all, for any word.
    run = backbone.text.run
    monkeypatch.setattr(backbone.text, "run", lambda captions: run([""] * len(captions)))
    assert evaluate_v2.word_gaps(backbone, n=4, batch=2) == {k: [0.0] * len(evaluate_v2.GAP_SIGMAS) for k in gaps}


def test_frame_use_is_zero_for_a_denoiser_that_treats_each_frame_alone(straight, monkeypatch):
    from videomage.loading import load_backbone

    backbone = load_backbone(str(straight / "model"))
    use = evaluate_v2.frame_use(backbone, n=4, batch=2)
    assert set(use) == {"ordered", "reversed", "shuffled", "alone"}
    assert all(len(v) == len(evaluate_v2.FRAME_SIGMAS) and all(np.isfinite(v)) for v in use.values())
    assert use == evaluate_v2.frame_use(backbone, n=4, batch=2)  # same clips, noise and levels
    assert max(abs(v) for v in use["alone"]) > 1e-3  # Wan's attention mixes the frames
    predict = backbone.predict
    monkeypatch.setattr(backbone, "predict", lambda x, t, text: torch.cat(
        [predict(x[:, :, f : f + 1], t, text) for f in range(x.shape[2])], dim=2))
    blind = evaluate_v2.frame_use(backbone, n=4, batch=2)
    assert all(abs(v) < 2e-4 for kind in ("reversed", "shuffled", "alone") for v in blind[kind])


def test_a_share_of_each_batch_can_draw_its_noise_level_from_the_top_of_the_schedule(straight):
    from videomage.loading import load_backbone

    backbone = load_backbone(str(straight / "model"))
    n = 4000

    def levels(**kw):
        plan = train_v2.Plan(**kw)
        return train_v2.noise_levels(backbone, plan, n, torch.Generator().manual_seed(0)) / 1000

    plain = levels()
    assert torch.equal(plain, backbone.sample_timesteps(n, torch.Generator().manual_seed(0)) / 1000)
    every = levels(high_noise_share=1.0, high_noise_from=0.9)
    assert every.min() >= 0.9 and every.max() < 1.0 and abs(float(every.mean()) - 0.95) < 0.005
    half = levels(high_noise_share=0.5, high_noise_from=0.9)
    # Half from [0.9, 1), half from the shifted draw (of which 1 - 0.9 / 1.1 = 18% lie there too).
    share = float((half >= 0.9).float().mean())
    assert abs(share - (0.5 + 0.5 * (1 - 0.9 / 1.1))) < 0.03


@pytest.mark.parametrize("flags", [["--high-noise-share", "1.5"], ["--high-noise-from", "1.0"]])
def test_a_noise_share_or_level_outside_its_range_is_refused_before_anything_trains(tmp_path, flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_v2.main([*TINY, "--out", str(tmp_path / "run"), *flags])
    assert exit_.value.code == 2 and "--high-noise-share must lie in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_denoisers_learning_rate_follows_its_schedule(tmp_path, monkeypatch):
    seen = []
    step = torch.optim.AdamW.step

    def recording(self, *args, **kwargs):
        seen.append([g["lr"] for g in self.param_groups])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording)
    train_v2.main([*TINY, "--out", str(tmp_path), "--vae-steps", "0", "--steps", "3", "--lr", "0.002"])
    plan = train_v2.Plan(lr=0.002)
    # Warm-up: each step's rate is the schedule's at that step, for the transformer and the text encoder.
    assert seen[-3:] == [[train_v2.lr_at(plan, k)] * 2 for k in range(3)]
    assert seen[-1][0] == pytest.approx(0.002 * 3 / plan.warmup)


def test_the_rates_floor_is_a_tenth_of_the_rate_unless_given_and_a_warm_restart_past_the_decay_trains_at_it(
        straight, tmp_path, capsys, monkeypatch):
    plan, floored = train_v2.Plan(lr=1e-3), train_v2.Plan(lr=1e-3, min_lr=4e-4)
    middle = plan.warmup + (plan.decay_steps - plan.warmup) // 2
    assert train_v2.lr_at(plan, plan.warmup) == pytest.approx(1e-3)
    assert train_v2.lr_at(plan, middle) == pytest.approx(0.55e-3, rel=1e-3)
    assert train_v2.lr_at(plan, 18000) == pytest.approx(1e-4)
    assert train_v2.lr_at(floored, plan.warmup) == pytest.approx(1e-3)
    assert train_v2.lr_at(floored, middle) == pytest.approx(0.7e-3, rel=1e-3)
    assert train_v2.lr_at(floored, 18000) == pytest.approx(4e-4)
    # A warm restart from a model saved at step 9,000 (past the decay) trains at the floor it is given.
    late = tmp_path / "late"
    shutil.copytree(straight / "model", late)
    (late / train_v2.TRAINING_RECORD).write_text(json.dumps({**json.loads(
        (late / train_v2.TRAINING_RECORD).read_text()), "step": 9000}) + "\n")
    seen = []
    step = torch.optim.AdamW.step

    def recording(self, *args, **kwargs):
        seen.append([g["lr"] for g in self.param_groups])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording)
    train_v2.main([*TINY, "--out", str(tmp_path / "run"), "--steps", "9002", "--warm", str(late), "--min-lr", "5e-5"])
    assert seen == [[pytest.approx(5e-5)] * 2] * 2
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["min_lr"] == 5e-5
    # A floor above the rate is refused.
    with pytest.raises(SystemExit) as stop:
        train_v2.main([*TINY, "--out", str(tmp_path / "other"), "--steps", "1", "--min-lr", "0.01"])
    assert stop.value.code == 2 and "--min-lr must lie in [0, --lr]" in capsys.readouterr().err


def test_the_object_weights_keep_the_loss_scale_and_weigh_objects_more():
    covered = torch.zeros(2, 1, 3, 4, 4)
    covered[0, :, :, 1, 1] = 1
    w = train_v2.object_weights(covered, 5.0)
    assert float(w.mean()) == pytest.approx(1.0)
    assert float(w[0, 0, 0, 1, 1] / w[0, 0, 0, 0, 0]) == pytest.approx(5.0)
    assert torch.equal(train_v2.object_weights(covered, 1.0), torch.ones_like(covered))
    error = torch.arange(2 * 2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 2, 3, 4, 4)
    per_clip = train_v2.object_errors(error, covered)
    assert per_clip[0] == pytest.approx(float(error[0, :, :, 1, 1].mean())) and per_clip[1] == 0


def test_anchor_frames_are_drawn_per_clip_from_the_seed_and_step():
    plan = train_v2.Plan(anchor_share=0.5)
    drawn = train_v2.anchor_frames(plan, 7, 400, 9)
    assert drawn == train_v2.anchor_frames(plan, 7, 400, 9) and drawn != train_v2.anchor_frames(plan, 8, 400, 9)
    given = [k for k in drawn if k >= 0]
    assert 0.4 < len(given) / 400 < 0.6 and set(given) == set(range(9))
    assert train_v2.anchor_frames(train_v2.Plan(), 7, 4, 9) == [-1] * 4
    assert all(k >= 0 for k in train_v2.anchor_frames(train_v2.Plan(anchor_share=1.0), 7, 16, 9))
    # A still image has no other frame to draw from the one given.
    assert train_v2.anchor_frames(train_v2.Plan(anchor_share=1.0), 7, 4, 1) == [-1] * 4


def test_a_frame_given_clean_is_what_the_denoiser_sees_and_is_left_out_of_the_loss():
    latents, noisy = torch.randn(3, 4, 5, 2, 2), torch.randn(3, 4, 5, 2, 2)
    seen, keep = train_v2.anchored(latents, noisy, [2, -1, 0])
    assert torch.equal(seen[0, :, 2], latents[0, :, 2]) and torch.equal(seen[2, :, 0], latents[2, :, 0])
    assert torch.equal(seen[1], noisy[1]) and torch.equal(seen[0, :, 3], noisy[0, :, 3])
    assert keep.shape == (3, 1, 5, 1, 1) and keep.sum() == 3 * 5 - 2
    untouched, every_frame = train_v2.anchored(latents, noisy, [-1, -1, -1])
    assert untouched is noisy and bool((every_frame == 1).all())
    covered = (torch.rand(3, 1, 5, 2, 2) > 0.5).float()
    error = torch.rand(3, 4, 5, 2, 2)
    loss = train_v2.flow_loss(error, covered, 3.0, keep)
    # The given frames' errors do not count, and every other one does.
    changed = error.clone()
    changed[0, :, 2] += 100.0
    assert float(train_v2.flow_loss(changed, covered, 3.0, keep)) == pytest.approx(float(loss))
    changed[0, :, 3] += 1.0
    assert float(train_v2.flow_loss(changed, covered, 3.0, keep)) > float(loss)
    every = torch.ones_like(keep)
    plain = (error * train_v2.object_weights(covered, 3.0)).mean()
    assert float(train_v2.flow_loss(error, covered, 3.0, every)) == pytest.approx(float(plain))


def test_a_run_with_every_clip_anchored_gives_each_a_clean_frame(tmp_path, monkeypatch):
    calls = []
    real = train_v2.anchored

    def spy(latents, noisy, frames):
        calls.append(frames)
        return real(latents, noisy, frames)

    monkeypatch.setattr(train_v2, "anchored", spy)
    train_v2.main([*TINY, "--out", str(tmp_path / "a"), "--steps", "4", "--anchor-share", "1", "--image-share", "0"])
    assert len(calls) == 4 and all(len(f) == 2 and all(0 <= k < world2.FRAMES for k in f) for f in calls)
    assert json.loads((tmp_path / "a" / "plan.json").read_text())["anchor_share"] == 1.0


def test_the_direction_hinge_asks_the_opposite_word_to_do_worse_by_its_margin():
    own = torch.tensor([1.0, 1.0, 2.0], requires_grad=True)
    opposite = torch.tensor([1.0, 1.3, 2.1], requires_grad=True)
    # max(0, 0.2 * own - (opposite - own)) per clip: 0.2, 0 (0.3 beyond the margin), 0.3.
    hinge = train_v2.direction_hinge(own, opposite, 0.2)
    assert float(hinge.detach()) == pytest.approx((0.2 + 0.0 + 0.3) / 3)
    hinge.backward()
    # It lowers the own caption's error and raises the opposite's, only where the margin is not met.
    assert own.grad.tolist() == pytest.approx([1 / 3, 0, 1 / 3]) and opposite.grad.tolist() == pytest.approx([-1 / 3, 0, -1 / 3])


def test_direction_ranking_runs_the_opposite_word_on_captions_with_a_direction(tmp_path, capsys, monkeypatch):
    captions = []
    batch = world2.batch

    def recording(*args, **kwargs):
        data = batch(*args, **kwargs)
        if "drops" in kwargs:  # the denoiser's batches (the VAE's statistics take plain ones)
            captions.append((kwargs["drops"], data["captions"]))
        return data

    monkeypatch.setattr(world2, "batch", recording)
    train_v2.main([*TINY, "--out", str(tmp_path), "--steps", "4", "--batch", "4", "--direction-weight", "1",
                   "--object-loss-weight", "3", "--colour-drop", "1"])
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"phase": "denoiser"')]
    assert logs and all("direction_gap" in entry and np.isfinite(entry["direction_gap"]) for entry in logs)
    drops, texts = captions[-1]
    assert drops.colour == 1.0 and not any(c in t.split() for t in texts for c in alignment.COLOURS)


def test_a_batch_carries_the_masks_of_its_clips():
    data = world2.batch(np.random.default_rng(3), 3, size=32)
    clip = world2.random_clip(np.random.default_rng(3), size=32)  # the batch's first clip
    assert data["masks"].shape == (3, world2.FRAMES, 32, 32) and data["masks"].dtype == torch.bool
    assert np.array_equal(data["masks"][0].numpy(), clip.masks.any(0))


@pytest.mark.parametrize("flags", [["--colour-drop", "1.5"], ["--object-loss-weight", "0"], ["--direction-weight", "-1"],
                                   ["--image-share", "2"], ["--image-factor", "0"], ["--object-scale", "3"],
                                   ["--layout", "0.5"], ["--anchor-share", "1.5"]])
def test_a_loss_option_outside_its_range_is_refused_before_anything_trains(tmp_path, flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_v2.main([*TINY, "--out", str(tmp_path / "run"), *flags])
    assert exit_.value.code == 2 and flags[0] in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_colourless_reading_counts_samples_that_show_an_object(straight, monkeypatch):
    from videomage.loading import load_backbone

    texts = evaluate_v2.colourless_captions(4)
    assert texts == evaluate_v2.colourless_captions(4)
    assert not any(c in t.split() for t in texts for c in alignment.COLOURS)
    assert [alignment.parse(t)["direction"] is not None for t in texts] == [False, True, False, True]
    backbone = load_backbone(str(straight / "model"))
    clip = torch.from_numpy(world2.random_clip(np.random.default_rng(1), size=32).frames)

    def sampler(kind):
        def sample(_backbone, prompts, **_):
            return torch.stack([clip if kind == "object" else torch.full_like(clip, 0.5)] * len(prompts))
        return sample

    monkeypatch.setattr(evaluate_v2, "sample_batch", sampler("object"))
    seen = evaluate_v2.colourless_reading(backbone, n=4, batch=2)
    monkeypatch.setattr(evaluate_v2, "sample_batch", sampler("blank"))
    blank = evaluate_v2.colourless_reading(backbone, n=4, batch=2)
    assert seen["object"] == 1.0 and blank["object"] == 0.0 and blank["shape"] == 0.0 and seen["n"] == 4


def test_image_batches_are_one_frame_pictures_of_one_resting_actor():
    data = world2.image_batch(np.random.default_rng(5), 40, size=32)
    assert data["video"].shape == (40, 1, 3, 32, 32) and data["masks"].shape == (40, 1, 32, 32)
    assert all(data["masks"][i].any() for i in range(40))
    for text in data["captions"]:
        words = text.split()
        assert "static" not in words and "video" not in words and alignment.parse(text)["direction"] is None
    # Captions still drop their colour and scene words, as the clips' do.
    assert any(not any(c in t.split() for c in alignment.COLOURS) for t in data["captions"])


def test_a_share_of_the_steps_trains_on_still_images(tmp_path, monkeypatch):
    plan = train_v2.Plan(image_share=0.25)
    picks = [train_v2.is_image_step(plan, k) for k in range(4000)]
    assert abs(np.mean(picks) - 0.25) < 0.03 and picks == [train_v2.is_image_step(plan, k) for k in range(4000)]
    assert not any(train_v2.is_image_step(train_v2.Plan(image_share=0.0), k) for k in range(200))
    from videomage_wan.backbone import WanBackbone

    shapes = []
    predict = WanBackbone.predict

    def recording(self, latents, *args, **kwargs):
        shapes.append(tuple(latents.shape))
        return predict(self, latents, *args, **kwargs)

    monkeypatch.setattr(WanBackbone, "predict", recording)
    train_v2.main([*TINY, "--out", str(tmp_path / "images"), "--vae-steps", "0", "--steps", "2", "--image-share", "1",
                   "--image-factor", "3"])
    # Every step: one-frame latents, three times the batch of 2.
    assert len(shapes) == 2 and all(s[0] == 6 and s[2] == 1 for s in shapes)
    shapes.clear()
    train_v2.main([*TINY, "--out", str(tmp_path / "clips"), "--vae-steps", "0", "--steps", "2", "--image-share", "0"])
    assert len(shapes) == 2 and all(s[0] == 2 and s[2] == world2.FRAMES for s in shapes)


def test_sample_batch_draws_still_images_when_asked_for_one_frame(straight):
    from toyworld.common import sample_batch
    from videomage.loading import load_backbone

    backbone = load_backbone(str(straight / "model"))
    spec = backbone.video_spec
    stills = sample_batch(backbone, ["a red circle", "a blue square"], steps=2, guidance=2.0, seed=0, frames=1)
    clips = sample_batch(backbone, ["a red circle"], steps=2, guidance=2.0, seed=0)
    assert stills.shape == (2, 1, 3, spec.height, spec.width) and clips.shape[1] == spec.frames


def test_one_stage_can_be_seen_alone(straight, tmp_path):
    from toyworld import stages_v2

    stages_v2.main(["--model", str(straight / "model"), "--out", str(tmp_path), "--quick", "--samples", "1",
                    "--only", "motion"])
    result = json.loads((tmp_path / "stages.json").read_text())
    assert "motion_fidelity" in result and "subject_fidelity" not in result
    assert not (tmp_path / "subject-pet").exists()


def test_an_evaluation_reads_a_copy_and_leaves_none_behind(straight, tmp_path, monkeypatch, capsys):
    seen = []

    def fake(model, **_):
        seen.append(Path(model))
        assert (Path(model) / "transformer").is_dir()
        return {p: 0.0 for p in alignment.PARTS}

    monkeypatch.setattr(evaluate_v2, "evaluate", fake)
    model = tmp_path / "model"
    shutil.copytree(straight / "model", model)
    evaluate_v2.main(["--model", str(model)])
    assert seen[-1] == Path(str(model) + ".eval") and not seen[-1].exists()
    # The shipped folder, however its path is spelt, is read in place: no copy beside it in the package.
    monkeypatch.chdir(wan_model.MODEL_V2_DIR.parent)
    evaluate_v2.main(["--model", wan_model.MODEL_V2_DIR.name])
    assert seen[-1] == Path(wan_model.MODEL_V2_DIR.name)
    assert not wan_model.MODEL_V2_DIR.with_name(wan_model.MODEL_V2_DIR.name + ".eval").exists()


def test_a_run_on_larger_actors_records_their_scale_and_is_never_shipped(straight, tmp_path, monkeypatch):
    train_v2.main([*TINY, "--out", str(tmp_path / "large"), "--steps", "1", "--object-scale", "1.5"])
    model = tmp_path / "large" / "model"
    assert json.loads((model / train_v2.TRAINING_RECORD).read_text())["object_scale"] == 1.5
    assert evaluate_v2.object_scale_of(model) == 1.5 and evaluate_v2.object_scale_of(straight / "model") == 1.0
    monkeypatch.setattr(evaluate_v2, "MODEL_V2_DIR", tmp_path / "package" / "model_v2")
    perfect = {**{p: 1.0 for p in alignment.PARTS}, "n": 64.0, "colourless": {"object": 1.0}}
    assert not evaluate_v2.ship(model, perfect, commit=False)
    assert not (tmp_path / "package").exists()
    assert evaluate_v2.ship(straight / "model", perfect, commit=False)
    # Resuming it on the world itself would go on training one world's denoiser on another.
    before = weights(model)
    with pytest.raises(SystemExit, match="--object-scale 1.0 would resume"):
        train_v2.main([*TINY, "--out", str(tmp_path / "large"), "--steps", "2"])
    assert all(torch.equal(v, weights(model)[k]) for k, v in before.items())
    assert json.loads((model / train_v2.TRAINING_RECORD).read_text())["step"] == 1


def test_a_run_on_a_laid_out_world_records_it_trains_on_it_and_is_never_shipped(straight, tmp_path, monkeypatch):
    seen = []
    real = world2.batch

    def spy(*args, **kwargs):
        seen.append(kwargs.get("layout", 0.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(world2, "batch", spy)
    train_v2.main([*TINY, "--out", str(tmp_path / "laid"), "--steps", "1", "--layout", "0.2"])
    assert seen and set(seen) == {0.2}
    model = tmp_path / "laid" / "model"
    assert json.loads((model / train_v2.TRAINING_RECORD).read_text())["layout"] == 0.2
    assert evaluate_v2.world_of(model) == {"layout": 0.2} and evaluate_v2.world_of(straight / "model") == {}
    # Its held-out clips come from its own world: the loss differs from the flat world's on the same draws.
    from videomage.loading import load_backbone

    backbone = load_backbone(str(model))
    assert evaluate_v2.held_out_loss(backbone, n=4, batch=4) != evaluate_v2.held_out_loss(
        backbone, n=4, batch=4, world=evaluate_v2.world_of(model))
    monkeypatch.setattr(evaluate_v2, "MODEL_V2_DIR", tmp_path / "package" / "model_v2")
    perfect = {**{p: 1.0 for p in alignment.PARTS}, "n": 64.0, "colourless": {"object": 1.0}}
    assert not evaluate_v2.ship(model, perfect, commit=False)
    assert not (tmp_path / "package").exists()
    with pytest.raises(SystemExit, match="--layout 0.0 would resume"):
        train_v2.main([*TINY, "--out", str(tmp_path / "laid"), "--steps", "2"])
    assert json.loads((model / train_v2.TRAINING_RECORD).read_text())["step"] == 1


def test_the_picture_reading_samples_one_frame_and_scores_the_shape_named(straight, monkeypatch):
    from videomage.loading import load_backbone

    texts = evaluate_v2.picture_captions(6)
    assert texts == evaluate_v2.picture_captions(6)
    assert [alignment.parse(t)["nouns"][0][1] for t in texts] == ["circle", "square", "triangle"] * 2
    assert all(alignment.parse(t)["direction"] is None and alignment.parse(t)["scene"] for t in texts)
    rng = np.random.default_rng(0)
    circles = [c for c in (world2.random_clip(rng, size=32, frames=1, family="static") for _ in range(40))
               if alignment.parse(c.caption)["nouns"][0][1] == "circle"]
    frames_asked = []

    def sample(_backbone, prompts, *, frames=None, **_):
        frames_asked.append(frames)
        return torch.stack([torch.from_numpy(circles[0].frames)] * len(prompts))

    monkeypatch.setattr(evaluate_v2, "sample_batch", sample)
    reading = evaluate_v2.picture_reading(load_backbone(str(straight / "model")), n=6, batch=3)
    assert frames_asked == [1, 1]
    assert reading["shape_by_word"] == {"circle": 1.0, "square": 0.0, "triangle": 0.0}
    assert reading["shape"] == pytest.approx(1 / 3, abs=1e-4) and reading["outline_fit"] > 0.85 and reading["n"] == 6


def rotary_frequencies_above(transformer, least: float) -> tuple[int, int]:
    """How many of 3D RoPE's rotation frequencies (radians per frame, per token) exceed ``least``,
    in time and along one side, read off the rotation each channel pair makes at position 1."""
    rope = transformer.rope
    angles = torch.atan2(rope.freqs_sin[1], rope.freqs_cos[1])[::2]  # channels come in rotated pairs
    time, side, _ = angles.split([rope.t_dim // 2, rope.h_dim // 2, rope.w_dim // 2])
    return int((time > least).sum()), int((side > least).sum())


def test_fewer_wider_heads_keep_every_weight_shape_and_get_more_rotary_frequencies():
    four, two = (wan_model.build_pipeline(0, heads=h).transformer for h in (4, 2))
    assert (four.config.num_attention_heads, four.config.attention_head_dim) == (4, 32)
    assert (two.config.num_attention_heads, two.config.attention_head_dim) == (2, 64)
    shapes = {k: v.shape for k, v in four.state_dict().items()}
    assert shapes == {k: v.shape for k, v in two.state_dict().items()}
    # The same weights, read by heads of 64: time gets four frequencies of at least a tenth of a
    # radian per frame instead of two, each side three instead of two.
    assert rotary_frequencies_above(four, 0.099) == (2, 2)
    assert rotary_frequencies_above(two, 0.099) == (4, 3)
    assert wan_model.split_heads() == (4, 32) and wan_model.split_heads(tiny=True) == (2, 12)


def test_a_warm_restart_can_split_the_width_into_other_heads_and_never_resumes_split_otherwise(straight, tmp_path):
    out = tmp_path / "one-head"
    train_v2.main([*TINY, "--out", str(out), "--steps", "3", "--warm", str(straight / "model"), "--heads", "1"])
    model = out / "model"
    assert train_v2.heads_of(model) == 1 and train_v2.heads_of(straight / "model") == 2
    # Step 3 is the warm model's own step: its weights, unchanged, now read by one head of 24.
    assert all(torch.equal(v, weights(straight / "model")[k]) for k, v in weights(model).items())
    from videomage.loading import load_backbone

    assert load_backbone(str(model)).name == "wan"
    before = weights(model)
    with pytest.raises(SystemExit, match="--heads 2 would resume it split otherwise"):
        train_v2.main([*TINY, "--out", str(out), "--steps", "4", "--heads", "2"])
    assert all(torch.equal(v, weights(model)[k]) for k, v in before.items())
    # Without --heads a resumed run keeps the split it began with.
    train_v2.main([*TINY, "--out", str(out), "--steps", "4"])
    assert train_v2.heads_of(model) == 1
    assert json.loads((model / train_v2.TRAINING_RECORD).read_text())["step"] == 4
    # A warm restart without --heads takes the warm model's split.
    train_v2.main([*TINY, "--out", str(tmp_path / "again"), "--steps", "4", "--warm", str(model)])
    assert train_v2.heads_of(tmp_path / "again" / "model") == 1


@pytest.mark.parametrize("heads", ["5", "0", "16"])
def test_a_head_count_that_does_not_split_the_width_is_refused_before_anything_trains(tmp_path, heads, capsys):
    with pytest.raises(SystemExit) as stop:
        train_v2.main([*TINY, "--out", str(tmp_path / "run"), "--steps", "1", "--heads", heads])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert f"--heads {heads}" in error and "choose one of 1, 2, 3, 4" in error
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="choose one of 1, 2, 4, 8, 16"):
        wan_model.split_heads(32)
