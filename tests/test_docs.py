"""The MkDocs site builds with --strict (broken links and missing API objects fail it).

And what it builds renders: no reST roles or directives left as raw text (mkdocstrings reads
Markdown docstrings, so ``:class:`X``` would show as typed), no TeX outside the arithmatex elements
that MathJax typesets, MathJax loaded wherever there is a formula, and nothing but the site in it
(the build hook once got published as a .py file).
"""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Where a <code> element starts, _VisibleText puts this mark (not a backquote: two code elements
# side by side would read as a stray ``).
_CODE = "\x00"
# Sphinx roles as they come out of Markdown: the backquoted target becomes a <code> element.
_RAW_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const|math|ref|py:\w+):[`\x00]")
_RAW_DIRECTIVE = re.compile(r"^\s*\.\. [a-z-]+::", re.MULTILINE)
# TeX delimiters that arithmatex did not take: MathJax only typesets class="arithmatex" elements.
_RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")
# A ``code`` span that Markdown did not close, e.g. one split over two items of a Returns section.
_RAW_CODE = re.compile(r"``")


class _VisibleText(HTMLParser):
    """The prose of a page: its text outside code, scripts and the arithmatex formula elements."""

    _SKIPPED = frozenset({"code", "pre", "script", "style", "kbd", "samp"})
    _VOID = frozenset({"br", "hr", "img", "input", "link", "meta", "source", "wbr", "col"})
    # Each starts a new line of text, so that _RAW_DIRECTIVE can ask for one at a line's start.
    _BLOCKS = frozenset({"p", "div", "li", "td", "th", "dt", "dd", "br", "h1", "h2", "h3", "h4"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stack: list[bool] = []  # per open element: does it hide its text?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCKS:
            self.parts.append("\n")
        if tag in self._VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        hidden = tag in self._SKIPPED or "arithmatex" in classes
        if tag == "code" and not any(self._stack):
            self.parts.append(_CODE)
        self._stack.append(hidden)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self._VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if not any(self._stack):
            self.parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def rendering_problems(site: Path) -> list[str]:
    """Return what would show wrongly in a browser, one line per page and problem."""
    problems = [f"{p.relative_to(site)}: a Python file in the site" for p in site.rglob("*.py")]
    for page in sorted(site.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        parser = _VisibleText()
        parser.feed(html)
        text = parser.text
        name = page.relative_to(site)
        for pattern, what in (
            (_RAW_ROLE, "a raw reST role"),
            (_RAW_DIRECTIVE, "a raw reST directive"),
            (_RAW_TEX, "raw TeX outside an arithmatex element"),
            (_RAW_CODE, "a stray ``"),
        ):
            found = pattern.findall(text)
            if found:
                problems.append(f"{name}: {len(found)} x {what}, e.g. {found[0]!r}")
        if 'class="arithmatex"' in html and "mathjax" not in html.lower():
            problems.append(f"{name}: formulas but no MathJax")
    return problems


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[test]')")
    site_dir = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site_dir


def test_mkdocs_build_strict(site: Path) -> None:
    cli_page = (site / "cli" / "index.html").read_text()
    # The CLI reference is generated from the parsers: the help text of each command is in the page.
    assert "--locations" in cli_page
    assert "--max-locations" in cli_page


def test_site_renders(site: Path) -> None:
    problems = rendering_problems(site)
    assert not problems, "\n".join(problems)


def test_rendering_check_catches_raw_markup(tmp_path: Path) -> None:
    # The check itself: each kind of problem is found, and formulas and code are not.
    (tmp_path / "hook.py").write_text("")
    (tmp_path / "bad.html").write_text(
        "<p>see :class:<code>Foo</code></p><p>.. math::</p><p>\\(x\\)</p><p>``open</p>"
        '<p><span class="arithmatex">\\(y\\)</span></p>'
    )
    (tmp_path / "good.html").write_text(
        '<script src="mathjax.js"></script><p><span class="arithmatex">\\(y\\)</span>'
        "<code>re.compile(r'\\(')</code><code>``</code> :class: alone</p>"
    )
    problems = rendering_problems(tmp_path)
    # bad.html: a role, a directive, raw TeX, a stray `` and a formula without MathJax.
    assert [p.split(":")[0] for p in problems] == ["hook.py", *["bad.html"] * 5]
