"""Notebooks that run fine but glue and print hostile things, through a real `nbci run`.

One run of four fixture notebooks (`notebooks/content/`): hostile scrap names
(`../`, `/`, NUL, 300 characters, unicode, right-to-left marks, markup),
hostile values (10 MB of text, NaN and infinities, 50-deep nesting, 10,000
metrics, an integer past float range, a lying table), hostile displays (HTML
with `<script>`, `onerror=`, `javascript:`; figures that are not PNGs; an SVG
with a script) and 100 MB printed to stdout. nbci must finish, write nothing
outside its output directory, keep results.json readable and the reports
valid, bounded and inert, and say in notes what it trimmed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nbci import collect
from nbci.model import NotebookResult
from nbci.render import notebook_html
from nbci.render.markdown import MAX_CHARS
from nbci.results import read_run

from .support import changes, copy_fixtures, kill_tagged, leftovers, nbci, new_tag, snapshot

SAFE_FILE = re.compile(r"[A-Za-z0-9._-]+")
ACTIVE_TAGS = {"script", "iframe", "frame", "object", "embed", "form", "base", "link"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "srcset", "poster"}


class _Tags(HTMLParser):
    """Every start tag of an HTML document with its attributes, and script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k.lower(): v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parse_html(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser


def notes_of(run_nb: NotebookResult) -> str:
    return "\n".join(run_nb.notes)


@pytest.mark.kernel
@pytest.mark.tools
def test_hostile_content_is_collected_bounded_and_contained(project: Path, tmp_path: Path) -> None:
    copy_fixtures("content", project / "content")
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    before = snapshot(tmp_path)
    tag = new_tag()
    try:
        done = nbci(["run", "content", "--no-cache", "--jobs", "2"], project, tag=tag)
        assert leftovers(tag) == []
    finally:
        kill_tagged(tag)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stdout) < 10_000  # the 100 MB went to the notebook, not to the terminal

    # Nothing written outside the output directory but its (free) lock file beside it; no
    # staging folder left beside it.
    allowed = ["project/nbci-out", "project/.nbci-out.lock", "project/.nbci-cache"]
    assert changes(before, snapshot(tmp_path), allowed=allowed) == []
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd
    assert not list(Path("/tmp").glob("absolute-figure*"))
    out = project / "nbci-out"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    run = read_run(out)
    assert {nb.id: nb.status for nb in run.notebooks} == dict.fromkeys(
        ("content-display", "content-names", "content-stdout", "content-values"), "ok"
    )
    figures = [f for nb in run.notebooks for f in nb.figures]
    for figure in figures:
        path = out / figure.path
        assert path.is_file() and path.resolve().is_relative_to(out.resolve() / "figures")
        assert all(SAFE_FILE.fullmatch(part) for part in Path(figure.path).parts)
    assert len({f.path for f in figures}) == len(figures)

    _check_names(run.get("content-names"))
    _check_values(run.get("content-values"), out)
    _check_displays(run.get("content-display"), out)
    _check_stdout(run.get("content-stdout"), out)
    _check_reports(out)


def _check_names(nb: NotebookResult | None) -> None:
    assert nb is not None
    metrics = nb.metrics
    for name in ("../../../escaped", "/etc/passwd", "nul\x00byte", "rtl \u202egnp.exe", ".."):
        assert name in metrics  # kept as the name it is; only file names are made safe
    assert "ünïcödé 数据 🎉" in metrics
    assert max(len(name) for name in metrics) == collect.MAX_NAME_CHARS
    assert "name shortened from 300 characters" in notes_of(nb)
    assert len(nb.figures) == 17
    assert len(nb.scraps) == 15


def _check_values(nb: NotebookResult | None, out: Path) -> None:
    assert nb is not None
    metrics, scraps, notes = nb.metrics, nb.scraps, notes_of(nb)
    assert math.isnan(metrics["nan"]) and math.isnan(metrics["sb_nan"])
    assert metrics["inf"] == math.inf and metrics["minus_inf"] == -math.inf
    assert math.isnan(metrics["nonfinite_dict.a"]) and metrics["nonfinite_dict.b"] == math.inf
    assert metrics["huge_int"] == math.inf
    assert len(metrics) == collect.MAX_METRICS
    assert len(scraps["huge_text"].value) == collect.MAX_TEXT_CHARS
    assert scraps["deep_numbers"].kind == "text" and scraps["deep_list"].kind == "text"
    table = scraps["fake_table"].value
    assert len(table["columns"]) == collect.MAX_TABLE_COLUMNS and table["total_rows"] == 3000
    for said in (
        "'huge_text': text trimmed from 10000000",
        "'huge_int': an integer beyond",
        "'deep_numbers': nested deeper than",
        "'deep_numbers': json value nested deeper than",
        "'deep_list': json value nested deeper than",
        "'fake_table': kept 200 of 500 columns",
        "'fake_table': kept 1000 of 3000 rows",
        "kept the first 5000 metrics, dropped 5008 more",
    ):
        assert said in notes
    text = (out / "results.json").read_text()
    json.loads(text)  # standard JSON: NaN and infinities are spelled as strings
    assert '"nan": "NaN"' in text and '"inf": "Infinity"' in text
    assert len(text) < 8_000_000


def _check_displays(nb: NotebookResult | None, out: Path) -> None:
    assert nb is not None
    scraps, notes = nb.scraps, notes_of(nb)
    for name in ("evil_html", "evil_html_nbci", "evil_html_raw"):
        assert scraps[name].kind == "html"  # kept as data; sanitized where it is shown
    for name, why in (
        ("not_base64_png", "not valid base64"),
        ("gif_as_png", "not a PNG image"),
        ("signature_only_png", "not a PNG image"),
        ("empty_png", "not a PNG image"),
        ("list_png", "not valid base64"),
    ):
        assert f"'{name}': skipped image/png figure, {why}" in notes
    assert [f.name for f in nb.figures] == ["evil_svg"]
    notebook_html = parse_html((out / "notebooks" / "content-display.html").read_text())
    for tag, attrs in notebook_html.tags:
        assert not any(k.startswith("on") and "__pwned" in v for k, v in attrs.items()), tag
        assert not any(v.strip().lower().startswith("javascript:") for v in attrs.values())
        assert "evil.example" not in attrs.get("src", "") + attrs.get("action", "")
    assert not any("__pwned" in script for script in notebook_html.scripts)


def _check_stdout(nb: NotebookResult | None, out: Path) -> None:
    assert nb is not None
    assert nb.metrics == {"after_stdout": 1}
    assert (out / "notebooks" / "content-stdout.ipynb").stat().st_size > 100 * 1024 * 1024
    html = (out / "notebooks" / "content-stdout.html").read_text()
    assert len(html) < notebook_html.MAX_HTML_TOTAL_CHARS + 1_000_000
    assert "characters trimmed by nbci" in html


def _check_reports(out: Path) -> None:
    markdown = (out / "report.md").read_text()
    assert 0 < len(markdown) <= MAX_CHARS
    assert "\x00" not in markdown and "\u202e" not in markdown
    assert "@admin" not in markdown  # nobody is pinged
    assert "left out" in markdown  # the report says what it did not show
    report = parse_html((out / "report.html").read_text())
    for tag, attrs in report.tags:
        assert tag not in ACTIVE_TAGS, tag
        assert attrs.get("http-equiv", "").lower() != "refresh"
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        for key in URL_ATTRIBUTES & set(attrs):
            assert not attrs[key].strip().lower().startswith(("javascript:", "vbscript:"))
        if "src" in attrs:  # self-contained: inlined images only
            assert attrs["src"].startswith("data:image/"), attrs["src"][:80]
        assert "evil.example" not in json.dumps(attrs)
