"""Every hook is documented with the house template, in the docs, and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from videomage import hookspecs
from videomage.registry import HOOKS

ROOT = Path(__file__).resolve().parents[2]
HOOK_NAMES = sorted(n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and n.startswith("register_"))
SECTIONS = ("Semantics:", "Args:", "Returns:", "When:", "Added in:")


def test_every_component_kind_has_a_hook():
    assert sorted(HOOKS.values()) == HOOK_NAMES


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_docstring_follows_the_template(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert doc.splitlines()[0].strip(), f"{hook} has no summary line"
    for section in SECTIONS:
        assert section in doc, f"{hook}'s docstring lacks {section!r}"


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_is_in_the_reference_page(hook):
    page = (ROOT / "docs" / "reference" / "hooks.md").read_text()
    assert "::: videomage.hookspecs" in page, "the hook reference must render the spec docstrings"
    assert f"`{hook}`" in page, f"{hook} is not mentioned in docs/reference/hooks.md"


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_is_exercised_by_some_test(hook):
    tests = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != "test_hook_docs.py"]
    assert any(hook in p.read_text() for p in tests), f"no test implements or calls {hook}"
