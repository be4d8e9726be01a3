"""The adapter interface: parameter-efficient adapters (LoRA, ...) attached by name to a backbone's roles."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import ClassVar

import attrs
import torch

from videomage.backbone import Backbone

__all__ = ["Adapter", "LoadReport"]


@attrs.frozen(kw_only=True)
class LoadReport:
    """What an adapter load did: keys the model expected but did not get, and keys it ignored."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()


class Adapter(ABC):
    """A kind of parameter-efficient adapter (LoRA, ...), attached by name to a backbone's roles.

    Several named adapters live in one model at once; switching is cheap and copies no weights.
    """

    name: ClassVar[str]

    @abstractmethod
    def attach(
        self,
        backbone: Backbone,
        adapter_name: str,
        *,
        roles: Sequence[str],
        rank: int = 4,
        alpha: float | None = None,
        dropout: float = 0.0,
        targets: Sequence[str] | None = None,
    ) -> None:
        """Attach a fresh adapter ``adapter_name`` to the layers of ``roles``.

        ``targets`` optionally narrows the layers to those whose names match one of the regexes.
        A freshly attached adapter leaves the model's outputs unchanged.
        """

    @abstractmethod
    def adapter_names(self, backbone: Backbone) -> list[str]:
        """The adapters attached to ``backbone``."""

    @abstractmethod
    def activate(self, backbone: Backbone, weights: Mapping[str, float]) -> None:
        """Switch on exactly the adapters in ``weights`` with those scales; ``{}`` switches all off."""

    @abstractmethod
    def disabled(self, backbone: Backbone) -> AbstractContextManager[None]:
        """Inside the block every adapter is off; on exit the previous state returns."""

    @abstractmethod
    def parameters(self, backbone: Backbone, adapter_name: str) -> list[torch.nn.Parameter]:
        """The trainable parameters of one adapter."""

    @abstractmethod
    def state_dict(self, backbone: Backbone, adapter_name: str) -> dict[str, torch.Tensor]:
        """One adapter's tensors, named as peft names them, without the adapter name."""

    @abstractmethod
    def load_state_dict(
        self, backbone: Backbone, adapter_name: str, tensors: Mapping[str, torch.Tensor]
    ) -> LoadReport:
        """Load tensors into an attached adapter; raise ArtifactError on any key mismatch."""

    @abstractmethod
    def merge(self, backbone: Backbone, weights: Mapping[str, float]) -> None:
        """Fold the weighted adapters into the base weights for fast inference."""

    @abstractmethod
    def unmerge(self, backbone: Backbone) -> None:
        """Undo [`merge`][videomage.adapter.Adapter.merge]."""

    @abstractmethod
    def remove(self, backbone: Backbone, adapter_name: str) -> None:
        """Delete an adapter from the model."""

    def attach_average(self, backbone: Backbone, adapter_name: str, sources: Sequence[str]) -> None:
        """Attach ``adapter_name`` whose weight change is the average of the ``sources``' changes.

        The fusion stage starts its student here. Adapter types that cannot express the average
        exactly keep this default, which refuses with an explanation.
        """
        from videomage.errors import ConfigError

        raise ConfigError(
            f"adapter type {self.name!r} cannot initialise a fused adapter from its teachers; "
            f"implement Adapter.attach_average for it"
        )
