"""Deprecated import paths: names that moved keep working for a while, with a warning.

A plugin written against an earlier minor version may import a name from where it used to
live. [`moved_names`][videomage.deprecation.moved_names] builds the module-level ``__getattr__``
(PEP 562) that still serves such a name and warns with a ``DeprecationWarning`` naming its new
path, so the plugin keeps working and its author learns what to change. A deprecated path
stays importable for at least one minor version after the release that moved it.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["REMOVED_IN", "moved_names"]

#: The release that drops the paths deprecated in 0.2 (one minor version of overlap).
REMOVED_IN = "0.3"


def moved_names(module: str, moves: Mapping[str, str], *, removed_in: str = REMOVED_IN) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving the names in ``moves`` (old name -> ``"new.module.Name"``).

    Assign it in the module the names moved out of: ``__getattr__ = moved_names(__name__, {...})``.
    Each access warns and returns the object at the new path; any other missing name raises
    ``AttributeError`` as usual.
    """
    moves = dict(moves)

    def __getattr__(name: str) -> Any:
        target = moves.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, _, attr = target.rpartition(".")
        warnings.warn(
            f"{module}.{name} has moved to {target}; import it from there "
            f"(the old path is removed in videomage {removed_in})",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), attr)

    return __getattr__
