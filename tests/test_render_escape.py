"""Hostile names and values never break a table, inject markup or ping anyone.

Property tests (hypothesis) over everything a notebook controls, checked on the
markdown source, on its rendering by GitHub's own parser (cmark-gfm, through cmarkgfm, with
its GFM extensions and raw HTML passed through, so any escaping slip would show) and on the
HTML report.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbci.model import (
    Comparison,
    Environment,
    ErrorInfo,
    Figure,
    GateResult,
    GitInfo,
    JobChange,
    MetricDelta,
    NotebookResult,
    Run,
    Scrap,
    Verdict,
)
from nbci.render import html_report, markdown_report
from nbci.render.escape import ZWSP, escape_cell, escape_markdown, fenced

HOSTILE = [
    "|", "||", "\\", "\\|", "\n", "\r\n", "\r", "\n\n", "`", "``", "```", "~~~", "*", "_", "~",
    "$x$",
    "<script>window.__pwned=1</script>", "<script", "<!--", "-->", "<img src=x onerror=alert(1)>",
    "<details>", "</details>", "</summary>", "<br>", "</td>", "<a href='javascript:alert(1)'>a</a>",
    "@someone", "@org/team", "#123", "GH-99", "owner/repo#7", "!12", "group/p!3", "%4", "%v1.0",
    '%"Big one"', "~bug", "~7", "&5", "$6", "[x](https://e.test)",
    "![i](https://e.test/i.png)", "[x]: https://e.test", "<https://e.test>", "&#64;me", "&lt;",
    "&", "# heading", "- item", "1. item", "2) item", "> quote", "---", "===", "    indented",
    "\t", "\x00", "\x1b[31m", "\u202e", "\u2066", "\u200f", "\u2028", "\u200b", "é", "中文", "🙂",
]  # fmt: skip

hostile = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6)), min_size=1, max_size=6
).map("".join)

ALLOWED_TAGS = {"details", "summary", "br", "sub", "img", "table", "tr", "td", "th", "b", "i"}
MARKDOWN_TAGS = {
    "p", "h3", "h4", "h5", "ul", "li", "blockquote", "strong", "em", "a", "pre", "code", "thead",
    "tbody", "del",
}  # fmt: skip
OUR_LINKS = ("[executed notebook](LINK)", "[notebook](LINK)", "[!NOTE]")
MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9]")
REFERENCE = re.compile(r"#\d|\bGH-\d|!\d|[%~](\w|\"\w|&quot;)|&(amp;)?\d|\$\d", re.I)
DELIMITER_ROW = re.compile(r"^\|(:?-+:?\|)+$")
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _gfm(extensions: list[str]) -> Callable[[str], str]:
    """cmark-gfm as GitHub runs it, but raw HTML kept (no `tagfilter`, unsafe on): a tag
    that escaping let through shows as a tag."""

    def render(markdown: str) -> str:
        html: str = cmarkgfm.markdown_to_html_with_extensions(
            markdown, options=Options.CMARK_OPT_UNSAFE, extensions=extensions
        )
        return html

    return render


markdown_to_html = _gfm(["table", "strikethrough", "autolink"])
# Without bare-URL autolinks: the plain-text checks compare words, not link extents.
commonmark_to_html = _gfm(["table", "strikethrough"])


def hostile_run(t: list[str]) -> tuple[Run, Comparison, Verdict]:
    """A run whose every notebook-controlled string is one of the hostile texts `t`."""
    nb = NotebookResult(
        id=t[0],
        path=t[1],
        parameters={t[2]: t[3], "n": [t[4]]},
        status="failed",
        output=f"notebooks/{t[0]}.ipynb",
        html=f"notebooks/{t[0]}.html",
        error=ErrorInfo(cell=3, ename=t[5], evalue=t[6], traceback=t[7]),
        metrics={t[8]: 1.5, "plain": 2},
        scraps={
            t[9]: Scrap("text", t[10]),
            t[11]: Scrap("table", {"columns": [t[12], "b"], "rows": [[t[13], 1]], "total_rows": 1}),
            t[14]: Scrap("json", {t[15]: [t[16]]}),
            t[17]: Scrap("html", t[18]),
        },
        figures=(Figure(t[19], "figures/x/a.png"),),
        notes=(t[20],),
    )
    other = NotebookResult(
        id="other", path="o.ipynb", parameters={}, status="ok", metrics={t[8]: 1}
    )
    run = Run(
        (nb, other),
        created="2026-01-01T00:00:00Z",
        git=GitInfo(sha="abc", branch=t[21]),
        environment=Environment(python=t[22], packages={t[23]: t[24]}),
    )
    comparison = Comparison(
        baseline_label=t[25],
        deltas=(
            MetricDelta(t[0], t[8], 1.0, 1.5, "higher"),
            MetricDelta(t[26], t[27], 3, None),
            MetricDelta("other", t[8], 1, 1),
        ),
        jobs=(JobChange(t[0], "ok", "failed"), JobChange(t[26], "ok", None)),
    )
    verdict = Verdict((GateResult(t[28], t[0], t[8], False, t[29]),))
    return run, comparison, verdict


texts = st.lists(hostile, min_size=30, max_size=30)


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.comments: list[str] = []

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


# -- checks on markdown source -----------------------------------------------------------


def split_fences(markdown: str) -> tuple[list[str], list[list[str]]]:
    """(lines outside code fences, bodies of fenced blocks); fails on an unclosed fence."""
    outside: list[str] = []
    blocks: list[list[str]] = []
    lines = iter(markdown.split("\n"))
    for line in lines:
        opening = re.match(r"^(`{3,})[a-z]*$", line)
        if not opening:
            outside.append(line)
            continue
        body = []
        for inner in lines:
            if re.match(rf"^`{{{len(opening.group(1))},}}\s*$", inner):
                break
            body.append(inner)
        else:
            raise AssertionError("unclosed code fence")
        blocks.append(body)
    return outside, blocks


def check_tables(lines: list[str]) -> None:
    for i, line in enumerate(lines):
        if not DELIMITER_ROW.match(line):
            continue
        width = len(UNESCAPED_PIPE.findall(lines[i - 1]))
        assert width == len(UNESCAPED_PIPE.findall(line)), lines[i - 1]
        j = i + 1
        while j < len(lines) and lines[j]:
            row = lines[j]
            assert row.startswith("| ") and row.endswith(" |"), row
            assert len(UNESCAPED_PIPE.findall(row)) == width, row
            j += 1
        assert j == len(lines) or lines[j] == "", "a table must end with a blank line"


def check_inline(lines: list[str]) -> None:
    text = re.sub(r"\]\(<[^<>\s]*>\)", "](LINK)", "\n".join(lines))  # our own link targets
    for tag in re.findall(r"<\s*/?\s*([A-Za-z!?][^\s>/]*)", text):
        assert tag.lower() in ALLOWED_TAGS, f"raw <{tag}> in markdown"
    assert not MENTION.search(text), MENTION.search(text)
    assert not REFERENCE.search(text), REFERENCE.search(text)
    # Raw HTML blocks (figure tables, <details><summary>) are not parsed as markdown.
    markdown = "\n".join(line for line in text.split("\n") if not line.startswith("<"))
    assert not re.search(r"(?<!\\)`", markdown), "unescaped backtick outside code"
    for match in re.finditer(r"(?<!\\)\[", markdown):
        assert markdown.startswith(OUR_LINKS, match.start()), markdown[match.start() :][:40]


def check_rendered(markdown: str) -> None:
    rendered = markdown_to_html(markdown)
    parser = TagCollector()
    parser.feed(rendered)
    assert not parser.comments
    links = iter(re.findall(r"<a href=[^>]*>(.*?)</a>", rendered, flags=re.S))
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS | MARKDOWN_TAGS, tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if tag == "img" and name == "src":
                assert (value or "").startswith("figures/"), value
        if tag == "a":
            # Ours, or a bare URL that GFM autolinks showing itself (no hidden target).
            href = dict(attrs)["href"] or ""
            shown = html.unescape(next(links))
            autolink = shown.startswith(("http://", "https://", "www.")) or "@" in shown
            assert href.startswith("notebooks/") or autolink, href
            assert href.startswith(("notebooks/", "http://", "https://", "mailto:")), href
    for table in re.findall(r"<table>.*?</table>", rendered, flags=re.S):
        headers = len(re.findall(r"<th[ >]", table.split("</thead>")[0]))
        if "<thead>" in table:
            for row in re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], flags=re.S):
                assert len(re.findall(r"<td[ >]", row)) == headers


def check_markdown(markdown: str) -> None:
    outside, _ = split_fences(markdown)
    check_tables(outside)
    check_inline(outside)
    check_rendered(markdown)


@settings(
    max_examples=examples(40),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(texts)
def test_hostile_markdown_report(t: list[str]) -> None:
    run, comparison, verdict = hostile_run(t)
    for markdown in (
        markdown_report(run),
        markdown_report(run, comparison=comparison, verdict=verdict, images=False),
        markdown_report(run, comparison=comparison, max_chars=3_000),
    ):
        check_markdown(markdown)


# -- checks on single escapes ----------------------------------------------------------


def visible_text(rendered: str) -> str:
    """What a reader sees of the parser's output: tags dropped, entities decoded, ZWSP gone."""
    text = re.sub(r"<[^>]+>", "", rendered)
    return html.unescape(text).replace(ZWSP, "").strip()


def expected_text(value: str) -> str:
    from nbci.render.escape import clean_text

    return " ".join(clean_text(value).replace(ZWSP, "").split())


@settings(max_examples=examples(200), deadline=None, database=None)
@given(hostile)
def test_escape_markdown_renders_as_the_text(value: str) -> None:
    escaped = escape_markdown(value)
    assert "\n" not in escaped
    shown = visible_text(commonmark_to_html("x " + escaped))
    assert " ".join(shown.split()) == " ".join(("x " + expected_text(value)).split())


@settings(max_examples=examples(200), deadline=None, database=None)
@given(hostile, hostile)
def test_escape_cell_keeps_two_columns(a: str, b: str) -> None:
    row = f"| {escape_cell(a) or ' '} | {escape_cell(b) or ' '} |"
    assert len(UNESCAPED_PIPE.findall(row)) == 3
    rendered = commonmark_to_html(f"| h1 | h2 |\n|---|---|\n{row}\n")
    assert len(re.findall(r"<td[ >]", rendered)) == 2, (row, rendered)


@settings(max_examples=examples(200), deadline=None, database=None)
@given(hostile)
def test_fenced_block_is_never_broken_out_of(value: str) -> None:
    block = fenced(value)
    outside, blocks = split_fences(block + "\n")
    assert outside == [""] and len(blocks) == 1
    rendered = markdown_to_html(block)
    assert rendered.startswith("<pre><code") and rendered.count("</code></pre>") == 1


# -- HTML ----------------------------------------------------------------------------------


@settings(
    max_examples=examples(30),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(texts)
def test_hostile_html_report(t: list[str]) -> None:
    run, comparison, verdict = hostile_run(t)
    document = html_report(run, comparison=comparison, verdict=verdict)
    parser = TagCollector()
    parser.feed(document)
    names = [tag for tag, _ in parser.tags]
    assert not {"script", "iframe", "object", "embed", "base", "form", "link", "svg", "math"} & set(
        names
    )
    assert names.count("style") == 1 and names.count("meta") == 5
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href", "action", "formaction", "xlink:href"):
                lowered = (value or "").strip().lower()
                assert not lowered.startswith(("javascript:", "vbscript:", "data:text")), value
                if name == "src":
                    assert lowered.startswith("data:image/"), value
    assert "Content-Security-Policy" in document
    # Names show up as the text they are.
    shown = " ".join("".join(parser.text).replace(ZWSP, "").split())
    for value in (t[0], t[8], t[9]):
        assert expected_text(value)[:150] in shown
