"""The error hierarchy. Every error a user can trigger subclasses [`VideomageError`][videomage.errors.VideomageError].

Messages follow one rule: name the thing, say what was expected and what was received,
list the valid choices where there are any, and say how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VideomageError(Exception):
    """Root of every error videomage raises on purpose."""


class PluginError(VideomageError):
    """A plugin could not be loaded or broke the plugin contract."""


class RegistryError(VideomageError):
    """A component name is unknown, duplicated or malformed."""


class ConfigError(VideomageError):
    """A config value or recipe file is invalid."""


class ArtifactError(VideomageError):
    """An artifact is unreadable or was made for another backbone, model or format."""


class InputError(VideomageError):
    """A user input (image, video, folder) is missing, unreadable or the wrong size."""


class TrainingError(VideomageError):
    """Training cannot continue (a NaN loss, a checkpoint that does not match)."""


class SamplingError(VideomageError):
    """Sampling produced no usable video (NaN or infinite values)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def format_choices(choices: Iterable[str]) -> str:
    items = sorted(choices)
    return ", ".join(repr(c) for c in items) if items else "(none are registered)"
