"""`BackboneContract` over every registered backbone that builds a tiny model of itself."""

from __future__ import annotations

import copy

import pytest

from videomage.kit import load_backbone
from videomage.testing import BackboneContract
from videomage.testing.fixtures import tiny_backbone_dir, tiny_backbones

#: The bundled families; each ships a ``tiny()`` builder.
BUNDLED = {"wan", "wan22", "zeroscope"}


def test_every_bundled_family_ships_a_tiny_builder():
    assert BUNDLED <= set(tiny_backbones())


@pytest.fixture(scope="module", params=tiny_backbones())
def tiny_loaded(request, tmp_path_factory):
    name = request.param
    loaded = load_backbone(tiny_backbone_dir(name, tmp_path_factory.mktemp(f"tiny-{name}")), backbone=name)
    assert loaded.name == name
    return loaded


class TestEveryTinyBackbone(BackboneContract):
    @pytest.fixture
    def backbone(self, tiny_loaded):
        return copy.deepcopy(tiny_loaded)  # each check gets its own, as if loaded afresh
