"""A table scrap against the baseline's: the rows that changed, cell by cell.

Rows are matched by the table's index columns (`"index": N`, the DataFrame's
index) when both tables have the same ones, else by position. A changed row
shows its changed cells as `old → new` and its other cells muted; rows only
one side has are marked added or removed. Only the columns with a changed cell
are shown (all of them when no cell changed, only rows came or went). Numbers
are formatted by `nbci.vocabulary`, like every table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nbci.model import Change
from nbci.render.notebook_view import TABLE_COLUMNS, TABLE_ROWS, table_value
from nbci.render.view import Align, Cell, Table, Tone
from nbci.vocabulary import CHANGE_WORD, MISSING, count

CHANGE_ARROW = "→"

Key = tuple[Any, ...]


@dataclass(frozen=True)
class _Rows:
    """One side's table: its key columns, value columns and rows by key."""

    keys: tuple[str, ...]
    """The index columns' names; empty when rows are matched by position."""
    columns: tuple[str, ...]
    rows: dict[Key, dict[str, Any]]
    total: int


def table_diff(head: Any, baseline: Any) -> Table | None:
    """This run's table against the baseline's; None when either is not a readable table."""
    head_index, base_index = _index(head), _index(baseline)
    by_index = head_index > 0 and _columns(head)[:head_index] == _columns(baseline)[:base_index]
    this, base = _rows(head, by_index), _rows(baseline, by_index)
    if this is None or base is None:
        return None
    changed, added, removed = _matched(this, base)
    columns = [c for c in dict.fromkeys([*this.columns, *base.columns])]
    moved = [c for c in columns if any(c in cells for _, cells in changed)]
    shown = (moved or columns)[:TABLE_COLUMNS]
    key_names = this.keys or ("row",)
    rows: list[tuple[Cell, ...]] = []
    for key, cells in changed:
        rows.append(_row(key, "changed", shown, this.rows[key], base.rows[key], cells))
    rows += [_row(key, "added", shown, this.rows[key], {}, ()) for key in added]
    rows += [_row(key, "removed", shown, {}, base.rows[key], ()) for key in removed]
    left: list[Align] = ["left"] * (len(key_names) + 1)
    right: list[Align] = ["right"] * len(shown)
    return Table(
        columns=(*key_names, "change", *shown),
        rows=tuple(rows[:TABLE_ROWS]),
        align=(*left, *right),
        note=_note(this, base, len(changed), len(added), len(removed), len(rows)),
    )


def _matched(
    this: _Rows, base: _Rows
) -> tuple[list[tuple[Key, tuple[str, ...]]], list[Key], list[Key]]:
    """(key, changed columns) of the rows that changed; keys added; keys removed."""
    changed = []
    for key, cells in this.rows.items():
        old = base.rows.get(key)
        if old is None:
            continue
        moved = tuple(c for c in dict.fromkeys([*cells, *old]) if cells.get(c) != old.get(c))
        if moved:
            changed.append((key, moved))
    added = [key for key in this.rows if key not in base.rows]
    removed = [key for key in base.rows if key not in this.rows]
    return changed, added, removed


def _row(
    key: Key,
    state: Change,
    shown: Sequence[str],
    cells: Mapping[str, Any],
    old: Mapping[str, Any],
    moved: Sequence[str],
) -> tuple[Cell, ...]:
    key_cells = tuple(Cell(table_value(k)) for k in key)
    word = CHANGE_WORD[state]
    values = []
    for column in shown:
        if column in moved:
            was, now = _shown(old, column), _shown(cells, column)
            values.append(Cell(f"{was} {CHANGE_ARROW} {now}", "strong"))
        elif state == "removed":
            values.append(Cell(_shown(old, column), "muted"))
        else:
            values.append(Cell(_shown(cells, column), "plain" if state == "added" else "muted"))
    tone: Tone = "better" if state == "added" else "worse" if state == "removed" else "plain"
    return (*key_cells, Cell(word, tone), *values)


def _shown(cells: Mapping[str, Any], column: str) -> str:
    return table_value(cells[column]) if column in cells else MISSING


def _note(this: _Rows, base: _Rows, changed: int, added: int, removed: int, listed: int) -> str:
    parts = [f"{changed:,} of {len(this.rows):,} rows changed"]
    if added:
        parts.append(f"{added:,} added")
    if removed:
        parts.append(f"{removed:,} removed")
    how = f"matched by {', '.join(this.keys)}" if this.keys else "matched by position"
    notes = [", ".join(parts) + f" against the baseline ({how})"]
    if listed > TABLE_ROWS:
        notes.append(f"showing {TABLE_ROWS:,} of {listed:,}")
    if this.total > len(this.rows) or base.total > len(base.rows):
        notes.append(f"the first {count(len(this.rows), 'row')} compared")
    return "; ".join(notes)


def _index(table: Any) -> int:
    index = table.get("index") if isinstance(table, Mapping) else None
    return index if isinstance(index, int) and not isinstance(index, bool) and index > 0 else 0


def _columns(table: Any) -> list[str]:
    columns = table.get("columns") if isinstance(table, Mapping) else None
    return [str(c) for c in columns] if isinstance(columns, list) else []


def _rows(table: Any, by_index: bool) -> _Rows | None:
    """The table's rows by key (index values, or position); None when it is not a table, or
    when its index values repeat."""
    if not isinstance(table, Mapping) or not isinstance(table.get("rows"), list):
        return None
    columns = _columns(table)
    width = _index(table) if by_index else 0
    rows: dict[Key, dict[str, Any]] = {}
    for position, raw in enumerate(table["rows"], start=1):
        cells = raw if isinstance(raw, list) else [raw]
        key = tuple(_hashable(c) for c in cells[:width]) if width else (position,)
        if key in rows:  # an index that does not tell rows apart
            return None
        rows[key] = dict(zip(columns[width:], cells[width:], strict=False))
    total = table.get("total_rows")
    total = total if isinstance(total, int) and not isinstance(total, bool) else len(rows)
    return _Rows(tuple(columns[:width]), tuple(columns[width:]), rows, total)


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else repr(value)
