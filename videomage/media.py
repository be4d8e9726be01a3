"""Reading user images and videos, and writing results.

Input rules (documented in the docs' "Inputs" page):

* Images (png, jpg, jpeg, webp) and video frames are converted to RGB (alpha dropped, grey
  repeated), then **resized so they cover** the target size keeping their aspect ratio, then
  **centre-cropped** to exactly ``height x width``.
* A video (mp4, webm, mov, mkv through imageio-ffmpeg; gif through Pillow) is reduced to
  ``frames`` frames **sampled evenly over the whole clip** (first and last included). A clip
  with fewer frames than asked for is an error: ask for fewer frames or give a longer clip.
* Every failure names the file and says how to fix it, before any training starts.

Tensors are ``[F, 3, H, W]`` float32 in ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from videomage.artifact import atomic_write
from videomage.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "fit",
    "list_images",
    "read_image",
    "read_images",
    "read_video",
    "write_contact_sheet",
    "write_gif",
    "write_mp4",
]


def _to_rgb(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InputError(f"{str(path)!r}: expected an RGB image, got an array of shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array[..., :3]


def fit(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``[F, 3, h, w]`` to cover ``height x width`` (aspect kept), then centre-crop."""
    h, w = frames.shape[-2:]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        frames = torch.nn.functional.interpolate(frames, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - height) // 2, (nw - width) // 2
    return frames[..., top : top + height, left : left + width].clamp(0, 1).contiguous()


def _tensor(frames: np.ndarray) -> torch.Tensor:
    array = frames.astype(np.float32) / (65535.0 if frames.dtype == np.uint16 else 255.0)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def read_image(path: str | Path, height: int, width: int) -> torch.Tensor:
    """One image as a one-frame video ``[1, 3, height, width]``."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {str(path)!r} does not exist; check the path")
    try:
        array = iio.imread(path, index=0) if path.suffix.lower() == ".gif" else iio.imread(path)
    except Exception as exc:  # imageio raises many types for corrupt files
        raise InputError(f"image {str(path)!r} could not be read ({exc}); re-export it as png or jpg") from None
    return fit(_tensor(_to_rgb(np.asarray(array), path)[None]), height, width)


def list_images(folder: str | Path) -> list[Path]:
    """The image files of a folder, sorted; an error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder {str(folder)!r} does not exist; pass a folder of {', '.join(IMAGE_SUFFIXES)} files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"image folder {str(folder)!r} has no {', '.join(IMAGE_SUFFIXES)} files; add 3-5 photos of the subject")
    return files


def read_images(folder_or_files: str | Path | Sequence[str | Path], height: int, width: int) -> torch.Tensor:
    """Every image of a folder (or a list of files) as one-frame videos ``[N, 1, 3, H, W]``."""
    if isinstance(folder_or_files, (str, Path)):
        files = list_images(folder_or_files)
    else:
        files = [Path(f) for f in folder_or_files]
    return torch.stack([read_image(f, height, width) for f in files])


def read_video(path: str | Path, frames: int, height: int, width: int) -> torch.Tensor:
    """A clip as ``[frames, 3, height, width]``, frames sampled evenly over the whole clip."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {str(path)!r} does not exist; check the path")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"video {str(path)!r}: unsupported format {path.suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)}")
    try:
        if path.suffix.lower() == ".gif":
            array = np.asarray(iio.imread(path, index=None))
        else:
            array = np.asarray(iio.imread(path, index=None, plugin="FFMPEG"))
    except Exception as exc:
        raise InputError(f"video {str(path)!r} could not be decoded ({exc}); re-encode it as h264 mp4") from None
    if array.ndim == 3:  # a gif with one frame, or a grey clip
        array = array[None] if array.shape[-1] in (3, 4) else array[..., None]
    if array.shape[0] == 0:
        raise InputError(f"video {str(path)!r} has no frames")
    if array.shape[0] < frames:
        raise InputError(
            f"video {str(path)!r} has {array.shape[0]} frames, fewer than the {frames} needed; "
            f"ask for --frames {array.shape[0]} or give a longer clip"
        )
    index = np.linspace(0, array.shape[0] - 1, frames).round().astype(int)
    picked = np.stack([_to_rgb(array[i], path) for i in index])
    return fit(_tensor(picked), height, width)


def _uint8(video: torch.Tensor) -> np.ndarray:
    if video.ndim != 4 or video.shape[1] != 3:
        raise InputError(f"expected a video [F, 3, H, W], got shape {tuple(video.shape)}")
    return (video.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def write_mp4(video: torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """Write ``[F, 3, H, W]`` in ``[0, 1]`` as an h264 mp4 (atomically)."""
    import imageio.v3 as iio

    frames = _uint8(video)
    atomic_write(
        path,
        lambda tmp: iio.imwrite(
            tmp, frames, fps=fps, plugin="FFMPEG", codec="libx264", macro_block_size=2, quality=8
        ),
    )
    return Path(path)


def write_gif(video: torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """Write ``[F, 3, H, W]`` in ``[0, 1]`` as a looping gif (atomically)."""
    import imageio.v3 as iio

    frames = _uint8(video)
    atomic_write(path, lambda tmp: iio.imwrite(tmp, frames, duration=1000 / fps, loop=0))
    return Path(path)


def write_contact_sheet(video: torch.Tensor, path: str | Path, columns: int = 8) -> Path:
    """Write the frames of ``[F, 3, H, W]`` as one PNG grid, ``columns`` frames a row."""
    import imageio.v3 as iio

    frames = _uint8(video)
    f, h, w, _ = frames.shape
    rows = -(-f // columns)
    cols = min(columns, f)
    sheet = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = frame
    atomic_write(path, lambda tmp: iio.imwrite(tmp, sheet))
    return Path(path)
