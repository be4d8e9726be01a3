"""Components that look at pixel videos: mask sources (segmenters) and metrics (scorers)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

__all__ = ["MaskSource", "Metric"]


class MaskSource(ABC):
    """Segments a subject in a video (for the fusion stage's attention regularisation)."""

    name: ClassVar[str]

    @abstractmethod
    def masks(self, video: torch.Tensor, *, subject: str) -> torch.Tensor:
        """``[F, 3, H, W]`` in ``[0, 1]`` -> soft masks ``[F, H, W]`` in ``[0, 1]`` of ``subject``."""


class Metric(ABC):
    """Scores a generated video; weight-free metrics are preferred so results reproduce anywhere."""

    name: ClassVar[str]

    @abstractmethod
    def compute(self, video: torch.Tensor, context: Mapping[str, Any]) -> dict[str, float]:
        """``[F, 3, H, W]`` in ``[0, 1]`` plus context (prompt, references) -> named scores."""
