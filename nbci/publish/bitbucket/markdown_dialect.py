"""The report as Bitbucket renders it: the same markdown, with nbci's HTML said in markdown.

Bitbucket (Data Center, and Cloud alike) renders CommonMark and escapes every
HTML tag, so the few tags the report uses would show as text. Before a
comment is sent, nbci's own tags become their markdown equivalents:

- the hidden marker `<!-- nbci:report:NAME -->` becomes a link reference
  definition, `[//]: # (nbci:report:NAME)`, which CommonMark renders as
  nothing (and `from_bitbucket` turns back, so the sticky comment's logic in
  `comment` is the same on every forge);
- figure tables (`<table>` of `<img>`) become markdown tables of `![alt](url)`;
- `<details><summary>S</summary>` becomes a bold line `**S**` (the section is
  shown, not folded); `<sub>`, `<b>`, `<i>`, `<br>` their markdown or a space.

Only nbci's tags can match: everything from a notebook is escaped (`&lt;`)
before it reaches the report. The result is never longer than the input but
for the marker's one character (`MARKER_GROWTH`).
"""

from __future__ import annotations

import re

MARKER_GROWTH = 1
"""How many characters longer the Bitbucket marker is than the HTML one."""
_HTML_MARKER = re.compile(r"<!-- (nbci:report:[^ ]+) -->")
_BB_MARKER = re.compile(r"\[//\]: # \((nbci:report:[^ )]+)\)")
_TABLE = re.compile(r"<table>\s*(.*?)\s*</table>", re.DOTALL)
_ROW = re.compile(r"<tr>(.*?)</tr>", re.DOTALL)
_CELL = re.compile(r"<(td|th)>(.*?)</\1>", re.DOTALL)
_IMG = re.compile(r'<img src="([^"]*)" alt="([^"]*)"[^>]*>')
_SUMMARY = re.compile(r"<details><summary>(.*?)</summary>", re.DOTALL)
_INLINE = (
    (re.compile(r"</?sub>"), ""),
    (re.compile(r"<b>(.*?)</b>", re.DOTALL), r"**\1**"),
    (re.compile(r"<i>(.*?)</i>", re.DOTALL), r"_\1_"),
)


def to_bitbucket(body: str) -> str:
    """`body` (marker and report) as Bitbucket shows it."""
    body = _HTML_MARKER.sub(r"[//]: # (\1)", body, count=1)
    body = _TABLE.sub(lambda m: _table(m[1]), body)
    body = _IMG.sub(_image, body)
    body = _SUMMARY.sub(r"**\1**", body).replace("</details>", "")
    for pattern, replacement in _INLINE:
        body = pattern.sub(replacement, body)
    return body.replace("<br>", " ")


def from_bitbucket(body: str) -> str:
    """A comment as read back: Bitbucket's marker as the HTML one the other forges use."""
    return _BB_MARKER.sub(r"<!-- \1 -->", body, count=1) if body.startswith("[//]: #") else body


def _table(rows_html: str) -> str:
    rows = [[_cell(c[1]) for c in _CELL.findall(row)] for row in _ROW.findall(rows_html)]
    rows = [row for row in rows if row]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    lines = ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * width)
    return "\n".join(lines)


def _cell(html: str) -> str:
    text = _IMG.sub(_image, html).replace("<br>", " ")
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return " ".join(text.split()).replace("|", "\\|")


def _image(match: re.Match[str]) -> str:
    alt = match[2].replace("[", "\\[").replace("]", "\\]")
    return f"![{alt}]({match[1]})"
