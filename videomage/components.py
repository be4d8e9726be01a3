"""The component interfaces plugins implement, one kind per module, gathered here.

Each kind of component is an abstract base class with a ``name`` class attribute. Plugins
return the *classes* from ``register_<kind>s`` hooks (see [`videomage.hookspecs`][videomage.hookspecs]); the
registry validates them and instantiates them when a workflow asks for one by name.

The interfaces live in their own modules (``videomage.backbone`` is the backbone
contract; ``videomage.adapter``, ``videomage.objective``,
``videomage.sampler``, ``videomage.vision`` and
``videomage.command`` the others). This module re-exports all of them, so
``from videomage.components import Backbone`` keeps working; plugins import them from
``videomage`` itself.

Conventions shared by every component:

* Pixel videos are float tensors ``[B, F, 3, H, W]`` with values in ``[0, 1]``; a single
  video without the batch axis is ``[F, 3, H, W]``. Images are one-frame videos.
* Latents are whatever the backbone's VAE produces, ``[B, C, F, h, w]`` for every bundled
  backbone; only the backbone interprets them.
* Roles name groups of layers by function (``"spatial"``, ``"temporal"``): the method talks
  about roles, never about a model family's module names.
"""

from __future__ import annotations

from collections.abc import Iterator

from videomage.adapter import Adapter, LoadReport
from videomage.attention import AttentionStore
from videomage.backbone import Backbone, VideoSpec
from videomage.command import Command
from videomage.objective import Objective, ObjectiveOutput, TrainingContext
from videomage.sampler import Sampler
from videomage.vision import MaskSource, Metric

__all__ = [
    "Adapter",
    "AttentionStore",
    "Backbone",
    "Command",
    "LoadReport",
    "MaskSource",
    "Metric",
    "Objective",
    "ObjectiveOutput",
    "Sampler",
    "TrainingContext",
    "VideoSpec",
]


def iter_component_bases() -> Iterator[tuple[str, type]]:
    """Each component kind with its base class, in documentation order."""
    yield "backbone", Backbone
    yield "adapter", Adapter
    yield "objective", Objective
    yield "sampler", Sampler
    yield "mask_source", MaskSource
    yield "metric", Metric
    yield "command", Command
