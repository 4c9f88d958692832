"""GitHub Actions: workflow annotations and the job summary.

Only strings and one file append; `nbci/cli.py` decides what to print.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Level = Literal["error", "warning", "notice"]
LEVELS: tuple[Level, ...] = ("error", "warning", "notice")

SUMMARY_LIMIT = 1_000_000
"""Bytes a step's summary may hold: GitHub rejects more than 1 MiB; this leaves headroom."""
MESSAGE_LIMIT = 4_000
"""Characters of one annotation message; the log and the UI show little more."""
TRUNCATED_NOTE = (
    "\n\n> [!NOTE]\n> The nbci report was cut here to stay under GitHub's 1 MiB job-summary"
    " limit; report.md and report.html in the run's output have all of it.\n"
)

_IMG_TAG = re.compile(r"<img\b[^>]*>", re.I)
_MD_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_HOSTED_SRC = re.compile(r"""\ssrc=["']https://""", re.I)
_HOSTED_LINK = re.compile(r"\]\(<?https://")


def in_github_actions() -> bool:
    """True inside a GitHub Actions job."""
    return os.environ.get("GITHUB_ACTIONS") == "true"


def annotation(
    level: Level,
    message: str,
    *,
    file: str | None = None,
    title: str | None = None,
    line: int | None = None,
) -> str:
    """One workflow-command line, e.g. `::error file=nb.ipynb,title=x::message`.

    Escaped as the runner expects: `%`, CR and LF in the message; also `:` and
    `,` in property values. A newline in a notebook's error can therefore never
    start a workflow command of its own.
    """
    if level not in LEVELS:
        raise ValueError(f"annotation level must be one of {LEVELS}, not {level!r}")
    properties = []
    if file:
        properties.append(f"file={_escape_property(file)}")
    if line is not None:
        properties.append(f"line={int(line)}")
    if title:
        properties.append(f"title={_escape_property(title)}")
    joined = f" {','.join(properties)}" if properties else ""
    text = message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"
    return f"::{level}{joined}::{_escape_data(text)}"


def append_step_summary(markdown: str, *, path: Path | None = None) -> bool:
    """Append `markdown` to the job summary ($GITHUB_STEP_SUMMARY); False when not written.

    The one writer of the job summary (`nbci run` and `nbci publish` both call
    it). Images are removed unless hosted at an https URL (publish's figures):
    GitHub shows no `data:` images there, and relative ones point nowhere. The
    file stays under `SUMMARY_LIMIT` bytes: a report that does
    not fit is cut at a paragraph boundary with a note saying so. A summary
    that cannot be written is logged, never raised: it is a courtesy.
    """
    target = path or _summary_path()
    if target is None:
        return False
    text = _without_images(markdown)
    if not text.endswith("\n"):
        text += "\n"
    try:
        used = target.stat().st_size if target.exists() else 0
        text = _fit(text, SUMMARY_LIMIT - used)
        if not text:
            logger.warning("job summary %s is full; nbci's report is not added", target)
            return False
        with target.open("a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        logger.warning("could not write the job summary %s: %s", target, exc.strerror)
        return False
    return True


def _summary_path() -> Path | None:
    value = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(value) if value else None


def _without_images(markdown: str) -> str:
    """`markdown` without the images that do not show in a job summary (not https)."""
    markdown = _IMG_TAG.sub(lambda m: m[0] if _HOSTED_SRC.search(m[0]) else "", markdown)
    return _MD_IMAGE.sub(lambda m: m[0] if _HOSTED_LINK.search(m[0]) else "", markdown)


def _fit(text: str, room: int) -> str:
    """`text` if it fits in `room` bytes, else its longest paragraph prefix plus a note."""
    data = text.encode("utf-8")
    if len(data) <= room:
        return text
    note_size = len(TRUNCATED_NOTE.encode("utf-8"))
    if room < note_size:
        return ""
    head = data[: room - note_size].decode("utf-8", "ignore")
    cut = head.rfind("\n\n")
    return (head[:cut] if cut > 0 else "") + TRUNCATED_NOTE


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")
