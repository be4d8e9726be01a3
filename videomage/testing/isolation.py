"""Plugin managers and registries built from chosen plugins only."""

from __future__ import annotations

from typing import Any

import pluggy

from videomage.plugins import create_plugin_manager
from videomage.registry import Registry


def plugin_manager_with(*plugins: Any) -> pluggy.PluginManager:
    """A plugin manager holding exactly ``plugins`` (modules or objects with hook implementations)."""
    return create_plugin_manager(load_entry_points=False, extra=list(plugins))


def registry_with(*plugins: Any) -> Registry:
    """The validated registry of exactly ``plugins``; raises what the real loader would raise."""
    return Registry.from_plugins(plugin_manager_with(*plugins))
