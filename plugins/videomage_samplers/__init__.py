"""The bundled samplers: plain classifier-free guidance and spatial-temporal collaborative
sampling (SCS)."""

from videomage.hookspecs import hookimpl
from videomage_samplers.cfg import CFGSampler
from videomage_samplers.scs import SCSSampler

__all__ = ["CFGSampler", "SCSSampler"]


@hookimpl
def register_samplers():
    return [CFGSampler, SCSSampler]
