"""The whole job on tiny Wan 2.2 models (A14B-shaped and TI2V-5B-shaped): from the CLI and from a recipe."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from videomage.artifact import Artifact
from videomage.cli import main
from videomage.config import Recipe, from_mapping
from videomage.workflow import run_recipe
from videomage_wan.tiny import TINY_SPEC, TINY_TI2V_SPEC, save_tiny_wan22

SPECS = {"a14b": TINY_SPEC, "ti2v5b": TINY_TI2V_SPEC}
#: The roles each stage's adapter gets: an expert's on A14B, the plain role on the one-transformer 5B.
ROLES = {"a14b": {"subject": ("low_noise.spatial",), "motion": ("high_noise.temporal",)},
         "ti2v5b": {"subject": ("spatial",), "motion": ("temporal",)}}


def square(h, w, x, y, colour):
    frame = np.full((h, w, 3), 30, dtype=np.uint8)
    frame[max(0, y - 5) : y + 5, max(0, x - 5) : x + 5] = colour
    return frame


def make_inputs(root: Path, kind: str) -> None:
    spec = SPECS[kind]
    for name, colour in (("toy", (220, 40, 40)), ("dog", (40, 40, 220))):
        folder = root / "photos" / name
        folder.mkdir(parents=True)
        for i in range(2):
            iio.imwrite(folder / f"{i}.png", square(spec.height, spec.width, 8 + 5 * i, 12 + 3 * i, colour))
    (root / "clips").mkdir()
    clip = np.stack([square(spec.height, spec.width, 6 + 4 * i, spec.height // 2, (40, 200, 40)) for i in range(spec.frames)])
    iio.imwrite(root / "clips" / "ride.mp4", clip, fps=8, plugin="FFMPEG", codec="libx264", macro_block_size=2)


@pytest.fixture(scope="module", params=sorted(SPECS))
def model(request, tmp_path_factory):
    return request.param, save_tiny_wan22(tmp_path_factory.mktemp(f"tiny-{request.param}"), kind=request.param)


def test_the_stage_commands_run_end_to_end(model, tmp_path, capsys):
    kind, folder = model
    make_inputs(tmp_path, kind)
    spec = SPECS[kind]
    args = ["--model", str(folder), "--steps", "2", "--no-progress", "--sample-steps", "2"]
    for token, word in (("<toy>", "toy"), ("<dog>", "dog")):
        code = main(["learn-subject", *args, "--images", str(tmp_path / "photos" / word), "--token", token,
                     "--class-word", word, "--out", str(tmp_path / f"{word}.safetensors"), "--lambda-reg", "0"])
        assert code == 0, capsys.readouterr().err
    assert main(["learn-motion", *args, "--video", str(tmp_path / "clips" / "ride.mp4"), "--prompt",
                 "a person is riding a horse", "--entities", "person,horse", "--inversion-steps", "1",
                 "--out", str(tmp_path / "ride.safetensors")]) == 0
    assert main(["fuse", *args, "--subjects", str(tmp_path / "toy.safetensors"), str(tmp_path / "dog.safetensors"),
                 "--videos-per-subject", "1", "--out", str(tmp_path / "pair.safetensors")]) == 0
    assert Artifact.load(tmp_path / "pair.safetensors").roles == ROLES[kind]["subject"]
    assert Artifact.load(tmp_path / "ride.safetensors").roles == ROLES[kind]["motion"]
    assert main(["generate", "--model", str(folder), "--subjects", str(tmp_path / "pair.safetensors"), "--motion",
                 str(tmp_path / "ride.safetensors"), "--prompt", "<toy> is riding <dog> in the snow", "--tau", "1",
                 "--out", str(tmp_path / "out.mp4"), "--steps", "3", "--no-progress"]) == 0
    frames = iio.imread(tmp_path / "out.mp4", index=None, plugin="FFMPEG")
    assert frames.shape == (spec.frames, spec.height, spec.width, 3)


def test_a_recipe_runs_with_an_expert_override(model, tmp_path):
    kind, folder = model
    project = tmp_path / "project"
    make_inputs(project, kind)
    motion = {"video": "clips/ride.mp4", "prompt": "a person is riding a horse", "entities": ["person", "horse"],
              "steps": 2, "inversion_steps": 1}
    if kind == "a14b":
        motion["experts"] = ["high_noise", "low_noise"]  # overriding the default: the motion LoRA in both experts
    data = {
        "seed": 0, "model": {"id": str(folder)},
        "subjects": [{"token": "<toy>", "class_word": "toy", "images": "photos/toy", "steps": 2, "lambda_reg": 0.0},
                     {"token": "<dog>", "class_word": "dog", "images": "photos/dog", "steps": 2, "lambda_reg": 0.0}],
        "motion": motion, "fusion": {"steps": 2, "videos_per_subject": 1},
        "sampling": {"prompt": "<toy> is riding <dog> in the snow", "steps": 3, "tau": 1}, "output": {"dir": "out"},
    }
    logs: list[str] = []
    run_recipe(from_mapping(Recipe, data).resolve_paths(project), progress=False, log=logs.append)
    out = project / "out"
    assert (out / "video.mp4").is_file() and json.loads((out / "video.json").read_text())["artifacts"]
    roles = ("high_noise.temporal", "low_noise.temporal") if kind == "a14b" else ("temporal",)
    assert Artifact.load(out / "motion.safetensors").roles == roles
    assert Artifact.load(out / "fused.safetensors").roles == ROLES[kind]["subject"]
    if kind == "a14b":  # a re-run with the experts changed relearns the motion, and only what depends on it
        data["motion"] = {k: v for k, v in motion.items() if k != "experts"}
        logs = []
        run_recipe(from_mapping(Recipe, data).resolve_paths(project), progress=False, log=logs.append)
        ran = [line for line in logs if "up to date" not in line and not line.startswith("work folder")]
        assert ran == ["motion: learning", "sampling"]
        assert any("belongs to another job (changed: settings)" in line for line in logs)  # the old state is set aside
        assert Artifact.load(out / "motion.safetensors").roles == ("high_noise.temporal",)


def test_the_experts_flag_is_checked_before_training(model, tmp_path, capsys):
    kind, folder = model
    make_inputs(tmp_path, kind)
    wrong = "mid_noise" if kind == "a14b" else "high_noise"
    code = main(["learn-subject", "--model", str(folder), "--images", str(tmp_path / "photos" / "toy"), "--token", "<toy>",
                 "--class-word", "toy", "--out", str(tmp_path / "toy.safetensors"), "--experts", wrong, "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "toy.safetensors").exists()
    assert ("its experts are high_noise, low_noise" if kind == "a14b" else "no experts") in err, err
