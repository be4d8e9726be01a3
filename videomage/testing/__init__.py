"""Test helpers for videomage plugins, bundled and third-party.

* [`videomage.testing.contracts`][videomage.testing.contracts]: contract test classes per component kind; subclass one
  in your test suite and provide its fixtures to check your component against the interface.
* [`registry_with`][videomage.testing.isolation.registry_with]: a registry built from only the plugins you pass, isolated from
  whatever else is installed.
"""

from videomage.testing.contracts import (
    AdapterContract,
    BackboneContract,
    CommandContract,
    ComponentContract,
    MaskSourceContract,
    MetricContract,
    ObjectiveContract,
    SamplerContract,
)
from videomage.testing.isolation import plugin_manager_with, registry_with

__all__ = [
    "AdapterContract",
    "BackboneContract",
    "CommandContract",
    "ComponentContract",
    "MaskSourceContract",
    "MetricContract",
    "ObjectiveContract",
    "SamplerContract",
    "plugin_manager_with",
    "registry_with",
]
