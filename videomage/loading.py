"""Finding and loading a backbone, and making the default adapter plugin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from videomage.components import Adapter, Backbone
from videomage.errors import ConfigError, RegistryError, format_choices
from videomage.plugins import get_registry

DEFAULT_ADAPTER = "lora"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_model_request(model: str, dtype: str, check_folder: Callable[[Path], None]) -> torch.dtype:
    """What every backbone's ``from_pretrained`` checks first; returns the torch dtype.

    ``dtype`` must be one of :data:`DTYPES`; a local folder goes through the family's
    ``check_folder`` (which names a missing component); a path that is not a folder is refused,
    so that a typo in a path is not mistaken for a Hub id.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; choose one of {sorted(DTYPES)}")
    local = Path(model)
    if local.is_dir():
        check_folder(local)
    elif local.exists() or model.startswith((".", "/", "~")):
        raise ConfigError(f"model {model!r} is not a folder; pass a diffusers-layout folder or a Hub id")
    return DTYPES[dtype]


def detect_backbone(model: str) -> str:
    """The name of the one backbone family that recognises ``model``."""
    registry = get_registry()
    matches = [e.name for e in registry.entries("backbone") if e.cls.detect(model)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RegistryError(
            f"no installed backbone recognises model {model!r}. Installed backbones: "
            f"{format_choices(registry.names('backbone'))}. Pass a local folder in the diffusers layout, "
            f"name the family with --backbone, or install the plugin for this model family."
        )
    raise RegistryError(f"model {model!r} is claimed by several backbones ({', '.join(matches)}); choose one with --backbone")


def load_backbone(model: str, *, backbone: str | None = None, device: str = "cpu", dtype: str = "float32") -> Backbone:
    """Load ``model`` (a Hub id or local folder) with the named or detected backbone family."""
    name = backbone or detect_backbone(model)
    cls = get_registry().get("backbone", name)
    return cls.from_pretrained(model, device=device, dtype=dtype)


def make_adapter(name: str = DEFAULT_ADAPTER) -> Adapter:
    """An instance of the adapter type ``name`` (LoRA by default)."""
    return get_registry().create("adapter", name)
