"""The registry: every component the loaded plugins provide, validated, by kind and name."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from videomage.components import iter_component_bases
from videomage.errors import PluginError, RegistryError, did_you_mean, format_choices
from videomage.options import build, construct, declared, options_class

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: Component kind -> the registration hook that provides it.
HOOKS: dict[str, str] = {kind: f"register_{kind}s" for kind, _ in iter_component_bases()}
BASES: dict[str, type] = dict(iter_component_bases())
#: Kinds whose options, when a class declares no ``Options`` record, are its constructor's
#: keyword arguments. Backbones are made by ``from_pretrained`` and commands by argparse: they
#: have options only where they declare a record.
DERIVED_OPTIONS = ("adapter", "objective", "sampler", "mask_source", "metric")


@attrs.frozen(kw_only=True)
class Entry:
    """One registered component: its class and the plugin that registered it."""

    kind: str
    name: str
    cls: type
    plugin: str


class _NoOptions:
    """A component that takes no options."""

    Options = attrs.make_class("Options", {}, frozen=True, kw_only=True)


_NO_OPTIONS = _NoOptions.Options


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
        if kind in DERIVED_OPTIONS:
            try:
                options_class(cls)
            except PluginError as exc:
                raise PluginError(f"plugin {plugin!r}: {exc}") from None
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
            from videomage.plugins import unloaded_provider

            provider = unloaded_provider(kind, name)
            if provider is not None:
                raise RegistryError(
                    f"{kind} {name!r} is provided by plugin {provider!r}, which is not loaded: VIDEOMAGE_LOAD_PLUGINS "
                    f"leaves it out. Add {provider!r} to VIDEOMAGE_LOAD_PLUGINS, or unset it to load every plugin."
                )
            raise RegistryError(
                f"unknown {kind} {name!r}.{did_you_mean(name, entries)} Valid {kind}s: "
                f"{format_choices(entries)}. Install the plugin that provides it, or check "
                f"`videomage plugins`."
            )
        return entries[name].cls

    def options_class(self, kind: str, name: str) -> type:
        """The options record of component ``name`` (declared ``Options``, or derived from its constructor)."""
        cls = self.get(kind, name)
        return options_class(cls) if kind in DERIVED_OPTIONS or declared(cls) else _NO_OPTIONS

    def build_options(self, kind: str, name: str, data: Mapping[str, Any] | None = None) -> Any:
        """Component ``name``'s options record from plain data (a recipe table, ``-o KEY=VALUE``).

        An unknown key gets a did-you-mean and the valid options; a wrong value names the field,
        the expectation and the value.
        """
        cls = self.get(kind, name)
        where = f"{kind.replace('_', ' ')} {name!r}"
        if kind not in DERIVED_OPTIONS and not declared(cls):
            return build(_NoOptions, data, where=where)
        return build(cls, data, where=where)

    def create(self, kind: str, name: str, options: Any = None, /, **values: Any) -> Any:
        """Instantiate component ``name`` with an options record, or with options as keywords."""
        cls = self.get(kind, name)
        if kind not in DERIVED_OPTIONS and not declared(cls):
            return cls(**values)
        record = options if options is not None else self.build_options(kind, name, values)
        return construct(cls, record)

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
