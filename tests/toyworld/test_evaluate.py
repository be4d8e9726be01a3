"""The base-model caption-following evaluation."""

from __future__ import annotations

import numpy as np
from videomage_toyworld.analysis import two_coloured
from toyworld.evaluate import evaluate, full_captions, shape_only_captions
from videomage_toyworld.metrics import parse_prompt
from videomage_toyworld.world import Actor, render


def test_full_captions_name_every_part_and_are_seeded():
    captions = full_captions(12, seed=3)
    assert captions == full_captions(12, seed=3) and captions != full_captions(12, seed=4)
    for caption in captions:
        parsed = parse_prompt(caption)
        assert parsed["nouns"][0][0] and parsed["scene"] and parsed["direction"], caption


def test_evaluate_reports_each_part_as_a_fraction(tiny_model_dir):
    scores = evaluate(str(tiny_model_dir), n=2, batch=2, steps=1, progress=False, patterns=2)
    assert scores["samples"] == 2.0 and scores["pattern_samples"] == 2.0
    for key in ("colour", "shape", "background", "direction", "text_alignment", "all_four", "patterned"):
        assert 0.0 <= scores[key] <= 1.0


def test_shape_only_captions_name_no_colour_and_no_motion():
    captions = shape_only_captions(10, seed=2)
    assert captions == shape_only_captions(10, seed=2)
    for caption in captions:
        parsed = parse_prompt(caption)
        assert parsed["scene"] and not parsed["direction"] and not parsed["nouns"][0][0], caption


def test_two_coloured_tells_patterns_from_plain_objects():
    rng = np.random.default_rng(0)
    path = np.tile(np.float32([[30.0, 34.0]]), (4, 1))
    for scene in ("in the snow", "at night", "on the grass"):
        for shape in ("circle", "square", "triangle"):
            plain = Actor(shape=shape, colours=("red",), path=path, radius=9.0)
            assert not two_coloured(render([plain], scene, rng=rng).frames), (scene, shape)
            for pattern in ("stripes", "checker"):
                patterned = Actor(shape=shape, colours=("red", "yellow"), path=path, radius=9.0, pattern=pattern)
                assert two_coloured(render([patterned], scene, rng=rng).frames), (scene, shape, pattern)
    empty = render([], "in the snow").frames
    assert not two_coloured(empty)


def test_sample_batch_offset_shifts_the_initial_noise_only(tiny_model_dir):
    import torch
    from toyworld.common import sample_batch

    from videomage.loading import load_backbone

    backbone = load_backbone(str(tiny_model_dir))
    options = {"steps": 1, "guidance": 7.5, "seed": 0}
    plain = sample_batch(backbone, ["a red circle"], **options)
    zero = sample_batch(backbone, ["a red circle"], offset=torch.zeros(1, 4, 1, 1, 1), **options)
    shifted = sample_batch(backbone, ["a red circle"], offset=torch.full((1, 4, 1, 1, 1), 3.0), **options)
    assert torch.equal(plain, zero)
    assert (shifted - plain).abs().mean() > 1e-3
