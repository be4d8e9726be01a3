"""`BackboneContract` over every registered backbone that builds a tiny model of itself."""

from __future__ import annotations

import pytest

from videomage.kit import load_backbone
from videomage.testing import BackboneContract
from videomage.testing.fixtures import tiny_backbone_dir, tiny_backbones

#: The bundled families; each ships a ``tiny()`` builder.
BUNDLED = {"wan", "wan22", "zeroscope"}


def test_every_bundled_family_ships_a_tiny_builder():
    assert BUNDLED <= set(tiny_backbones())


@pytest.fixture(scope="module", params=tiny_backbones())
def tiny_model(request, tmp_path_factory):
    return request.param, tiny_backbone_dir(request.param, tmp_path_factory.mktemp(f"tiny-{request.param}"))


class TestEveryTinyBackbone(BackboneContract):
    @pytest.fixture
    def backbone(self, tiny_model):
        name, folder = tiny_model
        loaded = load_backbone(folder, backbone=name)
        assert loaded.name == name
        return loaded
