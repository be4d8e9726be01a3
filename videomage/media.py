"""Reading user images and videos, and writing results.

Input rules (documented in the docs' "Inputs" page):

* Images (png, jpg, jpeg, webp) are turned upright by their EXIF orientation and converted to
  RGB by Pillow (alpha dropped, grey repeated, CMYK, palette and 1-bit images converted
  properly), then **resized so they cover** the target size keeping their aspect ratio, then
  **centre-cropped** to exactly ``height x width``. Video frames are treated the same way.
* A video (mp4, webm, mov, mkv through ffmpeg; gif through Pillow) is reduced to ``frames``
  frames **sampled evenly over the whole clip** (first and last included). Frames are decoded
  one at a time and only the sampled ones are kept, each resized as soon as it is decoded, so
  a long or huge clip costs the memory of one frame, not of the whole clip. A clip with fewer
  frames than asked for is an error: ask for fewer frames or give a longer clip.
* An image or video frame larger than `MAX_PIXELS` (40 megapixels; override with the
  ``VIDEOMAGE_MAX_PIXELS`` environment variable) is refused from its header, before decoding:
  a small compressed file can hold a picture that takes gigabytes once decoded.
* Every failure names the file and says how to fix it, before any training starts.

Tensors are ``[F, 3, H, W]`` float32 in ``[0, 1]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from videomage.artifact import atomic_write
from videomage.errors import ArtifactError, InputError
from videomage.paths import check_input_file, check_input_folder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")
#: The largest image or video frame read, in pixels (``VIDEOMAGE_MAX_PIXELS`` overrides it).
MAX_PIXELS = 40_000_000

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "VIDEO_SUFFIXES",
    "check_image",
    "check_video",
    "fit",
    "list_images",
    "max_pixels",
    "read_image",
    "read_images",
    "read_video",
    "write_contact_sheet",
    "write_gif",
    "write_mp4",
]


def max_pixels() -> int:
    """The pixel limit in force: ``VIDEOMAGE_MAX_PIXELS`` if set, else `MAX_PIXELS`."""
    value = os.environ.get("VIDEOMAGE_MAX_PIXELS")
    if value is None:
        return MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise InputError(f"VIDEOMAGE_MAX_PIXELS: expected a positive whole number of pixels, got {value!r}")
    return limit


def _check_size(path: Path, what: str, width: int, height: int) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise InputError(
            f"{what} {str(path)!r} is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
            f"{limit / 1e6:g} megapixels; scale it down (the model works at a fraction of that), or raise the "
            f"limit with VIDEOMAGE_MAX_PIXELS={width * height} if you have the memory"
        )


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


def _rgb(image) -> np.ndarray:
    """A Pillow image as ``[h, w, 3]`` (uint8, or uint16 for 16-bit grey)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep its depth
        grey = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode in ("LA", "PA", "La"):  # Pillow converts these to RGB through RGBA
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


def _fit_one(array: np.ndarray, height: int, width: int) -> torch.Tensor:
    return fit(_tensor(array[None]), height, width)[0]


def check_image(path: str | Path):
    """Open ``path`` with Pillow (header only) and check its size; the caller closes the image."""
    from PIL import Image, UnidentifiedImageError

    path = check_input_file(path, "image")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise InputError(f"image {str(path)!r} could not be read: it is not a png, jpg or webp image (or it is "
                         f"damaged); re-export it as png or jpg") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"image {str(path)!r} could not be read ({exc}); re-export it as png or jpg") from None
    _check_size(path, "image", *image.size)
    return image


def read_image(path: str | Path, height: int, width: int) -> torch.Tensor:
    """One image as a one-frame video ``[1, 3, height, width]``."""
    from PIL import ImageOps

    path = Path(path)
    with check_image(path) as image:
        w, h = image.size
        # A JPEG can be decoded at 1/2, 1/4 or 1/8 size directly: ask for the smallest that still
        # covers the target in either orientation (EXIF may turn the picture by 90 degrees).
        scale = max(height / h, width / w, height / w, width / h)
        try:
            image.draft("RGB", (int(w * scale) + 1, int(h * scale) + 1))
            upright = ImageOps.exif_transpose(image)
            # Halve big pictures in Pillow (a box filter) while they are more than twice the size
            # that covers the target; fit then does the final antialiased resize.
            factor = int(1 / (2 * max(height / upright.height, width / upright.width)))
            if factor >= 2 and upright.mode in ("L", "RGB", "RGBA", "CMYK", "I", "F"):
                upright = upright.reduce(factor)
            array = _rgb(upright)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"image {str(path)!r} could not be read ({exc}); re-export it as png or jpg") from None
    return _fit_one(array, height, width)[None]


def list_images(folder: str | Path) -> list[Path]:
    """The image files of a folder, sorted; an error when there are none."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        raise InputError(f"image folder {str(folder)!r} does not exist; pass a folder of {', '.join(IMAGE_SUFFIXES)} files")
    check_input_folder(folder, "image folder")
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


def _ffmpeg_reason(exc: Exception) -> str:
    """ffmpeg's own one-line reason, not its 19-line banner."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    banner = ("ffmpeg version", "built with", "configuration:", "lib", "Input #", "Stream", "Metadata", "Duration",
              "===", "Could not load meta", "FFMPEG call failed")
    useful = [line for line in lines if not line.startswith(banner)]
    return useful[-1] if useful else (lines[0] if lines else type(exc).__name__)


@contextmanager
def _quiet_ffmpeg():
    """imageio-ffmpeg logs a note whenever frames are read at another size than the source's,
    which is what we ask for: not the user's business."""
    log = logging.getLogger("imageio_ffmpeg")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _decode_error(path: Path, exc: Exception) -> InputError:
    return InputError(f"video {str(path)!r} could not be decoded ({_ffmpeg_reason(exc)}); re-encode it as h264 mp4, "
                      f"e.g. ffmpeg -i {path.name} -c:v libx264 fixed.mp4")


def check_video(path: str | Path) -> int:
    """Check a clip without decoding it: readable, a known format, frames under the limit; returns its frame count."""
    return _probe(path)[0]


def _probe(path: str | Path) -> tuple[int, tuple[int, int]]:
    path = check_input_file(path, "video")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"video {str(path)!r}: unsupported format {path.suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)}")
    if path.suffix.lower() == ".gif":
        with check_image(path) as image:
            return int(getattr(image, "n_frames", 1)), image.size
    import imageio_ffmpeg

    try:
        # The header (source size) without decoding the clip: one frame, shrunk, read to the end so
        # that ffmpeg exits by itself.
        with _quiet_ffmpeg():
            frames = imageio_ffmpeg.read_frames(str(path), output_params=["-frames:v", "1", "-vf", "scale=16:16"])
            meta = next(frames)
        for _ in frames:
            pass
        count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (OSError, RuntimeError, StopIteration) as exc:
        raise _decode_error(path, exc) from None
    size = tuple(meta.get("source_size") or meta["size"])
    _check_size(path, "video", *size)
    if count == 0:
        raise InputError(f"video {str(path)!r} has no frames")
    return count, size


def _picked(path: Path, count: int, frames: int) -> list[int]:
    if count < frames:
        raise InputError(
            f"video {str(path)!r} has {count} frames, fewer than the {frames} needed; "
            f"ask for --frames {count} or give a longer clip"
        )
    return np.linspace(0, count - 1, frames).round().astype(int).tolist()


def read_video(path: str | Path, frames: int, height: int, width: int) -> torch.Tensor:
    """A clip as ``[frames, 3, height, width]``, frames sampled evenly over the whole clip."""
    path = Path(path)
    count, (w, h) = _probe(path)
    index = _picked(path, count, frames)
    wanted = set(index)
    kept: dict[int, torch.Tensor] = {}
    if path.suffix.lower() == ".gif":
        with check_image(path) as image:
            for i in sorted(wanted):
                image.seek(i)
                kept[i] = _fit_one(_rgb(image), height, width)
    else:
        import imageio_ffmpeg

        # Let ffmpeg shrink big frames while decoding, to twice the size that covers the target
        # (the final antialiased resize still happens in fit), so a 4K frame never reaches Python.
        scale = max(height / h, width / w)
        params = ["-frames:v", str(index[-1] + 1)]  # ffmpeg stops after the last frame used
        if scale < 0.5:
            params += ["-vf", f"scale={2 * round(w * scale)}:{2 * round(h * scale)}:flags=area"]
        try:
            with _quiet_ffmpeg():
                reader = imageio_ffmpeg.read_frames(str(path), output_params=params)
                w, h = next(reader)["size"]
            last = None
            for i, data in enumerate(reader):
                if i in wanted:
                    kept[i] = _fit_one(np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3), height, width)
                    last = kept[i]
        except (OSError, RuntimeError, StopIteration) as exc:
            raise _decode_error(path, exc) from None
        if last is None:
            raise InputError(f"video {str(path)!r} has no frames that ffmpeg can decode; re-encode it as h264 mp4")
        # The container's frame count can exceed what decodes (a damaged tail): repeat the last frame read.
        for i in index:
            kept.setdefault(i, last)
    return torch.stack([kept[i] for i in index])


def _uint8(video: torch.Tensor) -> np.ndarray:
    if video.ndim != 4 or video.shape[1] != 3:
        raise InputError(f"expected a video [F, 3, H, W], got shape {tuple(video.shape)}")
    return (video.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def write_mp4(video: torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """Write ``[F, 3, H, W]`` in ``[0, 1]`` as an h264 mp4 (atomically)."""
    import imageio.v3 as iio

    frames = _uint8(video)

    def decodes(tmp: str) -> None:
        # ffmpeg on a full disk can exit quietly after writing nothing or half a file: read it back.
        import imageio_ffmpeg

        try:
            count, _ = imageio_ffmpeg.count_frames_and_secs(tmp)
        except (OSError, RuntimeError) as exc:
            raise ArtifactError(f"ffmpeg wrote a video that does not decode ({_ffmpeg_reason(exc)})") from None
        if count != len(frames):
            raise ArtifactError(f"ffmpeg wrote {count} of {len(frames)} frames")

    atomic_write(
        path,
        lambda tmp: iio.imwrite(
            tmp, frames, fps=fps, plugin="FFMPEG", codec="libx264", macro_block_size=2, quality=8
        ),
        check=decodes,
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
