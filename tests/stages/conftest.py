"""Fixtures for stage tests: tiny images, clips and a fresh tiny backbone per test."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from videomage.loading import load_backbone, make_adapter


@pytest.fixture
def backbone(tiny_model_dir):
    return load_backbone(str(tiny_model_dir))


@pytest.fixture
def adapter():
    return make_adapter("lora")


def square_frame(h, w, x, y, colour, background=(30, 30, 30), size=6):
    frame = np.zeros((h, w, 3), dtype=np.uint8)
    frame[:] = background
    frame[max(0, y - size) : y + size, max(0, x - size) : x + size] = colour
    return frame


@pytest.fixture
def subject_images(tmp_path, backbone):
    spec = backbone.video_spec
    folder = tmp_path / "toy"
    folder.mkdir()
    for i, (x, y) in enumerate([(10, 10), (20, 16), (14, 22)]):
        iio.imwrite(folder / f"{i}.png", square_frame(spec.height, spec.width, x % spec.width, y % spec.height, (220, 40, 40)))
    return folder


@pytest.fixture
def motion_clip(tmp_path, backbone):
    spec = backbone.video_spec
    frames = [square_frame(spec.height, spec.width, 4 + 3 * i, spec.height // 2, (40, 200, 40)) for i in range(spec.frames)]
    path = tmp_path / "clip.mp4"
    iio.imwrite(path, np.stack(frames), fps=8, plugin="FFMPEG", codec="libx264", macro_block_size=2)
    return path
