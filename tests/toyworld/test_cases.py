"""The customisation cases: novel subjects and the orbit clip."""

from __future__ import annotations

import numpy as np
import torch
from videomage_toyworld import cases
from videomage_toyworld.metrics import SubjectFidelity
from videomage_toyworld.vocabulary import NOVEL_COLOURS, PALETTE

from videomage.media import read_images, read_video


def test_subjects_use_only_colours_the_base_model_never_saw():
    for case in cases.SUBJECTS:
        assert set(case.colours) <= set(NOVEL_COLOURS) and not set(case.colours) & set(PALETTE)
        assert case.pattern != "plain"


def test_each_subjects_stills_score_as_that_subject():
    stills = [torch.stack([c.video()[0] for c in cases.subject_stills(case, 3)]) for case in cases.SUBJECTS]
    for i, batch in enumerate(stills):
        scores = SubjectFidelity().compute(batch, {"subject_images": stills})
        assert scores[f"subject_{i}"] > 0.95 and scores[f"subject_{1 - i}"] == 0.0


def test_the_orbit_keeps_its_distance_and_turns_once():
    clip = cases.motion_clip()
    orbiter, hub = clip.centres[1], clip.centres[0]
    assert np.allclose(hub, hub[0])
    distance = np.linalg.norm(orbiter - hub, axis=1)
    assert np.allclose(distance, distance[0], atol=1e-4)
    angles = np.unwrap(np.arctan2(-(orbiter - hub)[:, 1], (orbiter - hub)[:, 0]))
    assert np.isclose(angles[-1] - angles[0], 2 * np.pi * 7 / 8, atol=1e-4)


def test_case_files_read_back_as_a_user_would(tmp_path):
    paths = cases.write_case_files(tmp_path, size=32, frames=4, stills=2)
    assert read_images(paths["<pet>"], 32, 32).shape == (2, 1, 3, 32, 32)
    assert read_video(paths["motion"], 4, 32, 32).shape == (4, 3, 32, 32)
