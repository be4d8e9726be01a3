"""Recognising a Wan text-to-video model (2.1, 2.2 TI2V-5B, 2.2 A14B) on disk or by Hub id, and its native video size.

A folder is Wan when its ``transformer/config.json`` names ``WanTransformer3DModel`` and the
transformer takes no image (image-to-video Wan models add ``image_dim``/``added_kv_proj_dim``).
``model_index.json`` is not required, but when present it must name ``WanPipeline``, so a
ZeroScope folder (``unet/``, ``TextToVideoSDPipeline``) is never claimed. Nothing here downloads:
a Hub id is recognised from the published names or from the local Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path

from videomage import ConfigError, VideoSpec
from videomage.kit import read_config, read_video_spec

TRANSFORMER_CLASS = "WanTransformer3DModel"
PIPELINE_CLASS = "WanPipeline"
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")

#: The published text-to-video models (Wan 2.1 generates 81 frames at 16 fps).
KNOWN_MODELS: dict[str, VideoSpec] = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": VideoSpec(height=480, width=832, frames=81, fps=16),
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": VideoSpec(height=720, width=1280, frames=81, fps=16),
    # One transformer, Wan 2.2's 16x VAE with 48 latent channels; 121 frames at 24 fps.
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": VideoSpec(height=704, width=1280, frames=121, fps=24),
}
#: The published two-expert models (``transformer`` high noise, ``transformer_2`` low noise).
KNOWN_EXPERT_MODELS: dict[str, VideoSpec] = {
    "Wan-AI/Wan2.2-T2V-A14B-Diffusers": VideoSpec(height=720, width=1280, frames=81, fps=16),
}
DEFAULT_SPEC = KNOWN_MODELS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]


def has_experts(model: str) -> bool:
    """Whether a Wan folder's pipeline holds two experts (``transformer_2`` and ``boundary_ratio``)."""
    index = read_config(model, "model_index.json") or {}
    return index.get("boundary_ratio") is not None or bool((index.get("transformer_2") or [None])[0])


def is_expert_family(model: str) -> bool:
    """Whether ``model`` is a two-expert Wan 2.2 text-to-video model (A14B)."""
    if model in KNOWN_EXPERT_MODELS:
        return True
    return model not in KNOWN_MODELS and _is_wan_t2v(model) and has_experts(model)


def is_family(model: str) -> bool:
    """Whether ``model`` is a one-transformer Wan text-to-video model (2.1, or 2.2 TI2V-5B)."""
    if model in KNOWN_MODELS:
        return True
    return model not in KNOWN_EXPERT_MODELS and _is_wan_t2v(model) and not has_experts(model)


def _is_wan_t2v(model: str) -> bool:
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


def check_folder(folder: Path, components: tuple[str, ...] = COMPONENTS, family=None) -> None:
    """Refuse a local folder that lacks a component or holds another family, naming the problem."""
    family = family or is_family
    missing = [c for c in components if not (folder / c).is_dir()]
    if missing:
        raise ConfigError(
            f"model folder {str(folder)!r} has no {missing[0]!r} subfolder; a Wan model in the diffusers layout "
            f"needs {', '.join(components)} (WanPipeline.save_pretrained writes them all)"
        )
    if not family(str(folder)):
        if _is_wan_t2v(str(folder)):
            kind = "two experts (Wan 2.2 A14B: backbone 'wan22')" if has_experts(str(folder)) else "one transformer (backbone 'wan')"
            raise ConfigError(f"model folder {str(folder)!r} is a Wan model with {kind}; load it with that backbone")
        config = read_config(str(folder), "transformer/config.json") or {}
        raise ConfigError(
            f"model folder {str(folder)!r} holds a {config.get('_class_name')!r} transformer"
            f"{' that also takes images' if config.get('image_dim') or config.get('added_kv_proj_dim') else ''}, "
            f"not a text-to-video {TRANSFORMER_CLASS}; load it with the backbone plugin for its family (`videomage plugins`)"
        )


def video_spec(model: str) -> VideoSpec:
    """The native size: the folder's ``videomage.json``, the published model's card, or Wan 2.1 1.3B's."""
    return read_video_spec(model) or KNOWN_MODELS.get(model) or KNOWN_EXPERT_MODELS.get(model, DEFAULT_SPEC)
