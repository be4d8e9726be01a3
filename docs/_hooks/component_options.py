"""mkdocs hook: the components reference lists the bundled components' options, from their records.

The page holds a marker; at build time it is replaced by one table per component, made by
``videomage.options.markdown`` from the registry of the bundled plugins, so the docs cannot drift
from the code.
"""

from __future__ import annotations

MARKER = "<!-- component-options -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    from videomage.options import markdown as options_markdown
    from videomage.plugins import create_plugin_manager
    from videomage.registry import Registry

    return markdown.replace(MARKER, options_markdown(Registry.from_plugins(create_plugin_manager())))
