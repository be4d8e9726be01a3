"""The docs site as a reader gets it: built with ``mkdocs build --strict`` and read back as HTML.

Each check is one way a page can look fine in Markdown and wrong in a browser: a token such as
``<toy>`` parsed as an HTML tag (it vanishes), a script or stylesheet fetched from the network
(offline the maths shows as raw LaTeX), a Sphinx role that the renderer leaves as text, a link
to a page or anchor that does not exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Every element a page may legitimately contain: HTML, and the SVG of the theme's icons. A tag
# outside this list is text that Markdown took for a tag (`<toy>`, `<person>`).
HTML_TAGS = set(
    "a abbr address area article aside audio b base bdi bdo blockquote body br button canvas caption cite code col "
    "colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset figcaption figure footer form h1 h2 "
    "h3 h4 h5 h6 head header hgroup hr html i iframe img input ins kbd label legend li link main map mark menu meta "
    "meter nav noscript object ol optgroup option output p param picture pre progress q rp rt ruby s samp script "
    "search section select slot small source span strong style sub summary sup table tbody td template textarea tfoot "
    "th thead time title tr track u ul var video wbr".split()
)
SVG_TAGS = {"svg", "path", "g", "circle", "rect", "line", "polyline", "polygon", "ellipse", "defs", "use", "symbol",
            "title", "desc", "lineargradient", "radialgradient", "stop", "clippath", "mask", "text", "tspan"}
MATHML_TAGS = {"math", "mrow", "mi", "mo", "mn", "msup", "msub", "msubsup", "mfrac", "msqrt", "mroot", "mtext",
               "mspace", "mover", "munder", "munderover", "mtable", "mtr", "mtd", "mstyle", "semantics", "annotation"}
KNOWN_TAGS = HTML_TAGS | SVG_TAGS | MATHML_TAGS

# A Sphinx/reST role left as text: ":class:`Foo`" renders as ":class:" followed by code.
RAW_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|obj|data|exc|const|ref|doc|any|term|param|type):")


class Page(HTMLParser):
    """What one built page contains: its tags, ids, links, external resources and prose."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.unknown_tags: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []  # hrefs and srcs to check
        self.remote: list[str] = []  # scripts, stylesheets, fonts fetched from the network
        self.prose: list[str] = []  # text outside code, pre, script and style
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in KNOWN_TAGS:
            self.unknown_tags.append(f"<{tag}>")
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        url = a.get("src") if tag in ("script", "img", "iframe", "source") else a.get("href") if tag in ("a", "link") else None
        if url is not None:
            loads = tag in ("script", "img", "iframe", "source") or (tag == "link" and a.get("rel") != "canonical")
            if loads and (urlsplit(url).scheme in ("http", "https") or url.startswith("//")):
                self.remote.append(f"<{tag}> {url}")
            self.links.append(url)
        if tag in ("code", "pre", "script", "style", "svg"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("code", "pre", "script", "style", "svg") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.prose.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[Path, Page]:
    out = tmp_path_factory.mktemp("site")
    # --strict turns mkdocs' own warnings (a link to a missing page, a docstring it cannot parse)
    # into a failure of the build.
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    pages = {}
    for html in sorted(out.rglob("*.html")):
        page = Page()
        page.feed(html.read_text(encoding="utf-8"))
        page.root = out
        pages[html] = page
    assert len(pages) > 20
    return pages


def name(path: Path, page: Page) -> str:
    return str(path.relative_to(page.root))


def test_no_token_is_swallowed_as_an_html_tag(site):
    swallowed = {name(p, page): sorted(set(page.unknown_tags)) for p, page in site.items() if page.unknown_tags}
    assert not swallowed, f"write tokens as code (`<toy>`) or &lt;toy&gt;; these pages lost them: {swallowed}"


def test_no_script_style_or_font_comes_from_the_network(site):
    remote = {name(p, page): page.remote for p, page in site.items() if page.remote}
    assert not remote, f"serve these from the built site instead: {remote}"
    css = [c for c in next(iter(site.values())).root.rglob("*.css")
           if re.search(r"@import\s+url\(\s*['\"]?(https?:)?//", c.read_text(encoding="utf-8", errors="replace"))]
    assert not css, f"stylesheets import from the network: {css}"


def test_maths_is_typeset_by_a_script_the_site_serves(site):
    maths = [p for p, page in site.items() if 'class="arithmatex"' in p.read_text(encoding="utf-8")]
    assert maths, "no page has maths any more; this test guards the method pages"
    for p in maths:
        scripts = [u for u in site[p].links if u.endswith(".js") and "mathjax" in u.lower()]
        assert scripts, f"{name(p, site[p])} has formulas but loads no MathJax"
        for url in scripts:
            assert (p.parent / urlsplit(url).path).resolve().is_file(), f"{name(p, site[p])}: {url} is not in the site"


def test_no_sphinx_role_is_left_as_text(site):
    raw = {}
    for p, page in site.items():
        hits = [m.group(0) for m in RAW_ROLE.finditer("".join(page.prose))]
        if hits:
            raw[name(p, page)] = hits
    assert not raw, f"write cross-references as [`Name`][videomage.module.Name] (mkdocstrings/autorefs): {raw}"


def test_every_link_resolves(site):
    broken = []
    by_file = {p.resolve(): page for p, page in site.items()}
    for p, page in site.items():
        for url in page.links:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//") or url.startswith("mailto:"):
                continue
            if not parts.path:
                target = p.resolve()
            elif parts.path.startswith("/"):  # the 404 page links from the site's root
                target = (page.root / unquote(parts.path).lstrip("/")).resolve()
            else:
                target = (p.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{name(p, page)}: {url} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = by_file[target].ids if target in by_file else set()
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{name(p, page)}: {url} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_shell_commands_fit_their_code_boxes():
    # A code box of the theme shows about 80 characters at a laptop's width; a longer command
    # scrolls sideways and its end goes unread. Wrap it with backslashes.
    long = []
    for md in sorted((ROOT / "docs").rglob("*.md")):
        fence = None
        for number, line in enumerate(md.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                fence = line[3:].strip() if fence is None else None
            elif fence in ("bash", "sh", "console") and len(line) > 80:
                long.append(f"{md.relative_to(ROOT)}:{number} ({len(line)} characters)")
    assert not long, "wrap these commands with a backslash:\n" + "\n".join(long)
