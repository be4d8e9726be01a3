"""The objective interface: a training loss computed on a batch, and what it sees of the model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import torch

from videomage.adapter import Adapter
from videomage.backbone import Backbone

__all__ = ["Objective", "ObjectiveOutput", "TrainingContext"]


@attrs.define(kw_only=True)
class TrainingContext:
    """What an objective sees: the backbone, the adapter plugin and the adapters being trained."""

    backbone: Backbone
    adapter: Adapter
    trained: tuple[str, ...] = ()
    #: The experts the trained adapters live in (``()``: the backbone has one denoiser, or all);
    #: objectives draw training timesteps from their part of the schedule.
    experts: tuple[str, ...] = ()
    generator: torch.Generator | None = None
    extras: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ObjectiveOutput:
    """A scalar loss to minimise and the named parts worth logging."""

    loss: torch.Tensor
    logs: Mapping[str, float] = attrs.field(factory=dict)


class Objective(ABC):
    """A training loss (or a guidance objective) computed on a batch.

    Options are one frozen attrs record ``Options`` (see [`videomage.options`][videomage.options]),
    or, as in videomage 0.1, keyword arguments of the constructor; every option has a default, so
    ``cls()`` is a valid objective. Each stage documents the batch keys it hands its objective.
    """

    name: ClassVar[str]

    @abstractmethod
    def loss(self, ctx: TrainingContext, batch: Mapping[str, Any]) -> ObjectiveOutput:
        """The loss for one batch. ``batch`` keys are documented by each objective."""
