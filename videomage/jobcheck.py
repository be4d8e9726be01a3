"""Checking a whole job before its first step: a bad value is a one-line error, not a lost hour.

The stage commands and ``videomage run`` call these before any model loads: the device exists,
every input file is readable and within the pixel limit, every named component is installed,
the motion entities appear in the prompt, and the outputs can be written without replacing an
input. What needs the loaded model (a size the VAE cannot divide) is checked right after loading,
still before any training.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from videomage.errors import ConfigError, InputError

__all__ = [
    "MAX_SIDE",
    "check_component",
    "check_options",
    "check_device",
    "check_entities",
    "check_images",
    "check_model_folder",
    "check_size",
    "finite_float",
    "int_range",
]

#: The largest ``--height`` / ``--width`` accepted: 4x a 1080p frame's width. Larger sizes only
#: allocate until the machine runs out of memory.
MAX_SIDE = 8192


def int_range(low: int, high: int | None = None):
    """An argparse ``type`` for integers in ``[low, high]``, with a message naming the bounds."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bounds}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def finite_float(*, positive: bool = False):
    """An argparse ``type`` for finite floats (``nan`` and ``inf`` are refused), optionally > 0."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
        if not positive and value < 0:
            raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def check_device(device: str) -> str:
    """Refuse a device torch does not know, or one this machine does not have."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"--device {device!r}: {build}; use --device cpu, or install a CUDA build of torch")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                              f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device!r}: MPS is not available on this machine; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device!r}: videomage runs on cpu, cuda or mps")
    return device


def check_model_folder(model: str) -> None:
    """A local model folder whose files cannot be read is a permission problem, not a missing download."""
    from videomage.paths import check_input_file, check_input_folder

    folder = Path(model)
    if not folder.is_dir():
        return
    check_input_folder(folder, "model folder", error=ConfigError)
    for entry in sorted(folder.rglob("*")):
        if entry.is_dir():
            check_input_folder(entry, "model folder", error=ConfigError)
        elif entry.suffix in (".json", ".safetensors", ".txt", ".model", ".bin"):
            check_input_file(entry, "model file", error=ConfigError)


def check_component(kind: str, name: str) -> None:
    """Refuse a component name no installed plugin provides (the registry lists the choices)."""
    from videomage.plugins import get_registry

    get_registry().get(kind, name)


def check_options(kind: str, name: str, options: dict) -> None:
    """Refuse an unknown component, or options it does not take (the registry names them)."""
    from videomage.plugins import get_registry

    registry = get_registry()
    from videomage.sampling import FIELDS

    shared = sorted(set(options) & FIELDS) if kind == "sampler" else []
    if shared:
        raise ConfigError(f"-o {shared[0]}=...: {shared[0]!r} is a setting of every sampler; use its own flag "
                          f"(--{shared[0].replace('_', '-')})")
    registry.build_options(kind, name, options)


def check_entities(prompt: str, entities: Sequence[str]) -> None:
    """Every motion entity must be a word of the motion prompt (they become its tokens)."""
    for word in entities:
        if not re.search(rf"\b{re.escape(word.strip())}\b", prompt):
            raise ConfigError(
                f"motion entity {word!r} does not appear in the motion prompt {prompt!r}; list the words of the "
                f"prompt that name the actors (e.g. --entities person,horse)"
            )


def check_images(folder_or_files: str | Path | Iterable[str | Path]) -> list[Path]:
    """Open every image's header: readable, a known format, under the pixel limit."""
    from videomage.media import check_image, list_images

    files = list_images(folder_or_files) if isinstance(folder_or_files, (str, Path)) else [Path(f) for f in folder_or_files]
    for f in files:
        check_image(f).close()
    return files


def check_prior_videos(folder: str | Path | None) -> None:
    """A prior-video folder: clips, each with a caption file."""
    if folder is None:
        return
    from videomage.media import VIDEO_SUFFIXES, check_video
    from videomage.paths import check_input_folder

    folder = check_input_folder(folder, "prior-video folder")
    clips = sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise InputError(f"prior-video folder {str(folder)!r} has no videos ({', '.join(VIDEO_SUFFIXES)})")
    for clip in clips:
        check_video(clip)
        if not clip.with_suffix(".txt").is_file():
            raise InputError(f"prior video {str(clip)!r} has no caption file {clip.with_suffix('.txt').name!r}; "
                             f"write its caption there")


def check_size(backbone, height: int | None, width: int | None) -> None:
    """Refuse a generated size the loaded backbone cannot make, before sampling starts."""
    from videomage.media import max_pixels

    spec = backbone.video_spec
    h, w = height or spec.height, width or spec.width
    scale = getattr(backbone, "vae_scale", 1)
    if h % scale or w % scale:
        raise ConfigError(f"--height and --width must be multiples of {scale} for this model, got {h}x{w}; "
                          f"try {max(scale, h // scale * scale)}x{max(scale, w // scale * scale)}")
    if h * w > max_pixels():
        raise ConfigError(f"--height x --width = {h}x{w} is over the pixel limit of {max_pixels() / 1e6:g} megapixels "
                          f"(VIDEOMAGE_MAX_PIXELS); ask for a smaller video")
