"""The view of a notebook's changed code cells (`nbci.code_changes`), and the comment's part.

The PR comment gets one line per changed notebook and, collapsed, a unified
diff of its changed cells, cut past a per-notebook size (the rest is in
report.html). report.html shows each changed cell side by side, baseline |
this run, its text outputs likewise and its images through the figure
comparison (`templates/code_changes.html.j2`). Strings are plain text here,
as in `nbci.render.view`: the renderers escape them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nbci.code_changes import cell_label, summary
from nbci.model import CellChange, CellChangeKind, CellImage, CodeChange, DiffLine
from nbci.render.escape import clean_text, escape_html_text, escape_markdown, fenced, truncate

CONTEXT_LINES = 3
"""Unchanged lines shown around a change in the comment's diff."""
LINE_CHARS = 500
COMMENT_DIFF_CHARS = {"full": 6_000, "collapsed": 1_500, "omitted": 0}
"""A notebook's diff in the comment, by the markdown plan's sections; past it, a note."""


@dataclass(frozen=True)
class Row:
    """One line of a side-by-side diff: the baseline's and this run's (either may be blank)."""

    base: str | None
    head: str | None

    @property
    def changed(self) -> bool:
        return self.base != self.head


@dataclass(frozen=True)
class CellView:
    label: str
    """`In [3] edited`, `In [4] moved (was In [6])`, `In [7] removed (the baseline's)`."""
    kind: CellChangeKind
    source: tuple[Row, ...]
    outputs: tuple[Row, ...]
    images: tuple[CellImage, ...]
    unified: str
    """The source's unified diff: changed lines with `CONTEXT_LINES` around them."""


@dataclass(frozen=True)
class CodeView:
    """One notebook's changed code cells."""

    summary: str
    """`edited In [2]; added In [6]`."""
    cells: tuple[CellView, ...]

    @property
    def unified(self) -> str:
        return "\n".join(cell.unified for cell in self.cells)


def code_view(change: CodeChange) -> CodeView:
    return CodeView(summary(change), tuple(_cell_view(cell) for cell in change.cells))


def _cell_view(cell: CellChange) -> CellView:
    label = cell_label(cell)
    lines = [(tag, _shown(text)) for tag, text in cell.source]
    return CellView(
        label=label,
        kind=cell.kind,
        source=side_by_side(lines),
        outputs=side_by_side([(tag, _shown(text)) for tag, text in cell.outputs]),
        images=cell.images,
        unified=f"@@ {label} @@\n" + "\n".join(_hunks(lines, cell.kind)),
    )


def _shown(text: str) -> str:
    return clean_text(truncate(text, LINE_CHARS))


def side_by_side(lines: Sequence[DiffLine]) -> tuple[Row, ...]:
    """Diff lines as rows: a run of removed lines beside the run of added ones after it."""
    rows: list[Row] = []
    removed: list[str] = []
    added: list[str] = []

    def flush() -> None:
        for i in range(max(len(removed), len(added))):
            rows.append(
                Row(removed[i] if i < len(removed) else None, added[i] if i < len(added) else None)
            )
        removed.clear()
        added.clear()

    for tag, text in lines:
        if tag == "-":
            if added:
                flush()
            removed.append(text)
        elif tag == "+":
            added.append(text)
        else:
            flush()
            rows.append(Row(text, text))
    flush()
    return tuple(rows)


def _hunks(lines: Sequence[DiffLine], kind: CellChangeKind) -> list[str]:
    """Unified diff lines: every line of an added or removed cell; an edited cell's changes
    with `CONTEXT_LINES` of context, `…` where lines are skipped; a moved one's first lines."""
    if kind in ("added", "removed"):
        return [f"{tag}{text}" for tag, text in lines]
    changed = [i for i, (tag, _) in enumerate(lines) if tag != " "]
    keep = {j for i in changed for j in range(i - CONTEXT_LINES, i + CONTEXT_LINES + 1)}
    keep = keep or set(range(CONTEXT_LINES))  # moved as it was
    out: list[str] = []
    skipped = False
    for i, (tag, text) in enumerate(lines):
        if i in keep:
            out.append(f"{tag}{text}")
            skipped = False
        elif not skipped:
            out.append(" …")
            skipped = True
    return out


# -- the comment -------------------------------------------------------------------


def code_changes_markdown(
    changes: Sequence[tuple[str, CodeView]], *, sections: str, limit: int | None
) -> str:
    """`#### Code changes`: a line per changed notebook (`job`, its view), each followed by its
    diff collapsed and cut to the plan's size; empty when no notebook's code changed."""
    if not changes:
        return ""
    chars = COMMENT_DIFF_CHARS.get(sections, 0)
    parts = ["#### Code changes\n"]
    shown = list(changes)[:limit]
    for job_id, view in shown:
        parts.append(f"- **{escape_markdown(job_id)}**: {escape_markdown(view.summary)}\n")
        if chars:
            parts.append(_collapsed_diff(job_id, view, chars))
    if len(shown) < len(changes):
        more = len(changes) - len(shown)
        parts.append(f"<sub>{more:,} more changed notebooks in report.html</sub>\n")
    return "\n".join(parts)


def _collapsed_diff(job_id: str, view: CodeView, chars: int) -> str:
    lines = view.unified.split("\n")
    kept: list[str] = []
    size = 0
    for line in lines:
        size += len(line) + 1
        if size > chars:
            break
        kept.append(line)
    left_out = len(lines) - len(kept)
    note = f"\n<sub>{left_out:,} more lines of this diff in report.html</sub>\n" if left_out else ""
    label = escape_html_text(f"Changed cells of {job_id}")
    diff = fenced("\n".join(kept), "diff")
    return f"<details><summary>{label}</summary>\n\n{diff}\n{note}\n</details>\n"
