"""The registry: every component the loaded plugins provide, validated, by kind and name."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

import attrs

from videomage.components import iter_component_bases
from videomage.errors import PluginError, RegistryError, did_you_mean, format_choices

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: Component kind -> the registration hook that provides it.
HOOKS: dict[str, str] = {kind: f"register_{kind}s" for kind, _ in iter_component_bases()}
BASES: dict[str, type] = dict(iter_component_bases())


@attrs.frozen(kw_only=True)
class Entry:
    """One registered component: its class and the plugin that registered it."""

    kind: str
    name: str
    cls: type
    plugin: str


class Registry:
    """Components by kind and name. Built from a plugin manager by [`from_plugins`][videomage.registry.Registry.from_plugins]."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in HOOKS}

    @classmethod
    def from_plugins(cls, pm: Any, kinds: Iterable[str] | None = None) -> Registry:
        """Call every registration hook of ``pm`` (or those of ``kinds``) and validate what each plugin returns."""
        registry = cls()
        for kind, hook_name in HOOKS.items():
            if kinds is not None and kind not in kinds:
                continue
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin = pm.get_name(impl.plugin) or repr(impl.plugin)
                result = impl.function()
                if result is None:
                    continue
                if not isinstance(result, (list, tuple)):
                    raise PluginError(
                        f"plugin {plugin!r}: {hook_name}() returned {type(result).__name__}, "
                        f"expected a list of classes. Return e.g. [MyComponent]."
                    )
                for item in result:
                    registry.add(kind, item, plugin=plugin)
        return registry

    def add(self, kind: str, cls: Any, *, plugin: str = "<direct>") -> None:
        """Validate and register one component class."""
        if kind not in self._entries:
            raise RegistryError(f"unknown component kind {kind!r}; valid kinds: {format_choices(self._entries)}")
        base = BASES[kind]
        hook = HOOKS[kind]
        if not (inspect.isclass(cls) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {plugin!r}: {hook}() returned {cls!r}, which is not a subclass of "
                f"videomage.{base.__name__}. Return the class itself, derived from {base.__name__}."
            )
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise PluginError(
                f"plugin {plugin!r}: {kind} {cls.__qualname__} does not implement {missing}. "
                f"Implement every abstract method of {base.__name__}."
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(
                f"plugin {plugin!r}: {kind} {cls.__qualname__} has name {name!r}; expected a "
                f"snake_case string such as 'my_{kind}' (lower-case letters, digits, underscores)."
            )
        existing = self._entries[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise PluginError(
                f"duplicate {kind} name {name!r}: {existing.cls.__module__}.{existing.cls.__qualname__} "
                f"(plugin {existing.plugin!r}) and {cls.__module__}.{cls.__qualname__} (plugin {plugin!r}). "
                f"Rename one of them, or disable one plugin with VIDEOMAGE_LOAD_PLUGINS."
            )
        self._entries[kind][name] = Entry(kind=kind, name=name, cls=cls, plugin=plugin)

    def kinds(self) -> list[str]:
        return list(self._entries)

    def names(self, kind: str) -> list[str]:
        return sorted(self._check_kind(kind))

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> type:
        """The class registered as ``name``; an unknown name lists the valid choices."""
        entries = self._check_kind(kind)
        if name not in entries:
            raise RegistryError(
                f"unknown {kind} {name!r}.{did_you_mean(name, entries)} Valid {kind}s: "
                f"{format_choices(entries)}. Install the plugin that provides it, or check "
                f"`videomage plugins`."
            )
        return entries[name].cls

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Instantiate the component ``name`` with ``options``."""
        cls = self.get(kind, name)
        try:
            return cls(**options)
        except TypeError as exc:
            raise RegistryError(f"{kind} {name!r} does not accept options {sorted(options)}: {exc}") from exc

    def _check_kind(self, kind: str) -> dict[str, Entry]:
        if kind not in self._entries:
            raise RegistryError(
                f"unknown component kind {kind!r}.{did_you_mean(kind, self._entries)} "
                f"Valid kinds: {format_choices(self._entries)}."
            )
        return self._entries[kind]

    def __iter__(self) -> Iterable[Entry]:
        for kind in self._entries:
            yield from self.entries(kind)
