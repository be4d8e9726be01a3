"""The sampler interface: the denoising loop that turns a request into latents."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from videomage.adapter import Adapter
from videomage.backbone import Backbone

__all__ = ["Sampler"]


class Sampler(ABC):
    """Turns prompts into latents with a backbone and its adapters: owns the denoising loop."""

    name: ClassVar[str]

    @abstractmethod
    def sample(self, backbone: Backbone, adapter: Adapter | None, request: Mapping[str, Any]) -> torch.Tensor:
        """Run the denoising loop and return the final latents ``[B, C, F, h, w]``."""
