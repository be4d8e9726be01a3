"""Pytest fixtures for plugin tests: tiny models of the bundled backbone families.

Enable them in your test suite's top ``conftest.py``::

    pytest_plugins = ["videomage.testing.fixtures"]

``tiny_backbone_with_lora`` is what an [`ObjectiveContract`][videomage.testing.contracts.ObjectiveContract]
case is built on; [`tiny_backbones`][videomage.testing.fixtures.tiny_backbones] lists the
registered backbones that build a tiny model of themselves, for parametrising a
[`BackboneContract`][videomage.testing.contracts.BackboneContract] over all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["tiny_backbone_dir", "tiny_backbone_with_lora", "tiny_backbones", "tiny_zeroscope_dir"]


def tiny_backbones() -> list[str]:
    """Names of the registered backbones that override ``Backbone.tiny`` (sorted)."""
    from videomage.backbone import Backbone
    from videomage.plugins import get_registry

    return [e.name for e in get_registry().entries("backbone") if getattr(e.cls, "tiny").__func__ is not Backbone.tiny.__func__]


def tiny_backbone_dir(name: str, folder: str | Path) -> str:
    """Build the tiny model of registered backbone ``name`` in ``folder``; return its model path."""
    from videomage.plugins import get_registry

    return get_registry().get("backbone", name).tiny(str(folder))


@pytest.fixture(scope="session")
def tiny_zeroscope_dir(tmp_path_factory) -> str:
    """A tiny random ZeroScope model (``videomage_zeroscope.tiny``), built once per session."""
    return tiny_backbone_dir("zeroscope", tmp_path_factory.mktemp("tiny-zeroscope"))


@pytest.fixture(scope="session")
def _tiny_zeroscope_loaded(tiny_zeroscope_dir):
    from videomage.loading import load_backbone

    return load_backbone(tiny_zeroscope_dir)


@pytest.fixture
def tiny_backbone_with_lora(_tiny_zeroscope_loaded):
    """A fresh tiny ZeroScope backbone with one fresh LoRA, ``"trained"``, on its spatial role.

    Returned as the [`TrainingContext`][videomage.objective.TrainingContext] an objective sees:
    the adapter is active, ``ctx.trained == ("trained",)`` and ``ctx.generator`` is seeded, so
    an objective case is this context and a batch of the keys the objective documents.
    """
    import copy

    import torch

    from videomage.loading import make_adapter
    from videomage.objective import TrainingContext

    # A copy of one loaded model: as fresh as a load from disk, a fraction of its time.
    backbone = copy.deepcopy(_tiny_zeroscope_loaded)
    adapter = make_adapter("lora")
    adapter.attach(backbone, "trained", roles=["spatial"])
    adapter.activate(backbone, {"trained": 1.0})
    return TrainingContext(backbone=backbone, adapter=adapter, trained=("trained",),
                           generator=torch.Generator().manual_seed(0))
