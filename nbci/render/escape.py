"""Untrusted text into markdown (GitHub-flavoured) so it renders as the text it is.

Everything a notebook produced — job ids, parameter names and values, scrap and
metric names, texts, tracebacks, exception values — goes through one of these
before it reaches a markdown report:

- `escape_markdown(text)`: inline text (headings, list items, paragraphs).
  Newlines become spaces.
- `escape_cell(text)`: a table cell. Like `escape_markdown`, with `|` escaped and
  newlines shown as `<br>`, so a row always keeps its columns.
- `escape_html_text(text)`: text inside raw HTML that GitHub shows as is
  (`<summary>`, an `alt` or `title` attribute).
- `fenced(text)`: a code block whose fence is longer than any backtick run in it.

What they neutralise: markdown syntax (emphasis, links, images, headings, lists,
code spans, tables, math), raw HTML and comments (`<` `>` `&` become entities),
and the autolinks that notify people or cross-reference: `@user`, `#123`,
`GH-123` on GitHub, and GitLab's `!12` (merge request), `%12`/`%name`
(milestone), `~name` (label), `&12` (epic), `$12` (snippet) get an invisible
U+200B after the sigil, which the mention and reference parsers do not cross.
Control characters are dropped and bidi overrides (which could make a row read
backwards) are shown as U+FFFD.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

ZWSP = "\u200b"

# C0/C1 controls except tab and newline; DEL.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BIDI_OVERRIDES = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x85]")
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_REFERENCE = re.compile(
    r"(#|\bGH-|!|&amp;|&|\$)(?=\d)"  # GitHub issues; GitLab merge requests, epics, snippets
    r"|[%~](?=[\w\"]|&quot;)",  # GitLab milestones and labels, by number or (quoted) name
    re.IGNORECASE,
)
# Characters with a markdown meaning anywhere in a line. `_` is handled apart
# (GitHub does not emphasise inside a word, so `val_loss` stays readable).
_INLINE_SPECIAL = re.compile(r"[\\`*\[\]~$#|]")
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# Block syntax that only counts at the start of a line, before a space or the
# end: list bullets, setext/thematic breaks (`---`, `===`), ordered lists (`1.`).
_LINE_START = re.compile(r"^(\s*)([-+=])(?=\s|$|[-=])|^(\s*\d+)([.)])(?=\s|$)")
_BACKTICK_RUN = re.compile(r"`+")


def clean_text(text: object) -> str:
    """`text` as a str with newlines normalised, controls dropped, bidi overrides visible."""
    value = text if isinstance(text, str) else str(text)
    value = _NEWLINES.sub("\n", value)
    value = _CONTROLS.sub("", value)
    return _BIDI_OVERRIDES.sub("\ufffd", value)


def defuse_mentions(text: str) -> str:
    """Break mentions and references so neither GitHub nor GitLab pings or cross-references."""
    text = _MENTION.sub("@" + ZWSP, text)
    return _REFERENCE.sub(lambda m: m.group(0) + ZWSP, text)


@lru_cache(maxsize=65_536)
def _escape_markdown(text: str) -> str:
    value = " ".join(clean_text(text).split("\n")).strip()
    return _escape_line(value)


@lru_cache(maxsize=65_536)
def _escape_cell(text: str) -> str:
    lines = [line.strip() for line in clean_text(text).split("\n")]
    return "<br>".join(_escape_line(line) for line in lines if line)


def escape_markdown(text: object) -> str:
    """Inline markdown that renders as exactly `text` (newlines become spaces)."""
    return _escape_markdown(text if isinstance(text, str) else str(text))


def escape_cell(text: object) -> str:
    """A table-cell body for `text`: never adds a column, newlines become `<br>`."""
    return _escape_cell(text if isinstance(text, str) else str(text))


def escape_html_text(text: object) -> str:
    """Text for a raw-HTML spot in markdown (`<summary>`, attributes): one line, entities."""
    value = " ".join(clean_text(text).split("\n")).strip()
    return defuse_mentions(html.escape(value, quote=True))


def fenced(text: object, info: str = "") -> str:
    """A fenced code block showing `text` verbatim; the fence outgrows any backtick run."""
    body = clean_text(text).rstrip("\n")
    longest = max((len(run) for run in _BACKTICK_RUN.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def truncate(text: str, limit: int, *, marker: str = "…") -> str:
    """`text` cut to at most `limit` characters, `marker` at the end when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(marker), 0)] + marker


def truncate_middle(text: str, limit: int) -> tuple[str, int]:
    """Keep the head and (mostly) the tail of a long text; returns (text, characters left out).

    Tracebacks carry their cause at the end, so the tail gets three quarters.
    """
    if len(text) <= limit:
        return text, 0
    head = limit // 4
    tail = limit - head
    omitted = len(text) - head - tail
    note = f"\n\n… {omitted:,} characters left out …\n\n"
    return text[:head] + note + text[len(text) - tail :], omitted


def _escape_line(line: str) -> str:
    line = html.escape(line, quote=False)
    line = _INLINE_SPECIAL.sub(lambda m: "\\" + m.group(0), line)
    line = _UNDERSCORE.sub(r"\\_", line)
    line = _LINE_START.sub(_escape_line_start, line)
    return defuse_mentions(line)


def _escape_line_start(match: re.Match[str]) -> str:
    if match.group(2):
        return f"{match.group(1)}\\{match.group(2)}"
    return f"{match.group(3)}\\{match.group(4)}"
