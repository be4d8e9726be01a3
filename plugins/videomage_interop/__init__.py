"""Interoperability: artifacts out to diffusers, peft and ComfyUI; LoRAs in from them, DiffSynth,
kohya and musubi-tuner; ``.bin`` model folders rewritten as safetensors.

It reads each backbone's interoperability declarations (``Backbone.diffusers_component``,
``Backbone.textual_inversion``, ``Backbone.original_layer_name``), so a third-party backbone
that declares them exports and imports the same way.
"""

from videomage.hookspecs import hookimpl
from videomage_interop.commands import ConvertModel, Export, Import

__all__ = ["ConvertModel", "Export", "Import"]


@hookimpl
def register_commands():
    return [Export, Import, ConvertModel]
