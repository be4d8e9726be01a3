"""Reading inputs by the documented rules, and writing outputs that decode back."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from videomage.errors import InputError
from videomage.media import fit, read_image, read_images, read_video, write_contact_sheet, write_gif, write_mp4


def ramp_clip(n=12, h=48, w=64):
    """Frame i is uniformly grey at level 20 * i, so frame indices can be read back."""
    return np.stack([np.full((h, w, 3), 20 * i, dtype=np.uint8) for i in range(n)])


def test_fit_covers_then_centre_crops():
    frames = torch.zeros(1, 3, 10, 40)
    frames[..., 15:25] = 1.0  # a bright centre band, 10 px wide
    out = fit(frames, 20, 20)
    assert out.shape == (1, 3, 20, 20)
    # covering 20x20 scales by 2 -> 20x80 and the centre 20 columns are the band
    # (its outermost columns are softened by the antialiasing filter)
    assert out[..., 2:18].mean().item() == pytest.approx(1.0, abs=1e-3)
    assert out[..., 0].mean().item() > 0.5


def test_image_formats_and_channel_conversion(tmp_path):
    grey = np.full((30, 30), 128, dtype=np.uint8)
    rgba = np.zeros((30, 30, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    iio.imwrite(tmp_path / "a.png", grey)
    iio.imwrite(tmp_path / "b.webp", rgba[..., :3])
    iio.imwrite(tmp_path / "c.png", rgba)
    iio.imwrite(tmp_path / "notes.txt", np.zeros((2, 2), dtype=np.uint8), extension=".png")
    images = read_images(tmp_path, 16, 16)
    assert images.shape == (3, 1, 3, 16, 16)  # notes.txt ignored
    assert images[0].mean().item() == pytest.approx(128 / 255, abs=1e-3)
    assert images[2, 0, 0].mean().item() == pytest.approx(1.0) and images[2, 0, 1].max().item() == 0.0


def test_bad_images_name_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png.*could not be read"):
        read_image(tmp_path / "broken.png", 8, 8)
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing.png", 8, 8)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty.*has no"):
        read_images(empty, 8, 8)


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webm"])
def test_video_frames_sampled_evenly_over_the_clip(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    if suffix == ".gif":
        iio.imwrite(path, ramp_clip(), duration=100, loop=0)
    else:
        codec = "libx264" if suffix == ".mp4" else "libvpx-vp9"
        iio.imwrite(path, ramp_clip(), fps=8, plugin="FFMPEG", codec=codec, macro_block_size=2)
    video = read_video(path, 4, 24, 32)
    assert video.shape == (4, 3, 24, 32)
    # indices linspace(0, 11, 4) -> 0, 4, 7, 11 (rounded) -> grey 0, 80, 140, 220
    levels = video.mean(dim=(1, 2, 3)) * 255
    assert torch.allclose(levels, torch.tensor([0.0, 80.0, 140.0, 220.0]), atol=8)


def test_short_corrupt_and_unknown_videos_are_clear_errors(tmp_path):
    path = tmp_path / "short.mp4"
    iio.imwrite(path, ramp_clip(3), fps=8, plugin="FFMPEG", codec="libx264", macro_block_size=2)
    with pytest.raises(InputError, match="short.mp4.*3 frames, fewer than the 8.*--frames 3"):
        read_video(path, 8, 16, 16)
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="junk.mp4.*could not be decoded"):
        read_video(tmp_path / "junk.mp4", 2, 16, 16)
    (tmp_path / "clip.avi2").write_bytes(b"")
    with pytest.raises(InputError, match="unsupported format"):
        read_video(tmp_path / "clip.avi2", 2, 16, 16)


def test_outputs_decode_to_the_requested_frames_and_size(tmp_path):
    video = torch.rand(6, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    mp4 = write_mp4(video, tmp_path / "out.mp4", fps=8)
    assert iio.imread(mp4, index=None, plugin="FFMPEG").shape == (6, 32, 48, 3)
    gif = write_gif(video, tmp_path / "out.gif")
    assert iio.imread(gif, index=None).shape[:3] == (6, 32, 48)
    sheet = write_contact_sheet(video, tmp_path / "sheet.png", columns=4)
    assert iio.imread(sheet).shape == (64, 192, 3)


def test_the_documented_pixel_limit_is_the_one_in_force(monkeypatch):
    from pathlib import Path

    from videomage.media import MAX_PIXELS, max_pixels

    docs = (Path(__file__).resolve().parents[2] / "docs" / "concepts" / "inputs.md").read_text()
    assert f"**{MAX_PIXELS // 1_000_000} megapixels**" in docs and "VIDEOMAGE_MAX_PIXELS" in docs
    assert max_pixels() == MAX_PIXELS
    monkeypatch.setenv("VIDEOMAGE_MAX_PIXELS", "123")
    assert max_pixels() == 123
    monkeypatch.setenv("VIDEOMAGE_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="VIDEOMAGE_MAX_PIXELS"):
        max_pixels()
