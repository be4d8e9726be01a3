"""Component options: one frozen, keyword-only attrs record per component, built from plain data.

A component declares its options as a nested attrs class named ``Options``::

    class HuberDenoise(videomage.Objective):
        name = "huber_denoise"

        @attrs.frozen(kw_only=True)
        class Options:
            delta: float = number(0.1, above=0, help="where the penalty turns linear")

        def __init__(self, options=None, **values):
            self.options = options if options is not None else build(type(self), values)

and the registry builds it from a recipe's table or the command line's ``-o KEY=VALUE``: an
unknown key is refused with a did-you-mean and the list of valid options, a wrong value names
the field, what it expected and what it got. A component written against videomage 0.1 (its
options keyword arguments of the constructor, each with a default) keeps working: its record is
derived from the constructor's signature, with a type check taken from each default.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from videomage.errors import ConfigError, PluginError, did_you_mean, format_choices

__all__ = [
    "NEUTRAL",
    "build",
    "build_describe",
    "choice",
    "construct",
    "describe",
    "flag",
    "from_values",
    "integer",
    "keyed",
    "markdown",
    "number",
    "options_class",
    "parse_assignments",
    "text",
]

#: Field metadata key: an option that changes how a result is computed, never the result
#: (a memory/speed trade-off). Caches and resumable stages leave such options out of their keys.
NEUTRAL = "videomage.neutral"
#: Field metadata key: a one-line description, shown by ``videomage plugins --options``.
HELP = "videomage.help"

_derived: dict[type, type] = {}


# -- field helpers for Options records -------------------------------------------------------------
def _where(inst: Any, attr: attrs.Attribute) -> str:
    return f"{type(inst).__qualname__}.{attr.name}"


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _to_float(value: Any) -> Any:
    # An integer where a float is expected (TOML's `tau = 10`, `-o alpha=5`) is that float.
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def number(default: float | None, *, low: float | None = None, above: float | None = None, neutral: bool = False,
           help: str = "") -> Any:
    """A finite float option, optionally ``>= low`` or ``> above``; ``None`` allowed when it is the default."""
    bound = f" >= {low:g}" if low is not None else f" > {above:g}" if above is not None else ""

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is None and default is None:
            return
        if not _is_number(value) or (low is not None and value < low) or (above is not None and value <= above):
            raise ConfigError(f"{_where(inst, attr)}: expected a finite number{bound}, got {value!r}")

    return attrs.field(default=default, converter=_to_float, validator=check, metadata={NEUTRAL: neutral, HELP: help})


def integer(default: int | None, *, low: int | None = None, neutral: bool = False, help: str = "") -> Any:
    """A whole-number option, optionally ``>= low``."""

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is None and default is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
            bound = f" >= {low}" if low is not None else ""
            raise ConfigError(f"{_where(inst, attr)}: expected a whole number{bound}, got {value!r}")

    return attrs.field(default=default, validator=check, metadata={NEUTRAL: neutral, HELP: help})


def flag(default: bool, *, neutral: bool = False, help: str = "") -> Any:
    """A true/false option."""

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigError(f"{_where(inst, attr)}: expected true or false, got {value!r}")

    return attrs.field(default=default, validator=check, metadata={NEUTRAL: neutral, HELP: help})


def choice(default: str, choices: Sequence[str], *, help: str = "") -> Any:
    """One of a few words."""

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"{_where(inst, attr)}: expected one of {format_choices(choices)}, got {value!r}"
                              f"{did_you_mean(str(value), choices)}")

    return attrs.field(default=default, validator=check, metadata={NEUTRAL: False, HELP: help})


def text(default: str | None, *, help: str = "") -> Any:
    """A string option (``None`` allowed when it is the default)."""

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if not (isinstance(value, str) or (value is None and default is None)):
            raise ConfigError(f"{_where(inst, attr)}: expected a string, got {value!r}")

    return attrs.field(default=default, validator=check, metadata={NEUTRAL: False, HELP: help})


# -- the record of a component ---------------------------------------------------------------------
def declared(cls: type) -> type | None:
    """The ``Options`` record ``cls`` declares (or inherits), or ``None``."""
    record = getattr(cls, "Options", None)
    return record if inspect.isclass(record) and attrs.has(record) else None


def options_class(cls: type) -> type:
    """The options record of component class ``cls``: declared, or derived from its constructor."""
    record = declared(cls)
    if record is not None:
        return record
    if cls not in _derived:
        _derived[cls] = _derive(cls)
    return _derived[cls]


def _derived_field(cls: type, param: inspect.Parameter) -> Any:
    default = param.default
    if default is inspect.Parameter.empty:
        raise PluginError(
            f"{cls.__module__}.{cls.__qualname__}: constructor argument {param.name!r} has no default; every option "
            f"needs one (so that the component can be made with its defaults), or declare an Options record"
        )
    if isinstance(default, bool):
        return flag(default)
    if isinstance(default, int):
        return integer(default)
    if isinstance(default, float):
        return number(default)
    if isinstance(default, str):
        return text(default)
    return attrs.field(default=default, metadata={NEUTRAL: False, HELP: ""})


def _derive(cls: type) -> type:
    """A record with one field per keyword argument of ``cls.__init__`` (videomage 0.1's way)."""
    init = cls.__init__
    fields: dict[str, Any] = {}
    if init is not object.__init__:
        for param in list(inspect.signature(init).parameters.values())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.kind is param.POSITIONAL_ONLY:
                raise PluginError(f"{cls.__module__}.{cls.__qualname__}: constructor argument {param.name!r} is "
                                  f"positional-only; options are passed by keyword")
            fields[param.name] = _derived_field(cls, param)
    record = attrs.make_class("Options", fields, frozen=True, kw_only=True)
    record.__qualname__ = f"{cls.__qualname__}.Options"
    record.__module__ = cls.__module__
    return record


def build(cls: type, data: Mapping[str, Any] | None = None, *, where: str | None = None) -> Any:
    """``cls``'s options record from plain data, refusing unknown keys and wrong values by name."""
    record = options_class(cls)
    data = dict(data or {})
    where = where or f"{getattr(cls, 'name', cls.__name__)!r}"
    valid = [f.name for f in attrs.fields(record)]
    for key in data:
        if key not in valid:
            listed = format_choices(valid) if valid else "(it takes none)"
            raise ConfigError(f"{where}: unknown option {key!r}.{did_you_mean(key, valid)} Valid options: {listed}.")
    try:
        return record(**data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:  # a record's own attrs validators (attrs.validators.instance_of...)
        raise ConfigError(f"{where}: {exc}") from None


def construct(cls: type, record: Any) -> Any:
    """An instance of ``cls`` with options ``record``.

    A class that declares ``Options`` receives the record as ``options=``; a 0.1-style class
    receives the fields as keyword arguments.
    """
    if declared(cls) is not None:
        return cls(options=record)
    return cls(**{f.name: getattr(record, f.name) for f in attrs.fields(type(record))})


def from_values(instance: Any, options: Any, values: Mapping[str, Any]) -> Any:
    """For a component's ``__init__(self, options=None, **values)``: the record it was given, or one
    built from keyword values (so ``Denoise(lambda_reg=0.1)`` keeps working)."""
    if options is not None and values:
        raise ConfigError(f"{type(instance).__qualname__}: pass either an options record or keyword options, not both")
    return options if options is not None else build(type(instance), values)


def describe(cls: type) -> list[dict[str, Any]]:
    """Each option of component ``cls``: name, default, help and whether it is neutral (for listings and docs)."""
    return build_describe(options_class(cls))


def build_describe(record: type) -> list[dict[str, Any]]:
    """Each field of options record ``record``: name, default, help and whether it is neutral."""
    out = []
    for f in attrs.fields(record):
        default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default  # type: ignore[attr-defined]
        out.append({"name": f.name, "default": None if default is attrs.NOTHING else default,
                    "help": f.metadata.get(HELP, ""), "neutral": bool(f.metadata.get(NEUTRAL, False))})
    return out


def keyed(record: Any) -> dict[str, Any]:
    """The options that decide a result: every field except the neutral ones."""
    return {f.name: getattr(record, f.name) for f in attrs.fields(type(record)) if not f.metadata.get(NEUTRAL, False)}


def as_dict(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in attrs.fields(type(record))}


def parse_assignments(items: Sequence[str] | None, *, flag_name: str = "-o") -> dict[str, Any]:
    """``["tau=10", "guidance_norm=none"]`` -> ``{"tau": 10, "guidance_norm": "none"}``.

    A value is read as a TOML value where it is one (``10``, ``5e3``, ``true``, ``"text"``, ``[1, 2]``),
    else taken as the string it is.
    """
    from videomage.config import tomllib

    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"{flag_name} {item!r}: expected KEY=VALUE, such as {flag_name} tau=10")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key] = value
    return out


def markdown(registry: Any, kinds: Sequence[str] = ("adapter", "objective", "sampler", "mask_source", "metric")) -> str:
    """Markdown tables of every registered component's options (the docs render the bundled ones')."""
    lines = []
    for kind in kinds:
        for entry in registry.entries(kind):
            options = build_describe(registry.options_class(kind, entry.name))
            lines += [f"#### {kind.replace('_', ' ')} `{entry.name}`", ""]
            if not options:
                lines += ["No options.", ""]
                continue
            lines += ["| option | default | what it does |", "|---|---|---|"]
            for o in options:
                note = o["help"] + (" (does not change the result)" if o["neutral"] else "")
                lines.append(f"| `{o['name']}` | `{o['default']!r}` | {note.replace('|', '/')} |")
            lines.append("")
    return "\n".join(lines)
