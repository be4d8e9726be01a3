"""The LoRA adapter plugin (peft): named low-rank adapters on a backbone's roles."""

from videomage.hookspecs import hookimpl
from videomage_lora.adapter import LoRA

__all__ = ["LoRA"]


@hookimpl
def register_adapters():
    return [LoRA]
