"""The core names no bundled component: every choice of one is data (a config default at most).

A bundled plugin is shaped exactly like a third-party one; if the core spelt out ``"scs"`` or
``"denoise"`` in its code paths, a third-party sampler or loss could be registered but never
chosen. The only place a bundled name may appear is as the default value of a config record's
field (``sampler: str = "scs"``), where a user's choice replaces it.
"""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

from videomage.plugins import create_plugin_manager
from videomage.registry import Registry

CORE = Path(__file__).resolve().parents[2] / "videomage"
#: Kinds whose names are method choices (commands are invoked by the user by name, never chosen by the core).
KINDS = ("backbone", "adapter", "objective", "sampler", "mask_source", "metric")


def bundled_names() -> set[str]:
    ours = {ep.name for ep in importlib.metadata.entry_points(group="videomage") if ep.value.startswith("videomage_")}
    registry = Registry.from_plugins(create_plugin_manager())
    return {e.name for kind in KINDS for e in registry.entries(kind) if e.plugin in ours}


def _is_attrs_class(node: ast.ClassDef) -> bool:
    return any("attrs" in ast.unparse(d) or "define" in ast.unparse(d) or "frozen" in ast.unparse(d)
               for d in node.decorator_list)


def config_defaults(tree: ast.AST) -> set[int]:
    """ids of the string constants that are field defaults of attrs records."""
    allowed: set[int] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and _is_attrs_class(n)):
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                if isinstance(stmt.value, ast.Constant):
                    allowed.add(id(stmt.value))
                for call in (n for n in ast.walk(stmt.value) if isinstance(n, ast.Call)):
                    allowed |= {id(k.value) for k in call.keywords if k.arg == "default"}
    return allowed


def docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def core_hits(names: set[str], root: Path = CORE) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        skip = config_defaults(tree) | docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if node.value in names:
                    hits.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.value!r}")
    return hits


def test_no_bundled_component_is_named_in_the_core_outside_config_defaults():
    names = bundled_names()
    assert {"scs", "cfg", "denoise", "negative_cfg_motion", "fusion_distill", "attention_reg", "lora",
            "foreground", "zeroscope", "wan"} <= names  # the check looks for the right words
    hits = core_hits(names)
    assert not hits, "bundled component names in the core's code paths:\n" + "\n".join(hits)


def test_the_check_finds_a_literal_name(tmp_path):
    """The check itself can fail: a stage choosing a sampler by literal name is caught."""
    (tmp_path / "videomage").mkdir()
    (tmp_path / "videomage" / "stage.py").write_text(
        'import attrs\n\n@attrs.frozen\nclass C:\n    sampler: str = "scs"\n\n'
        'def run(registry):\n    """Uses \'cfg\' in prose."""\n    return registry.create("sampler", "cfg")\n')
    assert core_hits({"scs", "cfg"}, tmp_path / "videomage") == ["videomage/stage.py:9: 'cfg'"]
