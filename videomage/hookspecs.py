"""The hook specifications: every promise videomage makes to plugins, on one screen.

Every hook here is a *registration* hook: it takes no arguments and returns a list of
component classes, each carrying a unique snake_case ``name``. All implementations are
called (pluggy's default); the registry merges their results and refuses duplicates.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("videomage")
hookimpl = pluggy.HookimplMarker("videomage")


@hookspec
def register_backbones() -> list[type]:
    """Register text-to-video backbone families.

    Semantics: every implementation is called; results are merged. Names are unique across
    all plugins.

    Args: none (registration hooks take no arguments).

    Returns:
        A list of [`Backbone`][videomage.components.Backbone] subclasses.

    When: once, the first time the registry is built after the plugins are loaded.

    Added in: 0.1.0
    """


@hookspec
def register_adapters() -> list[type]:
    """Register adapter types (LoRA and other parameter-efficient adapters).

    Semantics: every implementation is called; results are merged. Names are unique across
    all plugins.

    Args: none (registration hooks take no arguments).

    Returns:
        A list of [`Adapter`][videomage.components.Adapter] subclasses.

    When: once, the first time the registry is built after the plugins are loaded.

    Added in: 0.1.0
    """


@hookspec
def register_objectives() -> list[type]:
    """Register objectives: training losses and sampling-time guidance objectives.

    Semantics: every implementation is called; results are merged. Names are unique across
    all plugins. Stages look objectives up by name, so a plugin can add a loss and use it
    from a recipe without touching the core.

    Args: none (registration hooks take no arguments).

    Returns:
        A list of [`Objective`][videomage.components.Objective] subclasses.

    When: once, the first time the registry is built after the plugins are loaded.

    Added in: 0.1.0
    """


@hookspec
def register_samplers() -> list[type]:
    """Register samplers: the denoising loops that turn prompts into videos.

    Semantics: every implementation is called; results are merged. Names are unique across
    all plugins.

    Args: none (registration hooks take no arguments).

    Returns:
        A list of [`Sampler`][videomage.components.Sampler] subclasses.

    When: once, the first time the registry is built after the plugins are loaded.

    Added in: 0.1.0
    """


@hookspec
def register_mask_sources() -> list[type]:
    """Register mask sources: segmenters used by the fusion stage's attention regularisation.

    Semantics: every implementation is called; results are merged. Names are unique across
    all plugins.

    Args: none (registration hooks take no arguments).

    Returns:
        A list of [`MaskSource`][videomage.components.MaskSource] subclasses.

    When: once, the first time the registry is built after the plugins are loaded.

    Added in: 0.1.0
    """


@hookspec
def register_metrics() -> list[type]:
    """Register metrics that score generated videos.

    Semantics: every implementation is called; results are merged. Names are unique across
    all plugins.

    Args: none (registration hooks take no arguments).

    Returns:
        A list of [`Metric`][videomage.components.Metric] subclasses.

    When: once, the first time the registry is built after the plugins are loaded.

    Added in: 0.1.0
    """


@hookspec
def register_commands() -> list[type]:
    """Register sub-commands of the ``videomage`` command line.

    Semantics: every implementation is called; results are merged. Names are unique across
    all plugins, and may not shadow the core's own commands.

    Args: none (registration hooks take no arguments).

    Returns:
        A list of [`Command`][videomage.components.Command] subclasses.

    When: each time the CLI starts, before arguments are parsed.

    Added in: 0.1.0
    """
