"""mkdocs hook: the site serves its own MathJax, so formulas render with no network.

MathJax's built browser files come from the ``django-static-mathjax`` package (a ``dev`` extra;
it ships MathJax 3's release files and installs no Django). At build time they are added to the
site under ``assets/mathjax/``: the TeX-to-HTML bundle, its fonts, the TeX extensions it loads on
demand, and the menu's accessibility modules. Nothing is copied into the repository.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

DEST = "assets/mathjax"
# Folders of MathJax's es5/ build that the bundle fetches relative to its own URL.
PARTS = ("output/chtml/fonts/woff-v2", "input/tex/extensions", "a11y", "sre", "ui")
BUNDLE = "tex-chtml.js"


def mathjax_dir() -> Path:
    spec = find_spec("mathjax")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        es5 = Path(folder) / "static" / "mathjax" / "es5"
        if (es5 / BUNDLE).is_file():
            return es5
    raise PluginError(
        "the docs serve MathJax from the django-static-mathjax package, which is not installed "
        f"(looked for mathjax/static/mathjax/es5/{BUNDLE}); install the dev extra: pip install -e '.[dev]'"
    )


def on_files(files: Files, config) -> Files:
    es5 = mathjax_dir()
    paths = [es5 / BUNDLE] + sorted(p for part in PARTS for p in (es5 / part).rglob("*") if p.is_file())
    for path in paths:
        files.append(File.generated(config, f"{DEST}/{path.relative_to(es5).as_posix()}", abs_src_path=str(path)))
    return files
