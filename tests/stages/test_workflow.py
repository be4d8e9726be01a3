"""Whole jobs on the tiny model: recipes that resume, the stage commands, and the tutorial.

Step counts are cut to a few so the suite stays fast; everything else runs as a user runs it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from videomage.cli import build_parser, main
from videomage.config import Recipe, from_mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOCS = Path(__file__).resolve().parents[2] / "docs"
FAST = {"subjects": {"steps": 2, "lambda_reg": 0.0}, "motion": {"steps": 2, "inversion_steps": 1},
        "fusion": {"steps": 2, "videos_per_subject": 1}, "sampling": {"steps": 2, "tau": 1}}


def square(size, x, y, colour, background=(30, 30, 30), half=5):
    frame = np.full((size, size, 3), background, dtype=np.uint8)
    frame[max(0, y - half) : y + half, max(0, x - half) : x + half] = colour
    return frame


def make_inputs(root: Path, size: int, frames: int) -> None:
    """The tutorial's project layout: photos of two subjects and one clip."""
    for name, colour, ext in (("toy", (220, 40, 40), "png"), ("dog", (40, 40, 220), "jpg")):
        folder = root / "photos" / name
        folder.mkdir(parents=True)
        for i in range(3):
            iio.imwrite(folder / f"{i}.{ext}", square(size, 8 + 5 * i, 12 + 3 * i, colour))
    (root / "clips").mkdir()
    clip = np.stack([square(size, 6 + 3 * i, size // 2, (40, 200, 40)) for i in range(frames)])
    iio.imwrite(root / "clips" / "ride.mp4", clip, fps=8, plugin="FFMPEG", codec="libx264", macro_block_size=2)


def tutorial_recipe() -> dict:
    text = (DOCS / "method" / "tutorial.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    return tomllib.loads(block)


def fast(data: dict, model: Path) -> dict:
    data = {**data, "model": {**data["model"], "id": str(model)}}
    data["subjects"] = [{**s, **FAST["subjects"]} for s in data["subjects"]]
    for key in ("motion", "fusion", "sampling"):
        data[key] = {**data.get(key, {}), **FAST[key]}
    return data


def run(data: dict, project: Path) -> list[str]:
    from videomage.workflow import run_recipe

    logs: list[str] = []
    run_recipe(from_mapping(Recipe, data).resolve_paths(project), progress=False, log=logs.append)
    return logs


def test_the_tutorial_recipe_runs_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    project = tmp_path / "project"
    make_inputs(project, size=32, frames=4)
    data = fast(tutorial_recipe(), tiny_model_dir)

    # The tutorial's command is a real command line of the CLI.
    (command,) = re.findall(r"```bash\n(videomage run .*?)\n```", (DOCS / "method" / "tutorial.md").read_text())
    assert build_parser()[0].parse_args(command.split()[1:]).recipe == Path("project/recipe.toml")

    # Interrupt the job in the motion stage: the subjects are kept.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("videomage.stages.motion.learn_motion", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(data, project)
    monkeypatch.undo()
    out = project / "out"
    toy = out / "subjects" / "toy.safetensors"
    assert toy.exists() and not (out / "motion.safetensors").exists()
    toy_mtime = toy.stat().st_mtime_ns

    logs = run(data, project)
    assert "subject <toy>: up to date" in logs[0] and "subject <dog>: up to date" in logs[1]
    assert logs[2:] == ["motion: learning", "fusion: training", "sampling"]
    assert toy.stat().st_mtime_ns == toy_mtime
    for name in ("subjects/toy.safetensors", "subjects/dog.safetensors", "motion.safetensors", "fused.safetensors",
                 "video.mp4", "video.json", "video-frames.png"):
        assert (out / name).exists(), name

    record = json.loads((out / "video.json").read_text())
    assert record["recipe"]["sampling"]["prompt"] == data["sampling"]["prompt"]
    assert record["recipe"]["seed"] == data["seed"] and record["request"]["seed"] == 0
    assert set(record["artifacts"]) == {str(out / "fused.safetensors"), str(out / "motion.safetensors")}

    # Everything is up to date, also when only the memory/time trade-off of guidance changes
    # (same video); a new sampling prompt reruns sampling only.
    assert all("up to date" in line for line in run(data, project))
    unchecked = {**data, "sampling": {**data["sampling"], "guidance_checkpointing": False}}
    assert all("up to date" in line for line in run(unchecked, project))
    data["sampling"] = {**data["sampling"], "prompt": "<dog> is riding <toy> in the snow"}
    logs = run(data, project)
    assert [line for line in logs if "up to date" not in line] == ["sampling"]


def test_stage_commands_end_to_end(tiny_model_dir, tmp_path, capsys):
    make_inputs(tmp_path, size=32, frames=4)
    model = ["--model", str(tiny_model_dir)]
    common = ["--steps", "2", "--no-progress", "--sample-steps", "2"]
    for token, word in (("<toy>", "toy"), ("<dog>", "dog")):
        code = main(["learn-subject", *model, "--images", str(tmp_path / "photos" / word), "--token", token,
                     "--class-word", word, "--out", str(tmp_path / f"{word}.safetensors"), "--lambda-reg", "0",
                     "--validate-every", "2", "--gradient-checkpointing", *common])
        assert code == 0, capsys.readouterr().err
    assert (tmp_path / "toy.safetensors.work" / "validation" / "subject-toy-step00002.mp4").exists()
    assert main(["learn-motion", *model, "--video", str(tmp_path / "clips" / "ride.mp4"), "--prompt",
                 "a person is riding a horse", "--entities", "person,horse", "--inversion-steps", "1",
                 "--out", str(tmp_path / "ride.safetensors"), *common]) == 0
    assert main(["fuse", *model, "--subjects", str(tmp_path / "toy.safetensors"), str(tmp_path / "dog.safetensors"),
                 "--videos-per-subject", "1", "--out", str(tmp_path / "pair.safetensors"), *common]) == 0
    assert main(["generate", *model, "--subjects", str(tmp_path / "pair.safetensors"), "--motion",
                 str(tmp_path / "ride.safetensors"), "--prompt", "<toy> is riding <dog> in the snow", "-o", "tau=1",
                 "--frames", "3", "--out", str(tmp_path / "out.mp4"), "--steps", "2", "--no-progress"]) == 0
    frames = iio.imread(tmp_path / "out.mp4", index=None, plugin="FFMPEG")
    assert frames.shape == (3, 32, 32, 3)
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["sampler"] == "scs" and record["options"]["guidance_checkpointing"] is True and record["options"]["tau"] == 1
    assert [c["tokens"] for c in record["request"]["subjects"]] == [{"<toy>": "toy", "<dog>": "dog"}]
    assert main(["generate", *model, "--subjects", str(tmp_path / "pair.safetensors"), "--motion",
                 str(tmp_path / "ride.safetensors"), "--prompt", "<toy> is riding <dog> in the snow", "--tau", "1",
                 "--frames", "3", "--out", str(tmp_path / "fast.mp4"), "--steps", "2", "--no-progress",
                 "--no-guidance-checkpointing"]) == 0  # 0.1's flags: deprecated aliases of -o, with a warning
    err = capsys.readouterr().err
    assert "--guidance-checkpointing is deprecated; write -o guidance_checkpointing=false" in err
    assert "--tau is deprecated; write -o tau=1" in err and "--lambda-reg is deprecated; write -o lambda_reg=0.0" in err
    assert json.loads((tmp_path / "fast.json").read_text())["options"]["guidance_checkpointing"] is False


def test_stage_command_errors_name_the_input(tiny_model_dir, tmp_path, capsys):
    code = main(["learn-subject", "--model", str(tiny_model_dir), "--images", str(tmp_path / "missing"), "--token", "<toy>",
                 "--class-word", "toy", "--out", str(tmp_path / "toy.safetensors"), "--no-progress"])
    assert code == 1  # a failed run; 2 is for a malformed command line
    assert "missing" in capsys.readouterr().err
    code = main(["generate", "--model", str(tmp_path / "nowhere"), "--prompt", "x", "--out", str(tmp_path / "x.mp4")])
    assert code == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "does not exist" in err and "recognises" not in err


def stopping_at_subject(seen: list, parts: list):
    """A subject stage that records the options and work-folder key it was given, then stops the job."""

    def stop(backbone, adapter, config, opts):
        from videomage.workdir import JOB_FILE

        seen.append(opts)
        parts.append(json.loads((opts.work_dir / JOB_FILE).read_text())["parts"])
        raise KeyboardInterrupt

    return stop


def test_stage_options_reach_the_stages_and_join_their_keys(tiny_model_dir, tmp_path, monkeypatch):
    from videomage.stages.common import StageOptions
    from videomage.workflow import run_recipe

    project = tmp_path / "project"
    make_inputs(project, size=32, frames=4)
    recipe = from_mapping(Recipe, fast(tutorial_recipe(), tiny_model_dir)).resolve_paths(project)
    seen, parts = [], []

    monkeypatch.setattr("videomage.stages.subject.learn_subject", stopping_at_subject(seen, parts))
    for options in (None, StageOptions(prior_count=1, prior_steps=2)):
        with pytest.raises(KeyboardInterrupt):
            run_recipe(recipe, progress=False, log=lambda m: None, stage_options=options)
    default, chosen = seen
    assert (default.prior_count, chosen.prior_count, chosen.prior_steps) == (StageOptions().prior_count, 1, 2)
    assert chosen.seed == recipe.seed and chosen.work_dir == default.work_dir
    # The prior settings change the subject, so they are part of its key (its work folder's job).
    assert parts[0]["model and seed"] != parts[1]["model and seed"] and parts[0]["settings"] == parts[1]["settings"]


def test_a_recipes_memory_savers_reach_every_stage_and_change_no_key(tiny_model_dir, tmp_path, monkeypatch):
    from videomage.workflow import run_recipe

    project = tmp_path / "project"
    make_inputs(project, size=32, frames=4)
    data = fast(tutorial_recipe(), tiny_model_dir)
    saving = {**data, "model": {**data["model"], "gradient_checkpointing": True, "release_text_encoder": True}}
    seen, parts = [], []

    monkeypatch.setattr("videomage.stages.subject.learn_subject", stopping_at_subject(seen, parts))
    for mapping in (data, saving):
        with pytest.raises(KeyboardInterrupt):
            run_recipe(from_mapping(Recipe, mapping).resolve_paths(project), progress=False, log=lambda m: None)
    plain, saved = seen
    assert (plain.gradient_checkpointing, plain.release_text_encoder) == (False, False)
    assert (saved.gradient_checkpointing, saved.release_text_encoder) == (True, True)
    # They change no result, so a recipe that turns them on resumes the same work (same key).
    assert parts[0] == parts[1]
