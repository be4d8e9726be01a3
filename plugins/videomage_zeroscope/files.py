"""Finding a ZeroScope/ModelScope model on disk: a local folder, or a Hub id in the local cache.

Nothing here downloads. A Hub id resolves through the Hugging Face cache when the model was
downloaded before (``huggingface-cli download <id>``); on a machine with network access the
component loaders may fetch it, which is diffusers' behaviour and not ours to hide.
"""

from __future__ import annotations

import json
from pathlib import Path

from videomage.components import VideoSpec
from videomage.errors import ConfigError

#: The UNet class that makes a folder a model of this family.
UNET_CLASS = "UNet3DConditionModel"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

#: Native output of the published models (the model cards' settings).
KNOWN_MODELS: dict[str, VideoSpec] = {
    "cerspense/zeroscope_v2_576w": VideoSpec(height=320, width=576, frames=24, fps=8),
    "cerspense/zeroscope_v2_xl": VideoSpec(height=576, width=1024, frames=24, fps=8),
    "damo-vilab/text-to-video-ms-1.7b": VideoSpec(height=256, width=256, frames=16, fps=8),
}

#: An optional file at a model folder's root declaring its native video size (our toy model has one):
#: ``{"video_spec": {"height": 64, "width": 64, "frames": 8, "fps": 8}}``.
SPEC_FILE = "videomage.json"


def _cached_file(model_id: str, filename: str) -> Path | None:
    """``filename`` of Hub repo ``model_id`` if it is in the local cache; never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return None
    try:
        found = try_to_load_from_cache(model_id, filename)
    except Exception:  # an id that is not a valid repo name
        return None
    return Path(found) if isinstance(found, str) else None


def unet_class(model: str) -> str | None:
    """The ``_class_name`` of the model's UNet, read from a local folder or the cache; None if unknown."""
    local = Path(model)
    if local.is_dir():
        config = local / "unet" / "config.json"
    else:
        config = _cached_file(model, "unet/config.json")
    if config is None or not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError):
        return None


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
    local = Path(model) / SPEC_FILE
    if local.is_file():
        try:
            data = json.loads(local.read_text())["video_spec"]
            return VideoSpec(height=int(data["height"]), width=int(data["width"]), frames=int(data["frames"]), fps=int(data["fps"]))
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"{str(local)!r} is malformed ({exc!r}); expected "
                '{"video_spec": {"height": H, "width": W, "frames": F, "fps": FPS}}'
            ) from None
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model]
    side = sample_size * vae_scale
    return VideoSpec(height=side, width=side, frames=16, fps=8)
