"""The Wan 2.1 backbone plugin (diffusers ``WanTransformer3DModel``, ``AutoencoderKLWan``, UMT5).

Loads ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``, ``Wan-AI/Wan2.1-T2V-14B-Diffusers`` or any local
folder in the diffusers layout whose transformer is a text-to-video ``WanTransformer3DModel``.
How the method's roles and attention maps map onto a full-attention transformer is documented
in :mod:`videomage_wan.backbone` and :mod:`videomage_wan.attention`.
"""

from videomage.hookspecs import hookimpl
from videomage_wan.backbone import WanBackbone

__all__ = ["WanBackbone"]


@hookimpl
def register_backbones():
    return [WanBackbone]
