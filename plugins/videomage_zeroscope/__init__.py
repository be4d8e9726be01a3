"""The ZeroScope / ModelScope backbone plugin (diffusers ``UNet3DConditionModel``).

Loads ``cerspense/zeroscope_v2_576w``, ``damo-vilab/text-to-video-ms-1.7b`` or any local folder
in the diffusers layout whose UNet is a ``UNet3DConditionModel``.
"""

from __future__ import annotations

from videomage import hookimpl
from videomage.kit import moved_names


@hookimpl
def register_backbones():
    # Imported on use, not when the plugin loads: `videomage --help` must not import the
    # heavy libraries these modules need.
    from videomage_zeroscope.backbone import ZeroScopeBackbone

    return [ZeroScopeBackbone]


# Before 0.2 the package imported its components eagerly and exported them here.
__getattr__ = moved_names(__name__, {
    "ZeroScopeBackbone": "videomage_zeroscope.backbone.ZeroScopeBackbone",
})
