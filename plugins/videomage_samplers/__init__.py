"""The bundled samplers: plain classifier-free guidance and spatial-temporal collaborative
sampling (SCS)."""

from __future__ import annotations

from videomage import hookimpl
from videomage.kit import moved_names


@hookimpl
def register_samplers():
    # Imported on use, not when the plugin loads: `videomage --help` must not import the
    # heavy libraries these modules need.
    from videomage_samplers.cfg import CFGSampler
    from videomage_samplers.scs import SCSSampler

    return [CFGSampler, SCSSampler]


# Before 0.2 the package imported its components eagerly and exported them here.
__getattr__ = moved_names(__name__, {
    "CFGSampler": "videomage_samplers.cfg.CFGSampler",
    "SCSSampler": "videomage_samplers.scs.SCSSampler",
})
