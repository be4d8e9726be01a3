"""Pytest fixtures for plugin tests: tiny models of the registered backbone families.

Enable them in your test suite's top ``conftest.py``::

    pytest_plugins = ["videomage.testing.fixtures"]

``tiny_backbone_with_lora`` is what an [`ObjectiveContract`][videomage.testing.contracts.ObjectiveContract]
case is built on; [`tiny_backbones`][videomage.testing.fixtures.tiny_backbones] lists the
registered backbones that build a tiny model of themselves, for parametrising a
[`BackboneContract`][videomage.testing.contracts.BackboneContract] over all of them. Which
backbone and adapter the fixtures use is data, a [`TinyChoice`][videomage.testing.fixtures.TinyChoice]:
override the ``tiny_choice`` fixture to run them on your own.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

__all__ = ["TinyChoice", "tiny_backbone_dir", "tiny_backbone_with_lora", "tiny_backbones", "tiny_choice",
           "tiny_zeroscope_dir"]


@attrs.frozen(kw_only=True)
class TinyChoice:
    """The registered components the tiny fixtures build on, by name."""

    #: A backbone whose class overrides ``Backbone.tiny``.
    backbone: str = "zeroscope"
    #: The adapter type attached as the trained adapter.
    adapter: str = "lora"
    #: The role it is attached to.
    role: str = "spatial"


def tiny_backbones() -> list[str]:
    """Names of the registered backbones that override ``Backbone.tiny`` (sorted)."""
    from videomage.backbone import Backbone
    from videomage.plugins import get_registry

    return [e.name for e in get_registry().entries("backbone") if e.cls.tiny.__func__ is not Backbone.tiny.__func__]


def tiny_backbone_dir(name: str, folder: str | Path) -> str:
    """Build the tiny model of registered backbone ``name`` in ``folder``; return its model path."""
    from videomage.plugins import get_registry

    return get_registry().get("backbone", name).tiny(str(folder))


@pytest.fixture(scope="session")
def tiny_choice() -> TinyChoice:
    """The backbone and adapter the fixtures below use (the bundled ZeroScope and LoRA)."""
    return TinyChoice()


@pytest.fixture(scope="session")
def tiny_zeroscope_dir(tmp_path_factory, tiny_choice) -> str:
    """The tiny random model of ``tiny_choice.backbone`` (``videomage_zeroscope.tiny``), built once per session."""
    return tiny_backbone_dir(tiny_choice.backbone, tmp_path_factory.mktemp(f"tiny-{tiny_choice.backbone}"))


@pytest.fixture(scope="session")
def _tiny_loaded(tiny_zeroscope_dir, tiny_choice):
    from videomage.loading import load_backbone

    return load_backbone(tiny_zeroscope_dir, backbone=tiny_choice.backbone)


@pytest.fixture
def tiny_backbone_with_lora(_tiny_loaded, tiny_choice):
    """A fresh tiny backbone with one fresh adapter, ``"trained"``, on ``tiny_choice.role``.

    Returned as the [`TrainingContext`][videomage.objective.TrainingContext] an objective sees:
    the adapter is active, ``ctx.trained == ("trained",)`` and ``ctx.generator`` is seeded, so
    an objective case is this context and a batch of the keys the objective documents.
    """
    import copy

    import torch

    from videomage.loading import make_adapter
    from videomage.objective import TrainingContext

    # A copy of one loaded model: as fresh as a load from disk, a fraction of its time.
    backbone = copy.deepcopy(_tiny_loaded)
    adapter = make_adapter(tiny_choice.adapter)
    adapter.attach(backbone, "trained", roles=[tiny_choice.role])
    adapter.activate(backbone, {"trained": 1.0})
    return TrainingContext(backbone=backbone, adapter=adapter, trained=("trained",),
                           generator=torch.Generator().manual_seed(0))
