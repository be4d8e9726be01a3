"""The paper's objectives as a bundled plugin: denoise + prior preservation, the negative-CFG
motion loss, fusion distillation and attention regularisation."""

from videomage.hookspecs import hookimpl
from videomage_objectives.denoise import Denoise
from videomage_objectives.fusion import AttentionRegularization, FusionDistill
from videomage_objectives.motion import NegativeCFGMotion

__all__ = ["AttentionRegularization", "Denoise", "FusionDistill", "NegativeCFGMotion"]


@hookimpl
def register_objectives():
    return [Denoise, NegativeCFGMotion, FusionDistill, AttentionRegularization]
