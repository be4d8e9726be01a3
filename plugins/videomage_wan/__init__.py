"""The Wan backbone plugins (diffusers ``WanTransformer3DModel``, ``AutoencoderKLWan``, UMT5).

``wan`` loads ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``, ``Wan-AI/Wan2.1-T2V-14B-Diffusers``,
``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` or any local folder in the diffusers layout whose one
transformer is a text-to-video ``WanTransformer3DModel``; ``wan22`` loads the two-expert
``Wan-AI/Wan2.2-T2V-A14B-Diffusers`` and folders like it (:mod:`videomage_wan.experts`).
How the method's roles and attention maps map onto a full-attention transformer is documented
in :mod:`videomage_wan.backbone` and :mod:`videomage_wan.attention`.
"""

from videomage.hookspecs import hookimpl
from videomage_wan.backbone import WanBackbone
from videomage_wan.experts import Wan22Backbone

__all__ = ["Wan22Backbone", "WanBackbone"]


@hookimpl
def register_backbones():
    return [WanBackbone, Wan22Backbone]
