"""Config records and recipe files."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from videomage.config import MotionConfig, Recipe, SubjectConfig
from videomage.errors import ConfigError

RECIPE = """
seed = 3

[model]
id = "models/tiny"

[[subjects]]
token = "<toy>"
class_word = "toy"
images = "data/toy"

[[subjects]]
token = "<dog>"
class_word = "dog"
images = "data/dog"
steps = 10

[motion]
video = "data/ride.mp4"
prompt = "a person is riding a horse"
entities = ["person", "horse"]

[sampling]
prompt = "<toy> is riding <dog> in the snow"

[sampling.options]
tau = 0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_recipe_reads_every_section_and_resolves_paths(tmp_path):
    recipe = Recipe.from_toml(write(tmp_path, RECIPE))
    assert recipe.seed == 3
    assert [s.token for s in recipe.subjects] == ["<toy>", "<dog>"]
    assert recipe.subjects[1].steps == 10 and recipe.subjects[0].steps == 300
    assert recipe.subjects[0].images == tmp_path / "data/toy"
    assert recipe.motion.entities == ("person", "horse")
    assert recipe.motion.video == tmp_path / "data/ride.mp4"
    assert recipe.sampling.sampler == "scs" and recipe.sampling.options == {"tau": 0}
    assert recipe.sampling.guidance_scale == 9.0
    fast = Recipe.from_toml(write(tmp_path, RECIPE.replace("tau = 0", "tau = 0\nguidance_checkpointing = false")))
    assert fast.sampling.options == {"tau": 0, "guidance_checkpointing": False}
    assert recipe.output.dir == tmp_path / "videomage-out"
    assert recipe.model.id == "models/tiny"  # no such local folder: kept as a Hub id


def test_unknown_key_is_an_error_with_a_hint(tmp_path):
    text = RECIPE.replace("steps = 10", "stpes = 10")
    with pytest.raises(ConfigError) as info:
        Recipe.from_toml(write(tmp_path, text))
    assert "'stpes'" in str(info.value) and "Did you mean 'steps'" in str(info.value)
    assert "subjects[1]" in str(info.value)


def test_unknown_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'sampler'.*Did you mean 'sampling'"):
        Recipe.from_toml(write(tmp_path, RECIPE + "\n[sampler]\nsteps = 3\n"))


def test_missing_required_key_names_it(tmp_path):
    text = RECIPE.replace('class_word = "toy"\n', "")
    with pytest.raises(ConfigError, match="missing required key 'class_word'"):
        Recipe.from_toml(write(tmp_path, text))


def test_validator_names_field_expectation_and_value():
    with pytest.raises(ConfigError) as info:
        SubjectConfig(token="<toy>", class_word="toy", images="x", steps=0)
    assert "SubjectConfig.steps" in str(info.value) and "integer >= 1" in str(info.value) and "0" in str(info.value)


def test_token_must_be_bracketed():
    with pytest.raises(ConfigError, match="angle brackets"):
        SubjectConfig(token="toy", class_word="toy", images="x")


def test_duplicate_tokens_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="'<toy>' is used twice"):
        Recipe.from_toml(write(tmp_path, RECIPE.replace('token = "<dog>"', 'token = "<toy>"')))


def test_records_are_frozen_and_keyword_only():
    config = MotionConfig(video="a.mp4", prompt="p", entities=["a"])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.steps = 3
    with pytest.raises(TypeError):
        MotionConfig("a.mp4", "p", ["a"])


def test_missing_and_malformed_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Recipe.from_toml(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Recipe.from_toml(write(tmp_path, "[model\nid="))
