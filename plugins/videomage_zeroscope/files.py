"""Recognising a ZeroScope/ModelScope model on disk (a local folder, or a Hub id in the local
cache) and its native size. Reading files without downloading is :mod:`videomage.modelfiles`'.
"""

from __future__ import annotations

from pathlib import Path

from videomage import ConfigError, VideoSpec
from videomage.kit import read_config, read_video_spec

#: The UNet class that makes a folder a model of this family.
UNET_CLASS = "UNet3DConditionModel"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

#: Native output of the published models (the model cards' settings).
KNOWN_MODELS: dict[str, VideoSpec] = {
    "cerspense/zeroscope_v2_576w": VideoSpec(height=320, width=576, frames=24, fps=8),
    "cerspense/zeroscope_v2_xl": VideoSpec(height=576, width=1024, frames=24, fps=8),
    "damo-vilab/text-to-video-ms-1.7b": VideoSpec(height=256, width=256, frames=16, fps=8),
}


def unet_class(model: str) -> str | None:
    """The ``_class_name`` of the model's UNet, from a local folder or the cache; None if unknown."""
    return (read_config(model, "unet/config.json") or {}).get("_class_name")


def is_family(model: str) -> bool:
    """Whether ``model`` names a ZeroScope/ModelScope-style model (a UNet3DConditionModel)."""
    return model in KNOWN_MODELS or unet_class(model) == UNET_CLASS


def check_folder(folder: Path) -> None:
    """Refuse a local folder that lacks a component, naming it."""
    missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise ConfigError(
            f"model folder {str(folder)!r} has no {missing[0]!r} subfolder; a diffusers-layout text-to-video "
            f"model needs {', '.join(COMPONENTS)} (save each component with save_pretrained)"
        )
    if unet_class(str(folder)) != UNET_CLASS:
        raise ConfigError(
            f"model folder {str(folder)!r} holds a {unet_class(str(folder))!r} denoiser, not a {UNET_CLASS}; "
            f"load it with the backbone plugin for that family (see `videomage plugins`)"
        )


def video_spec(model: str, sample_size: int, vae_scale: int) -> VideoSpec:
    """The native size: a model folder's ``videomage.json``, the published models' cards, or derived.

    The derived default takes the UNet's ``sample_size`` times the VAE's down-sampling, 16 frames
    at 8 fps (ModelScope's training setting).
    """
    declared = read_video_spec(model)
    if declared is not None:
        return declared
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model]
    side = sample_size * vae_scale
    return VideoSpec(height=side, width=side, frames=16, fps=8)
