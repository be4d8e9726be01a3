"""The built-in mask source: foreground by distance from the background colour.

It needs no model weights. It suits the fusion stage's teacher videos, which the teachers
generate from "A <tok>" prompts and so usually show one subject on a plain background. For
cluttered scenes, install a segmentation plugin (a SAM-2-class model) and pass its name as
``--mask-source``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from videomage import InputError, MaskSource, hookimpl
from videomage.kit import from_values, number


class ForegroundMask(MaskSource):
    """Pixels whose colour is far from the frame's border colour are the subject.

    Per frame: the background colour is the median of the one-pixel border; a pixel's distance
    is its Euclidean RGB distance from it; the mask is ``clamp((d - low) / (high - low), 0, 1)``
    with ``low = threshold / 2`` and ``high = threshold``, so edges are soft. A frame where
    nothing stands out gets an empty mask. The ``subject`` word is not used: this source finds
    whatever stands out from the background.
    """

    name = "foreground"

    @attrs.frozen(kw_only=True)
    class Options:
        threshold: float = number(0.2, above=0, help="RGB distance from the background colour (0 to about 1.7) "
                                  "above which a pixel is fully the subject")

    def __init__(self, options: Options | None = None, **values: Any) -> None:
        self.options = from_values(self, options, values)
        self.threshold = self.options.threshold

    def masks(self, video: torch.Tensor, *, subject: str) -> torch.Tensor:
        if video.ndim != 4 or video.shape[1] != 3:
            raise InputError(f"mask source 'foreground': expected a video [F, 3, H, W], got shape {tuple(video.shape)}")
        video = video.float()
        border = torch.cat(
            [video[..., 0, :], video[..., -1, :], video[..., :, 0], video[..., :, -1]], dim=-1
        )  # [F, 3, 2H + 2W]
        background = border.median(dim=-1).values[..., None, None]  # [F, 3, 1, 1]
        distance = (video - background).norm(dim=1)  # [F, H, W]
        low = self.threshold / 2
        return ((distance - low) / (self.threshold - low)).clamp(0, 1)


@hookimpl
def register_mask_sources():
    return [ForegroundMask]
