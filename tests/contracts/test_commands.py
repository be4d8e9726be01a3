"""`CommandContract` over every registered plugin command."""

from __future__ import annotations

import pytest

from videomage import get_registry
from videomage.testing import CommandContract


@pytest.mark.parametrize("name", get_registry().names("command"))
class TestEveryCommand(CommandContract):
    @pytest.fixture
    def component_class(self, name):
        return get_registry().get("command", name)
