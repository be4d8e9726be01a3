"""The plugin manager: loads bundled and third-party plugins from entry points, on demand.

Nothing is loaded at import time. [`get_registry`][videomage.plugins.get_registry] loads plugins the first time it is
called. Loading a plugin imports its package only: the bundled plugins import their components'
modules (and diffusers, transformers, peft) inside their registration hooks, which run when the
registry is built, so the command line starts without them. The environment variable ``VIDEOMAGE_LOAD_PLUGINS`` selects plugins by entry-point
name: unset loads all, an empty string loads none, ``"zeroscope,lora"`` loads those only.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from typing import Any

import pluggy

from videomage import hookspecs
from videomage.errors import PluginError, did_you_mean, format_choices
from videomage.registry import Registry

ENTRY_POINT_GROUP = "videomage"
ENV_VAR = "VIDEOMAGE_LOAD_PLUGINS"

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _selection() -> set[str] | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def create_plugin_manager(*, load_entry_points: bool = True, extra: list[Any] | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with the hook specs, entry-point plugins and ``extra`` plugins.

    Raises [`PluginError`][videomage.errors.PluginError] when a plugin fails to import or implements an unknown hook.
    """
    pm = pluggy.PluginManager("videomage")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        wanted = _selection()
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        available = {ep.name for ep in eps}
        if wanted is not None and (unknown := wanted - available):
            name = sorted(unknown)[0]
            raise PluginError(
                f"{ENV_VAR} names plugin {name!r}, which is not installed.{did_you_mean(name, available)} "
                f"Installed plugins: {format_choices(available)}."
            )
        for ep in sorted(eps, key=lambda e: e.name):
            if wanted is not None and ep.name not in wanted:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must name itself
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}) failed to import: {exc!r}. Reinstall it, or "
                    f"skip it with {ENV_VAR} listing only the plugins you need."
                ) from exc
            _register(pm, module, ep.name)
    for plugin in extra or []:
        _register(pm, plugin, getattr(plugin, "__name__", None))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {pm.get_name(exc.plugin)!r} implements a hook videomage does not define: {exc}. "
            f"Valid hooks: {format_choices(_hook_names())}. Rename the function or remove it."
        ) from exc
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} is invalid: {exc}. Check its hook signatures against the hook reference.") from exc
    except ValueError as exc:  # pluggy: a name or object registered twice
        raise PluginError(f"plugin {name!r} is registered twice: {exc}. Uninstall one copy.") from exc


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("register_")]


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use."""
    with _lock:
        if "pm" not in _state:
            _state["pm"] = create_plugin_manager()
        return _state["pm"]


def get_registry() -> Registry:
    """The process-wide registry of every loaded plugin's components, built on first use."""
    pm = get_plugin_manager()
    with _lock:
        if "registry" not in _state:
            _state["registry"] = Registry.from_plugins(pm)
        return _state["registry"]


def get_commands() -> Registry:
    """A registry of the plugins' commands only, for building the command line.

    Plugins import their other components when those are registered, so ``videomage --help``,
    which needs the commands alone, imports no backbone's or adapter's libraries.
    """
    pm = get_plugin_manager()
    with _lock:
        if "registry" in _state:
            return _state["registry"]
        if "commands" not in _state:
            _state["commands"] = Registry.from_plugins(pm, kinds=("command",))
        return _state["commands"]


def reset() -> None:
    """Forget the loaded plugins (tests, or after changing ``VIDEOMAGE_LOAD_PLUGINS``)."""
    with _lock:
        _state.clear()


def plugin_versions(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugin name -> version of the distribution that provides it (``"unknown"`` if none)."""
    dists = {ep.name: ep.dist for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    versions = {}
    for name, _ in pm.list_name_plugin():
        dist = dists.get(name)
        versions[name] = dist.version if dist is not None else "unknown"
    return versions


def unloaded_provider(kind: str, name: str) -> str | None:
    """The installed plugin that ``VIDEOMAGE_LOAD_PLUGINS`` leaves out and that provides ``kind`` ``name``.

    Only asked when a component is missing: each plugin left out is imported and its
    registration hook called (nothing is registered), so the error can name the plugin to load.
    """
    wanted = _selection()
    if wanted is None:
        return None
    from videomage.registry import HOOKS

    hook_name = HOOKS.get(kind)
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in wanted:
            continue
        try:
            hook = getattr(ep.load(), hook_name or "", None)
            classes = hook() if callable(hook) else None
        except Exception:  # a broken plugin cannot be the answer; the caller reports the missing name
            continue
        if any(getattr(c, "name", None) == name for c in classes or ()):
            return ep.name
    return None
