"""Text cut to fit one line of a message: the one rule for errors, notes and terminal lines."""

from __future__ import annotations

MESSAGE_CHARS = 300
"""A message quoted from elsewhere (an exception, a forge's error body) at most."""


def one_line(text: str, limit: int | None = MESSAGE_CHARS) -> str:
    """`text` on one line: every run of whitespace (newlines too) one space, and at most
    `limit` characters, the last of them `…` when it was cut (None: no limit)."""
    line = " ".join(text.split())
    if limit is None or len(line) <= limit:
        return line
    return line[: max(limit - 1, 0)] + "…"


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as GitHub counts a field's limit (never fewer than the
    characters: an astral character, most emoji, counts twice)."""
    return len(text.encode("utf-16-le")) // 2
