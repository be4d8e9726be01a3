"""Finding and loading a backbone, and making the default adapter plugin."""

from __future__ import annotations

from videomage.components import Adapter, Backbone
from videomage.errors import RegistryError, format_choices
from videomage.plugins import get_registry

DEFAULT_ADAPTER = "lora"


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
    from videomage.parallel import process_device

    name = backbone or detect_backbone(model)
    cls = get_registry().get("backbone", name)
    return cls.from_pretrained(model, device=process_device(device), dtype=dtype)  # under a launcher: this process's GPU


def make_adapter(name: str = DEFAULT_ADAPTER) -> Adapter:
    """An instance of the adapter type ``name`` (LoRA by default)."""
    return get_registry().create("adapter", name)
