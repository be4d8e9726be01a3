"""The base-model caption-following evaluation."""

from __future__ import annotations

from videomage_toyworld.evaluate import evaluate, full_captions
from videomage_toyworld.metrics import parse_prompt


def test_full_captions_name_every_part_and_are_seeded():
    captions = full_captions(12, seed=3)
    assert captions == full_captions(12, seed=3) and captions != full_captions(12, seed=4)
    for caption in captions:
        parsed = parse_prompt(caption)
        assert parsed["nouns"][0][0] and parsed["scene"] and parsed["direction"], caption


def test_evaluate_reports_each_part_as_a_fraction(tiny_model_dir):
    scores = evaluate(str(tiny_model_dir), n=2, batch=2, steps=1, progress=False)
    assert scores["samples"] == 2.0
    for key in ("colour", "shape", "background", "direction", "text_alignment", "all_four"):
        assert 0.0 <= scores[key] <= 1.0
