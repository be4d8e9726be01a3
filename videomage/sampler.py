"""The sampler interface: the denoising loop that turns a request into latents."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from videomage.adapter import Adapter
from videomage.backbone import Backbone

__all__ = ["Sampler"]


class Sampler(ABC):
    """Turns prompts into latents with a backbone and its adapters: owns the denoising loop."""

    name: ClassVar[str]

    @abstractmethod
    def sample(self, backbone: Backbone, adapter: Adapter | None, request: Any) -> torch.Tensor:
        """Run the denoising loop for ``request`` (a [`SamplingRequest`][videomage.sampling.SamplingRequest]:
        the shared settings and the concepts) and return the final latents ``[B, C, F, h, w]``.

        The sampler's own settings are its ``Options`` record, not part of the request.
        """

    def prompts(self, request: Any) -> list[str]:
        """Every prompt `sample` will encode for ``request``: a stage encodes them up front so that
        it can release the text encoder before sampling (``--release-text-encoder``).

        The default is the request's prompt and negative prompt; a sampler that encodes others
        (SCS's motion branch) adds them. A prompt left out still samples, only slower once the
        encoder has moved to host memory.
        """
        return [request.prompt, request.negative_prompt]
