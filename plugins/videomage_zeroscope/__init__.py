"""The ZeroScope / ModelScope backbone plugin (diffusers ``UNet3DConditionModel``).

Loads ``cerspense/zeroscope_v2_576w``, ``damo-vilab/text-to-video-ms-1.7b`` or any local folder
in the diffusers layout whose UNet is a ``UNet3DConditionModel``.
"""

from videomage.hookspecs import hookimpl
from videomage_zeroscope.backbone import ZeroScopeBackbone

__all__ = ["ZeroScopeBackbone"]


@hookimpl
def register_backbones():
    return [ZeroScopeBackbone]
