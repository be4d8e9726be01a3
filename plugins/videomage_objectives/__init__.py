"""The paper's objectives as a bundled plugin: denoise + prior preservation, the negative-CFG
motion loss, fusion distillation and attention regularisation."""

from __future__ import annotations

from videomage import hookimpl
from videomage.kit import moved_names


@hookimpl
def register_objectives():
    # Imported on use, not when the plugin loads: `videomage --help` must not import the
    # heavy libraries these modules need.
    from videomage_objectives.denoise import Denoise
    from videomage_objectives.fusion import AttentionRegularization, FusionDistill
    from videomage_objectives.motion import NegativeCFGMotion

    return [Denoise, NegativeCFGMotion, FusionDistill, AttentionRegularization]


# Before 0.2 the package imported its components eagerly and exported them here.
__getattr__ = moved_names(__name__, {
    "AttentionRegularization": "videomage_objectives.fusion.AttentionRegularization",
    "Denoise": "videomage_objectives.denoise.Denoise",
    "FusionDistill": "videomage_objectives.fusion.FusionDistill",
    "NegativeCFGMotion": "videomage_objectives.motion.NegativeCFGMotion",
})
