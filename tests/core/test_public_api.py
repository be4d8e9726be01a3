"""The public API is the truth: plugins use only it, the CLI starts without the heavy libraries,
and names that moved still import, with a warning that names their new path."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import videomage
import videomage.components
import videomage.kit
import videomage.testing

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"videomage": videomage, "videomage.kit": videomage.kit, "videomage.testing": videomage.testing}


def videomage_imports(path: Path):
    """``(line, module, name)`` of every import of a ``videomage`` module in ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "videomage":
            for alias in node.names:
                yield node.lineno, node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("videomage."):
                    yield node.lineno, alias.name, None


def test_bundled_plugins_import_only_public_names():
    private = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for line, module, name in videomage_imports(path):
            public = PUBLIC.get(module)
            if public is None or name not in public.__all__:
                private.append(f"{path.relative_to(ROOT)}:{line}: from {module} import {name}")
    assert not private, "plugins import names outside the public API:\n" + "\n".join(private)


def test_public_modules_export_what_they_list():
    for module in PUBLIC.values():
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, (module.__name__, missing)


def test_kit_is_documented():
    page = (ROOT / "docs" / "reference" / "kit.md").read_text()
    assert "::: videomage.kit" in page
    undocumented = [n for n in videomage.kit.__all__ if f"`{n}`" not in page and f"kit.{n}\n" not in page]
    assert not undocumented, f"docs/reference/kit.md does not mention {undocumented}"


def test_components_facade_serves_every_interface():
    # videomage.components stays the import path of the 0.1 interfaces; each is the same
    # object as at its new home and at the top level.
    for name in videomage.components.__all__:
        assert getattr(videomage.components, name) is getattr(videomage, name)
    assert videomage.components.Backbone.__module__ == "videomage.backbone"


PROBE = """
import json, sys, time
from videomage.cli import main
seen = {}
for flag in ("--version", "--help"):
    try:
        main([flag])
    except SystemExit:
        pass
    seen[flag] = sorted(m for m in ("diffusers", "transformers", "peft") if m in sys.modules)
print(json.dumps(seen))
"""


def test_help_and_version_import_no_heavy_library():
    # A subprocess: this test process has imported them already.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"--version": [], "--help": []}, seen


def test_plugin_commands_still_listed_and_components_load_on_use():
    from videomage.cli import build_parser
    from videomage.plugins import get_registry

    parser, commands = build_parser()
    assert {"export", "import", "demo"} <= set(commands)
    assert {"zeroscope", "wan", "wan22"} <= set(get_registry().names("backbone"))


#: Names the bundled plugin packages exported at their top level in 0.1, and their new paths.
MOVED = {
    "videomage_interop": {"Export": "commands", "Import": "commands", "ConvertModel": "commands"},
    "videomage_lora": {"LoRA": "adapter"},
    "videomage_objectives": {"Denoise": "denoise", "NegativeCFGMotion": "motion", "FusionDistill": "fusion",
                             "AttentionRegularization": "fusion"},
    "videomage_samplers": {"CFGSampler": "cfg", "SCSSampler": "scs"},
    "videomage_wan": {"WanBackbone": "backbone", "Wan22Backbone": "experts"},
    "videomage_zeroscope": {"ZeroScopeBackbone": "backbone"},
}


@pytest.mark.parametrize("package", sorted(MOVED))
def test_moved_names_still_import_with_a_warning_naming_the_new_path(package):
    module = importlib.import_module(package)
    for name, home in MOVED[package].items():
        new_path = f"{package}.{home}.{name}"
        with pytest.warns(DeprecationWarning, match=new_path.replace(".", r"\.")):
            old = getattr(module, name)
        assert old is getattr(importlib.import_module(f"{package}.{home}"), name)
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


def test_moved_name_warns_at_the_importing_line(tmp_path):
    script = tmp_path / "old_plugin.py"
    script.write_text("from videomage_zeroscope import ZeroScopeBackbone\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(script.read_text(), str(script), "exec"), {})
    # Python's import machinery asks twice (hasattr, then getattr); both point at the plugin's line.
    assert {w.filename for w in caught if w.category is DeprecationWarning} == {str(script)}
