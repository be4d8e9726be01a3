"""Toy world v2: textured actors, motion families with a net direction, held-out cases, and reading clips back."""

from __future__ import annotations

import numpy as np
import pytest
from videomage_toyworld import alignment, world2
from videomage_toyworld.vocabulary import NOVEL_COLOURS, rgb


def clips(n, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [world2.random_clip(rng, **kw) for _ in range(n)]


def test_a_seed_reproduces_a_clip_and_nine_frames_suit_wans_vae():
    a, b = clips(3, seed=4), clips(3, seed=4)
    assert [c.caption for c in a] == [c.caption for c in b]
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))
    assert a[0].frames.shape == (9, 3, 64, 64) and (a[0].frames.shape[0] - 1) % 4 == 0


def test_every_actor_wears_two_tones_of_its_colour():
    for clip in clips(30, seed=1):
        for actor, mask in zip(clip.actors, clip.masks):
            pixels = np.moveaxis(clip.frames, 1, -1)[mask]
            light = np.linalg.norm(pixels - rgb(actor.colours[0]), axis=1) < 0.15
            dark = np.linalg.norm(pixels - world2.SHADE * rgb(actor.colours[0]), axis=1) < 0.15
            # A static video of the actor is not one flat colour: both tones cover a real share.
            assert light.mean() > 0.2 and dark.mean() > 0.2, clip.caption


@pytest.mark.parametrize("family", ["line", "arc", "bounce", "static", "orbit"])
def test_ground_truth_clips_read_back_as_their_captions(family):
    scores = [alignment.score(c.frames, c.caption) for c in clips(12, seed=2, family=family, drops=world2.NO_DROPS)]
    if family == "orbit":  # two objects: the reader scores single-object prompts, so the scene only
        scores = [{"background": s["background"]} for s in scores]
    summary = alignment.summary(scores)
    assert summary["all"] == 1.0, summary
    if family in ("line", "arc", "bounce"):
        assert summary["direction"] == 1.0 and summary["n"] == 12


def test_arcs_and_bounces_leave_the_straight_line_and_orbits_circle():
    for clip in clips(10, seed=3, family="arc") + clips(10, seed=3, family="bounce"):
        path = clip.centres[0]
        chord = path[-1] - path[0]
        normal = np.array([-chord[1], chord[0]]) / np.linalg.norm(chord)
        assert np.abs((path - path[0]) @ normal).max() > 4.0, clip.caption  # pixels off the chord
    for clip in clips(10, seed=3, family="orbit"):
        radius = np.linalg.norm(clip.centres[0] - clip.centres[1], axis=1)
        assert radius.std() < 0.5 and "orbiting" in clip.caption


def test_the_held_out_cases_never_occur_in_training():
    seen = clips(300, seed=5)
    words = {w for c in seen for w in c.caption.split()}
    assert world2.HELD_OUT_MOTION not in words and not words & set(NOVEL_COLOURS)
    assert not {col for c in seen for a in c.actors for col in a.colours} & set(NOVEL_COLOURS)
    families = {c.caption.split()[2] if len(c.caption.split()) > 2 else "" for c in seen}
    assert {"moving", "arcing", "bouncing", "orbiting"} <= families | {w for c in seen for w in c.caption.split()}


def test_a_wrong_colour_or_a_reversed_clip_costs_only_its_part():
    (clip,) = clips(1, seed=6, family="line", drops=world2.NO_DROPS)
    words = clip.caption.split()
    other = next(c for c in ("red", "blue", "green", "yellow") if c != words[1])
    wrong = alignment.score(clip.frames, " ".join([words[0], other, *words[2:]]))
    assert wrong["colour"] == 0.0 and wrong["shape"] == wrong["background"] == wrong["direction"] == 1.0
    backwards = alignment.score(clip.frames[::-1], clip.caption)
    assert backwards["direction"] == 0.0 and backwards["colour"] == 1.0


def test_v2_cases_hold_out_the_chase_and_pick_themselves_for_a_wan_model(tmp_path):
    from videomage_toyworld import cases, cases2
    from videomage_toyworld.recipe import case_of, class_word_prompt

    clip = cases2.motion_clip()
    chaser, lead = clip.centres[1], clip.centres[0]
    assert clip.frames.shape[0] == world2.FRAMES and "chasing" in cases2.TARGET_PROMPT
    assert (np.diff(lead[:, 0]) > 0).all() and (chaser[:, 0] < lead[:, 0]).all()  # rightwards, the chaser behind
    assert class_word_prompt(cases2) == "a circle is chasing a square in the snow"
    (tmp_path / "transformer").mkdir()
    assert case_of(str(tmp_path)) is cases2 and case_of(str(tmp_path / "zeroscope")) is cases


def test_v2_subjects_learn_and_draw_priors_from_prompts_spelt_in_trained_words(tmp_path):
    from videomage_toyworld import cases2
    from videomage_toyworld.recipe import CaseSettings, subject_config
    from videomage_toyworld.wan_model import build_tokenizer, vocabulary

    tokenizer = build_tokenizer()
    trained = {"\u2581" + w for w in vocabulary()} | {"</s>"}
    config = subject_config(CaseSettings(), cases2.SUBJECTS[0], tmp_path, cases2)
    prior_prompt = config.prompt_template.format(token=config.class_word)
    assert prior_prompt == "a circle"
    assert set(tokenizer.convert_ids_to_tokens(tokenizer(prior_prompt).input_ids)) <= trained
    # The library's default template would start with pieces no v2 caption ever held.
    default = type(config)(token="<pet>", class_word="circle", images=tmp_path).prompt_template.format(token="circle")
    assert not set(tokenizer.convert_ids_to_tokens(tokenizer(default).input_ids)) <= trained


def test_an_object_scale_grows_the_actors_and_keeps_every_other_draw():
    from videomage_toyworld.analysis import shape_fit

    for family in ("line", "static", "orbit"):
        plain = world2.random_clip(np.random.default_rng(4), family=family)
        large = world2.random_clip(np.random.default_rng(4), family=family, object_scale=1.6)
        assert large.caption == plain.caption
        # Area grows with the square of the size (a little less where a frame's edge cuts an actor).
        ratio = large.masks[0].sum() / plain.masks[0].sum()
        assert 1.6**2 * 0.8 < ratio < 1.6**2 * 1.05, (family, ratio)
    large = world2.random_clip(np.random.default_rng(9), family="static", frames=1, object_scale=1.6)
    assert shape_fit(large.masks[0, 0])[0] == alignment.parse(large.caption)["nouns"][0][1]
    with pytest.raises(ValueError, match="object_scale"):
        world2.random_clip(np.random.default_rng(0), object_scale=3)


def test_a_layout_ramps_the_background_alone_and_the_reader_still_reads_every_clip():
    for family in ("line", "arc", "bounce", "orbit", "static"):
        plain = world2.random_clip(np.random.default_rng(5), family=family)
        laid = world2.random_clip(np.random.default_rng(5), family=family, layout=0.2)
        assert laid.caption == plain.caption and np.array_equal(laid.masks, plain.masks)
        actors = plain.masks.any(0)[:, None].repeat(3, 1)
        assert np.array_equal(laid.frames[actors], plain.frames[actors])
        change = (laid.frames - plain.frames)[~actors].reshape(-1)
        assert np.abs(change).max() <= 0.1 + 1e-6 and np.abs(change).max() > 0.05
        # Red grows along the width, green down the height, blue over the frames (where nothing clips).
        corner = np.s_[:, :, :2, :2]
        opposite = np.s_[:, :, -2:, -2:]
        gain = (laid.frames - plain.frames)
        if not actors[corner].any() and not actors[opposite].any():
            assert (gain[opposite][:, 0] > gain[corner][:, 0]).all() and (gain[opposite][:, 1] > gain[corner][:, 1]).all()
        first, last = gain[0, 2][~actors[0, 2]], gain[-1, 2][~actors[-1, 2]]
        assert first.mean() < last.mean()
        # The reader sees what it sees without the layout (it reads one object: an orbit's colour may be the other's).
        score = alignment.score(laid.frames, laid.caption)
        assert score == alignment.score(plain.frames, plain.caption), (family, laid.caption, score)
        if family != "orbit":
            assert all(v == 1.0 for v in score.values()), (family, laid.caption, score)
    picture = world2.random_clip(np.random.default_rng(5), family="static", frames=1, layout=0.2)
    assert picture.frames.shape[0] == 1
    with pytest.raises(ValueError, match="layout"):
        world2.random_clip(np.random.default_rng(0), layout=0.5)
