"""Finding and loading a backbone, and making the default adapter plugin."""

from __future__ import annotations

import re
from pathlib import Path

from collections.abc import Mapping
from typing import Any

from videomage.components import Adapter, Backbone
from videomage.config import ModelConfig, default
from videomage.errors import InputError, RegistryError, format_choices
from videomage.plugins import get_registry

#: The adapter type stages attach unless told otherwise: the configs' default.
DEFAULT_ADAPTER = default(ModelConfig, "adapter")

# What a Hugging Face Hub id looks like ("owner/name"); anything else that is not a folder is a
# mistyped path, and is reported as one rather than as a model no backbone recognises.
_HUB_ID = re.compile(r"[\w-][\w.-]*/[\w.-]+")


def check_model_exists(model: str) -> None:
    """Refuse a ``model`` that is neither an existing folder nor shaped like a Hub id, naming the path."""
    path = Path(model)
    if path.is_dir():
        return
    if path.exists():
        raise InputError(
            f"model {model!r} is a file; expected a model folder in the diffusers layout (the folder that holds "
            f"model_index.json) or a Hub id such as 'cerspense/zeroscope_v2_576w'"
        )
    if not _HUB_ID.fullmatch(model):
        raise InputError(
            f"model folder {model!r} does not exist (looked for {str(path.absolute())!r}); check the path, or pass "
            f"a Hub id such as 'cerspense/zeroscope_v2_576w'"
        )


def detect_backbone(model: str) -> str:
    """The name of the one backbone family that recognises ``model``."""
    check_model_exists(model)
    registry = get_registry()
    matches = [e.name for e in registry.entries("backbone") if e.cls.detect(model)]
    if len(matches) == 1:
        return matches[0]
    installed = format_choices(registry.names("backbone"))
    if not matches and not Path(model).is_dir():
        raise InputError(
            f"model {model!r} is not a local folder (looked for {str(Path(model).absolute())!r}) and not in your "
            f"Hugging Face cache, and recognising a model's family reads only local files. If it is a folder, check "
            f"the path; if it is a Hub id, download it once with `hf download {model}`, or name its family with "
            f"--backbone (installed: {installed}) to let the backbone fetch it."
        )
    if not matches:
        raise RegistryError(
            f"no installed backbone recognises the model folder {model!r}. Installed backbones: {installed}. "
            f"Check that it is a text-to-video model in the diffusers layout, name the family with --backbone, "
            f"or install the plugin for this model family."
        )
    raise RegistryError(f"model {model!r} is claimed by several backbones ({', '.join(matches)}); choose one with --backbone")


def hide_library_progress() -> None:
    """Turn off the Hugging Face libraries' own progress bars (loading weights, downloading files).

    They are process-wide switches, which is what ``--no-progress`` asks for: a command line
    run quiet from start to end.
    """
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def load_backbone(model: str, *, backbone: str | None = None, device: str = "cpu", dtype: str = "float32") -> Backbone:
    """Load ``model`` (a Hub id or local folder) with the named or detected backbone family."""
    from videomage.parallel import process_device

    check_model_exists(model)
    name = backbone or detect_backbone(model)
    cls = get_registry().get("backbone", name)
    return cls.from_pretrained(model, device=process_device(device), dtype=dtype)  # under a launcher: this process's GPU


def make_adapter(name: str = DEFAULT_ADAPTER, options: Mapping[str, Any] | None = None) -> Adapter:
    """An instance of the adapter type ``name`` (the configs' default) with ``options``."""
    return get_registry().create("adapter", name, **dict(options or {}))
