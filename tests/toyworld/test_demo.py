"""``videomage demo`` and the case pipeline it runs."""

from __future__ import annotations

import json

import pytest
from videomage_toyworld.demo import DemoCommand, metrics_table, run_demo
from videomage_toyworld.recipe import CaseSettings

from videomage.errors import InputError
from videomage.plugins import get_registry
from videomage.testing import CommandContract

MICRO = CaseSettings(subject_steps=1, motion_steps=1, inversion_steps=1, fusion_steps=1, videos_per_subject=1,
                     prior_count=1, prior_steps=1, sampling_steps=2, tau=1, stills=2)


def test_the_whole_method_runs_on_a_tiny_model_and_writes_every_output(monkeypatch, tiny_model_dir, tmp_path):
    from videomage import kit, workflow

    # No second orchestrator: the case is one Recipe handed to the ordinary workflow.
    assert kit.run_recipe is workflow.run_recipe
    seen = []
    real = workflow.run_recipe
    monkeypatch.setattr(kit, "run_recipe", lambda recipe, **kw: seen.append(recipe) or real(recipe, **kw))
    result = run_demo(tmp_path / "out", model=str(tiny_model_dir), settings=MICRO, progress=False, log=lambda m: None)
    (recipe,) = seen
    assert [s.token for s in recipe.subjects] == ["<pet>", "<toy>"] and recipe.motion is not None
    assert recipe.sampling.prompt == "<pet> is orbiting <toy> in the snow" and recipe.sampling.sampler == "scs"
    out = tmp_path / "out"
    for name in ("video.mp4", "video-frames.png", "overview.png", "metrics.md", "metrics.json", "base-model.mp4"):
        assert (out / name).is_file(), name
    assert result["files"]["overview"] == out / "overview.png"
    # One labelled row each: two subjects' stills, the reference clip, the result, the base model.
    import imageio.v3 as iio
    from videomage_toyworld.recipe import _spec, read_sheet

    spec = _spec(str(tiny_model_dir))
    f, h, w = spec.frames, spec.height, spec.width
    video = read_sheet(out / "video-frames.png", f, h)
    sheet = iio.imread(out / "overview.png")
    assert sheet.shape[0] == 5 * (14 + 2 * h)
    top = 3 * (14 + 2 * h) + 14  # the result's row, below the two subjects' stills and the reference
    result_row = sheet[top : top + 2 * h : 2, : f * 2 * w : 2]
    expected = (video.permute(2, 0, 3, 1).reshape(h, f * w, 3).numpy() * 255).round()
    assert abs(result_row.astype(float) - expected).max() <= 1
    record = json.loads((out / "metrics.json").read_text())
    assert set(record["metrics"]) == set(result["metrics"]) and len(result["metrics"]) == 2
    scores = next(iter(result["metrics"].values()))
    assert 0.0 <= scores["subject_fidelity"] <= 1.0 and 0.0 <= scores["appearance_leakage"] <= 1.0
    assert not list(out.rglob("*.tmp*")), "outputs are written atomically"


def test_overview_sheet_labels_each_row_above_its_frames(tmp_path):
    import imageio.v3 as iio
    import torch
    from videomage_toyworld.demo import overview_sheet

    red = torch.zeros(3, 3, 4, 4)
    red[:, 0] = 1.0
    grey = torch.full((2, 3, 4, 4), 0.5)
    path = overview_sheet([("three red frames", red), ("two grey", grey)], tmp_path / "o.png", scale=3)
    sheet = iio.imread(path).astype(int)
    assert sheet.shape == (2 * (14 + 12), 3 * 12, 3)  # as wide as the longest row
    assert (sheet[14:26, :36] == [255, 0, 0]).all()  # the first row's frames, each pixel 3x3
    assert (sheet[26 + 14 :, :24] == 128).all() and (sheet[26 + 14 :, 24:] == 255).all()  # short row: white after
    assert (sheet[:14].min(axis=-1) < 100).any() and (sheet[26 : 26 + 14].min(axis=-1) < 100).any()  # labels drawn
    with pytest.raises(ValueError, match="at least one row"):
        overview_sheet([], tmp_path / "none.png")


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a model folder in the diffusers layout"):
        run_demo(tmp_path, model=str(tmp_path), settings=MICRO)


def test_metrics_table_has_a_row_per_sample_and_marks_directions():
    scores = {"subject_fidelity": 0.5, "motion_fidelity": 0.25, "appearance_leakage": 0.1,
              "temporal_consistency": 0.9, "text_alignment": 1.0}
    text = metrics_table({"a": scores, "b": scores})
    assert text.count("\n") == 4 and "appearance leakage ↓" in text and "| a | 0.500 | 0.250 | 0.100 |" in text


def test_demo_is_a_registered_command():
    assert get_registry().get("command", "demo") is DemoCommand


class TestDemoCommandContract(CommandContract):
    @pytest.fixture
    def component_class(self):
        return DemoCommand


@pytest.mark.parametrize("argv, threads", [([], 1), (["--threads", "2"], 2)])
def test_demo_runs_on_one_thread_unless_told(monkeypatch, argv, threads):
    import argparse

    import torch
    from videomage_toyworld import demo

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: seen.append(torch.get_num_threads()) or {"table": "", "files": {}})
    parser = argparse.ArgumentParser()
    DemoCommand().add_arguments(parser)
    before = torch.get_num_threads()
    torch.set_num_threads(3 - threads)  # start from the other count, so the command must set it
    try:
        assert DemoCommand().run(parser.parse_args(argv)) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [threads]


def test_a_rerun_reuses_products_only_when_their_settings_match(tiny_model_dir, tmp_path):
    import attrs

    logs = []
    run_demo(tmp_path, model=str(tiny_model_dir), settings=MICRO, progress=False, log=logs.append)
    assert any(m == "subject <pet>: learning" for m in logs)
    logs.clear()
    run_demo(tmp_path, model=str(tiny_model_dir), settings=MICRO, progress=False, log=logs.append)
    assert "sampling" not in logs and any(m.startswith("sampling: up to date") for m in logs)  # everything reused
    logs.clear()
    run_demo(tmp_path, model=str(tiny_model_dir), settings=attrs.evolve(MICRO, tau=0), progress=False, log=logs.append)
    assert "sampling" in logs  # a sampling setting changed: sampled again
    assert any(m.startswith("subject <pet>: up to date") for m in logs)  # the trained products were not
    assert any(m.startswith("fusion: up to date") for m in logs)
    # Another model (here the same weights with an edited config file) reuses nothing.
    import shutil

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    index = other / "model_index.json"
    index.write_text(index.read_text() + "\n")
    logs.clear()
    run_demo(tmp_path, model=str(other), settings=MICRO, progress=False, log=logs.append)
    assert not any("up to date" in m for m in logs)
    assert "sampling" in logs and any(m.startswith("base model: sampling") for m in logs)


@pytest.mark.parametrize("frames", [8, 9, 17])
def test_read_sheet_reads_back_every_frame_of_a_contact_sheet_that_wraps(tmp_path, frames):
    import torch
    from videomage_toyworld.recipe import read_sheet

    from videomage.kit import write_contact_sheet

    video = torch.rand(frames, 3, 6, 6)
    path = write_contact_sheet(video, tmp_path / "sheet.png")  # 8 frames a row: 9 wrap onto a second
    back = read_sheet(path, frames, 6)
    assert back.shape == video.shape and (back - video).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="not 7 frames of 6x6"):
        read_sheet(path, 7, 6)
