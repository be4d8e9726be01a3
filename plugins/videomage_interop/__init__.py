"""Interoperability: artifacts out to diffusers, peft and ComfyUI; LoRAs in from them, DiffSynth,
kohya and musubi-tuner; ``.bin`` model folders rewritten as safetensors.

It reads each backbone's interoperability declarations (``Backbone.diffusers_component``,
``Backbone.textual_inversion``, ``Backbone.original_layer_name``), so a third-party backbone
that declares them exports and imports the same way.
"""

from __future__ import annotations

from videomage import hookimpl
from videomage.kit import moved_names


@hookimpl
def register_commands():
    # Imported on use, not when the plugin loads: `videomage --help` must not import the
    # heavy libraries these modules need.
    from videomage_interop.commands import ConvertModel, Export, Import

    return [Export, Import, ConvertModel]


# Before 0.2 the package imported its components eagerly and exported them here.
__getattr__ = moved_names(__name__, {
    "ConvertModel": "videomage_interop.commands.ConvertModel",
    "Export": "videomage_interop.commands.Export",
    "Import": "videomage_interop.commands.Import",
})
