"""The LoRA adapter plugin (peft): named low-rank adapters on a backbone's roles."""

from __future__ import annotations

from videomage import hookimpl
from videomage.kit import moved_names


@hookimpl
def register_adapters():
    # Imported on use, not when the plugin loads: `videomage --help` must not import the
    # heavy libraries these modules need.
    from videomage_lora.adapter import LoRA

    return [LoRA]


# Before 0.2 the package imported its components eagerly and exported them here.
__getattr__ = moved_names(__name__, {
    "LoRA": "videomage_lora.adapter.LoRA",
})
