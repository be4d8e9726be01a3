"""The Wan backbone plugins (diffusers ``WanTransformer3DModel``, ``AutoencoderKLWan``, UMT5).

``wan`` loads ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``, ``Wan-AI/Wan2.1-T2V-14B-Diffusers``,
``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` or any local folder in the diffusers layout whose one
transformer is a text-to-video ``WanTransformer3DModel``; ``wan22`` loads the two-expert
``Wan-AI/Wan2.2-T2V-A14B-Diffusers`` and folders like it (:mod:`videomage_wan.experts`).
How the method's roles and attention maps map onto a full-attention transformer is documented
in :mod:`videomage_wan.backbone` and :mod:`videomage_wan.attention`.
"""

from __future__ import annotations

from videomage import hookimpl
from videomage.kit import moved_names


@hookimpl
def register_backbones():
    # Imported on use, not when the plugin loads: `videomage --help` must not import the
    # heavy libraries these modules need.
    from videomage_wan.backbone import WanBackbone
    from videomage_wan.experts import Wan22Backbone

    return [WanBackbone, Wan22Backbone]


# Before 0.2 the package imported its components eagerly and exported them here.
__getattr__ = moved_names(__name__, {
    "Wan22Backbone": "videomage_wan.experts.Wan22Backbone",
    "WanBackbone": "videomage_wan.backbone.WanBackbone",
})
