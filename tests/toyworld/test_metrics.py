"""The weight-free metrics on clips whose right answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videomage_toyworld import cases, metrics
from videomage_toyworld.vocabulary import rgb
from videomage_toyworld.world import Actor, linear_path, render

from videomage.errors import InputError
from videomage.plugins import get_registry
from videomage.testing import MetricContract

PROMPT = "a red square moving left in the snow"


def clip(colour="red", shape="square", direction="left", scene="in the snow", seed=0):
    rng = np.random.default_rng(seed)
    path = linear_path(rng, frames=8, size=64, radius=8, direction=direction, step=3.0)
    return render([Actor(shape=shape, colours=(colour,), path=path, radius=8, direction=direction)], scene).video()


def test_a_clip_that_follows_its_caption_scores_one():
    scores = metrics.TextAlignment().compute(clip(), {"prompt": PROMPT})
    assert scores == {"colour": 1.0, "shape": 1.0, "background": 1.0, "direction": 1.0, "text_alignment": 1.0}


@pytest.mark.parametrize(
    "kwargs, wrong",
    [({"colour": "blue"}, "colour"), ({"shape": "circle"}, "shape"), ({"shape": "triangle"}, "shape"),
     ({"direction": "right"}, "direction"), ({"direction": "up"}, "direction"), ({"direction": None}, "direction"),
     ({"scene": "at night"}, "background")],
)
def test_each_wrong_part_scores_zero_and_only_that_part(kwargs, wrong):
    scores = metrics.TextAlignment().compute(clip(**kwargs), {"prompt": PROMPT})
    assert scores[wrong] == 0.0
    assert all(v == 1.0 for k, v in scores.items() if k not in (wrong, "text_alignment"))
    assert scores["text_alignment"] == 0.75


def test_only_the_parts_a_prompt_names_are_scored():
    assert set(metrics.TextAlignment().compute(clip(), {"prompt": "a square"})) == {"shape", "text_alignment"}


def stills(case):
    return torch.stack([c.video()[0] for c in cases.subject_stills(case, 3)])


def test_subject_fidelity_tells_the_subjects_apart():
    pet, toy = (stills(c) for c in cases.SUBJECTS)
    context = {"subject_images": [pet, toy]}
    on_pet = metrics.SubjectFidelity().compute(pet, context)
    assert on_pet["subject_0"] == pytest.approx(1.0) and on_pet["subject_1"] == 0.0
    plain = render([Actor(shape="circle", colours=("pink",), path=np.array([[32.0, 32.0]]), radius=10)], "in the snow")
    half = metrics.SubjectFidelity().compute(plain.video(), context)["subject_0"]
    assert 0.5 < half < 0.9, "the right colour and shape without the pattern loses the pattern part"


def orbit(colours, scene="in the snow", phase=0.0, turns=1.0):
    orbiter, hub = cases.orbit_paths(8, 64, phase=phase, turns=turns)
    actors = [Actor(shape="square", colours=(colours[1],), path=hub, radius=7),
              Actor(shape="circle", colours=(colours[0],), path=orbiter, radius=6)]
    return render(actors, scene).video()


def motion_context(**extra):
    return {"reference_video": cases.motion_clip().video(), "subject_colours": [[rgb("pink")], [rgb("orange")]],
            "reference_colours": [rgb("green"), rgb("blue")], **extra}


def test_motion_fidelity_ignores_appearance_and_place_but_not_motion():
    same = metrics.MotionFidelity().compute(orbit(("pink", "orange")), motion_context())
    assert same["motion_fidelity"] > 0.95
    backwards = metrics.MotionFidelity().compute(orbit(("pink", "orange"), turns=-1.0), motion_context())
    assert backwards["motion_fidelity"] < same["motion_fidelity"] - 0.3
    missing = metrics.MotionFidelity().compute(orbit(("white", "white")), motion_context())
    assert missing["motion_fidelity"] == 0.0


def test_leakage_is_the_reference_colours_share():
    assert metrics.AppearanceLeakage().compute(orbit(("pink", "orange")), motion_context())["appearance_leakage"] == 0.0
    assert metrics.AppearanceLeakage().compute(orbit(("green", "blue")), motion_context())["appearance_leakage"] == 1.0
    mixed = metrics.AppearanceLeakage().compute(orbit(("pink", "blue")), motion_context())["appearance_leakage"]
    assert 0.3 < mixed < 0.8


def test_temporal_consistency_is_one_for_motion_and_lower_for_flicker():
    steady = metrics.TemporalConsistency().compute(clip(), {})
    assert steady["temporal_consistency"] == pytest.approx(1.0) and steady["background_drift"] == 0.0
    flicker = clip().clone()
    flicker[1::2] = clip(colour="yellow")[1::2]
    assert metrics.TemporalConsistency().compute(flicker, {})["temporal_consistency"] < 0.2


def test_missing_context_is_a_clear_error():
    with pytest.raises(InputError, match="no 'prompt'"):
        metrics.TextAlignment().compute(clip(), {})
    with pytest.raises(InputError, match="no 'reference_video'"):
        metrics.MotionFidelity().compute(clip(), {})


def test_all_five_are_registered():
    names = set(get_registry().names("metric"))
    assert {m.name for m in metrics.METRICS} <= names


FULL_CONTEXT = {"prompt": PROMPT, **motion_context(), "subject_images": [stills(c) for c in cases.SUBJECTS]}


@pytest.mark.parametrize("cls", metrics.METRICS, ids=lambda c: c.name)
class TestMetricContract(MetricContract):
    @pytest.fixture
    def component_class(self, cls):
        return cls

    @pytest.fixture
    def sample(self):
        return orbit(("pink", "orange")), FULL_CONTEXT
