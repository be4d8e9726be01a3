"""Recognising a Wan 2.1 text-to-video model on disk or by Hub id, and its native video size.

A folder is Wan when its ``transformer/config.json`` names ``WanTransformer3DModel`` and the
transformer takes no image (image-to-video Wan models add ``image_dim``/``added_kv_proj_dim``).
``model_index.json`` is not required, but when present it must name ``WanPipeline``, so a
ZeroScope folder (``unet/``, ``TextToVideoSDPipeline``) is never claimed. Nothing here downloads:
a Hub id is recognised from the published names or from the local Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path

from videomage.components import VideoSpec
from videomage.errors import ConfigError
from videomage.modelfiles import read_config, read_video_spec

TRANSFORMER_CLASS = "WanTransformer3DModel"
PIPELINE_CLASS = "WanPipeline"
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")

#: The published text-to-video models (Wan 2.1 generates 81 frames at 16 fps).
KNOWN_MODELS: dict[str, VideoSpec] = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": VideoSpec(height=480, width=832, frames=81, fps=16),
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": VideoSpec(height=720, width=1280, frames=81, fps=16),
}
DEFAULT_SPEC = KNOWN_MODELS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]

def is_family(model: str) -> bool:
    """Whether ``model`` is a Wan 2.1 text-to-video model (published id, or its configs say so)."""
    if model in KNOWN_MODELS:
        return True
    index = read_config(model, "model_index.json")
    if index is not None and index.get("_class_name") != PIPELINE_CLASS:
        return False
    config = read_config(model, "transformer/config.json")
    return (
        config is not None
        and config.get("_class_name") == TRANSFORMER_CLASS
        and config.get("image_dim") is None
        and config.get("added_kv_proj_dim") is None
    )


def check_folder(folder: Path) -> None:
    """Refuse a local folder that lacks a component or holds another family, naming the problem."""
    missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise ConfigError(
            f"model folder {str(folder)!r} has no {missing[0]!r} subfolder; a Wan model in the diffusers layout "
            f"needs {', '.join(COMPONENTS)} (WanPipeline.save_pretrained writes them all)"
        )
    if not is_family(str(folder)):
        config = read_config(str(folder), "transformer/config.json") or {}
        raise ConfigError(
            f"model folder {str(folder)!r} holds a {config.get('_class_name')!r} transformer"
            f"{' that also takes images' if config.get('image_dim') or config.get('added_kv_proj_dim') else ''}, "
            f"not a text-to-video {TRANSFORMER_CLASS}; load it with the backbone plugin for its family (`videomage plugins`)"
        )


def video_spec(model: str) -> VideoSpec:
    """The native size: the folder's ``videomage.json``, the published model's card, or Wan 2.1 1.3B's."""
    return read_video_spec(model) or KNOWN_MODELS.get(model, DEFAULT_SPEC)
