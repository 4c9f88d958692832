"""The executed notebook's HTML page: hand-made hostile notebooks, no kernel needed.

The page is nbconvert's lab template; what the notebook puts in it is made inert
by `nbci.render.notebook_html` (nh3 for its HTML, an allow-list of output types
and of the image metadata the template writes into tags).
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from fresh_python import run_python

from nbci.render.notebook_html import NO_ALT, _highlighter, render_notebook_html

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
    "AAAABJRU5ErkJggg=="
)
EVIL = "<img src=x onerror=alert('pwned')>"
NBCONVERT_SCRIPTS = "https://cdnjs.cloudflare.com/ajax/libs/"
"""Where the scripts nbconvert's lab template loads itself come from (require.js, MathJax)."""


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text of each script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k.lower(): v or "" for k, v in attrs}))
        self._script = tag == "script"
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if self._script:
            self.scripts[-1] += data


def page_of(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    page.close()
    return page


def output(kind: str = "display_data", **fields: Any) -> dict[str, Any]:
    return {"output_type": kind, "metadata": {}, **fields}


def write(path: Path, cells: list[dict[str, Any]], **metadata: Any) -> Path:
    """A notebook of `cells`, written as raw JSON (unvalidated, as a hostile one would be)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.update(metadata)
    nb.cells = cells
    path.write_text(json.dumps(nb))
    return path


def code(*outputs: dict[str, Any], source: str = "pass") -> Any:
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = list(outputs)
    return cell


def hostile_notebook(path: Path) -> Path:
    raw = nbformat.v4.new_raw_cell(EVIL)
    raw.metadata["raw_mimetype"] = "text/html"
    markdown = nbformat.v4.new_markdown_cell(
        f"# Title\n\n{EVIL} [link](javascript:alert('pwned')) ![a](attachment:x.txt)"
    )
    markdown.attachments = {"x.txt": {"text/html": "PHNjcmlwdD5hbGVydCgncHduZWQnKTwvc2NyaXB0Pg=="}}
    return write(
        path,
        [
            markdown,
            raw,
            code(
                output(data={"text/vnd.mermaid": f"graph TD\n</pre>{EVIL}<pre>"}),
                output(data={"application/javascript": "alert('pwned')", "text/plain": "js"}),
                output(
                    data={
                        "application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                        "text/plain": "a widget",
                    }
                ),
                output(
                    data={"image/png": PNG},
                    metadata={
                        "image/png": {"width": "1 onerror=alert('pwned')", "height": 2},
                        "width": "3 onload=alert('pwned')",
                        "filenames": {"image/png": "https://evil.example/t.png"},
                    },
                ),
                output(data={"image/svg+xml": "<svg/>"}, svg_filename="https://evil.example/s"),
                output(
                    data={
                        "text/html": f"<div onclick=\"alert('pwned')\">x</div>{EVIL}"
                        "<script>alert('pwned')</script><a href=\"javascript:alert('pwned')\">a</a>"
                        '<img src="https://evil.example/t.png"><style>body{}</style>'
                    }
                ),
                output(data={"text/markdown": f"**md** {EVIL}"}),
                output(data={"text/latex": EVIL}),
                output("stream", name="stdout", text=EVIL),
            ),
        ],
        widgets={
            "application/vnd.jupyter.widget-state+json": {
                "state": {"m": {"state": {"value": EVIL}}},
                "version_major": 2,
                "version_minor": 0,
            }
        },
    )


def test_nothing_the_notebook_puts_in_its_page_is_active(tmp_path: Path) -> None:
    html = tmp_path / "hostile.html"
    render_notebook_html(hostile_notebook(tmp_path / "hostile.ipynb"), html)

    page = page_of(html)
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for value in attrs.values():
            assert not value.strip().lower().startswith("javascript:"), (tag, attrs)
            assert "evil.example" not in value, (tag, attrs)
        for url in (attrs.get("src", ""), attrs.get("href", "")):
            assert not url.startswith("data:") or url.startswith("data:image/"), (tag, attrs)
    assert all(src.startswith(NBCONVERT_SCRIPTS) for src in page.scripts if "\n" not in src)
    assert not any("pwned" in script for script in page.scripts)
    text = html.read_text()
    body = text.split("</head>")[1]
    for gone in ("unpkg", "widget-state", "widget-view", "mermaid"):  # no widget manager either
        assert gone not in text if gone == "unpkg" else gone not in body, gone
    assert "a widget" in text and "js" in text  # shown as their text/plain instead
    assert text.count("&lt;img src=x onerror=alert") >= 2  # latex and stdout: escaped text


def test_the_page_reads_as_the_notebook(tmp_path: Path) -> None:
    markdown = nbformat.v4.new_markdown_cell("# Results\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    table = (
        '<table class="dataframe"><thead><tr><th>x</th></tr></thead>'
        "<tbody><tr><td>1</td></tr></tbody></table>"
    )
    notebook = write(
        tmp_path / "nb.ipynb",
        [
            markdown,
            code(output(data={"text/html": table, "text/plain": "x"}), source="import os"),
            code(
                output(data={"image/png": PNG}, metadata={"image/png": {"width": 40}}),
                source="%timeit os.getcwd()",
            ),
        ],
        language_info={"name": "python", "pygments_lexer": "ipython3"},
    )
    html = tmp_path / "nb.html"
    render_notebook_html(notebook, html)

    page = page_of(html)
    tags = [tag for tag, _ in page.tags]
    for shown in ("h1", "th", "td", "thead"):  # markdown and HTML outputs render, not as text
        assert shown in tags, shown
    text = html.read_text()
    assert '<h1 id="Results">' in text and '<table class="dataframe">' in text
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0]["alt"] == NO_ALT and images[0]["width"] == "40"
    focusable = [attrs for _, attrs in page.tags if attrs.get("tabindex") == "0"]
    assert len(focusable) == 3 + 2  # each cell's input, each output
    assert '<span class="kn">import</span>' in text  # highlighted
    assert '<span class="o">%</span><span class="k">timeit</span>' in text  # IPython's lexer


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np\nx = np.arange(10)  # a comment\nprint(f'{x} done', x % 3)",
        "%matplotlib inline\nimport os",
        "!ls -la\nx = !pwd",
        "os.getcwd?",
        "a != b",
        "%%time\nx = 1",
        "x = 1  # a long cell, highlighted each time\n" * 400,
    ],
)
def test_code_is_highlighted_as_nbconvert_does(source: str) -> None:
    """Python's lexer stands in for IPython's only where they give the same page."""
    from nbconvert.filters.highlight import Highlight2HTML

    assert _highlighter("ipython3", None)(source) == Highlight2HTML(pygments_lexer="ipython3")(
        source
    )


@pytest.mark.tools
def test_a_page_after_the_warm_up_is_the_page_without_it(tmp_path: Path) -> None:
    """`warm_up_html` (each worker's, before its first notebook) leaves nothing behind that
    changes a page: the same notebook's page, the first in a fresh interpreter with and
    without the warm-up, byte for byte; also with another lexer and the warm-up's own cell."""
    cells = [
        nbformat.v4.new_markdown_cell("# nbci\n\n*said* in `markdown`"),
        code(output(data={"text/plain": "1"}), source="x = 1"),
        code(output(data={"image/png": PNG}), source="%timeit x\nprint('hi')"),
    ]
    python = {"name": "python", "pygments_lexer": "ipython3"}
    for name, language in (("ipython", python), ("r", {"name": "R", "pygments_lexer": "r"})):
        notebook = write(tmp_path / f"{name}.ipynb", cells, language_info=language)
        pages = {}
        for warmed in (False, True):
            page = tmp_path / f"{name}-{warmed}.html"
            done = run_python(
                "from pathlib import Path\n"
                "from nbci.render.notebook_html import render_notebook_html, warm_up_html\n"
                + ("warm_up_html()\n" if warmed else "")
                + f"render_notebook_html(Path({str(notebook)!r}), Path({str(page)!r}))"
            )
            assert done.returncode == 0, done.stderr
            pages[warmed] = page.read_bytes()
        assert pages[True] == pages[False], name
