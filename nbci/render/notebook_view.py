"""A notebook's section of the view: its error, figures and scraps."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from nbci.headline import Leads
from nbci.model import Comparison, ErrorInfo, NotebookResult, Scrap, TableChange
from nbci.render.escape import clean_text, truncate, truncate_middle
from nbci.render.labels import cut, json_text, name, omitted_note, param_value
from nbci.render.metric_tables import notebook_metrics
from nbci.render.view import Cell, ErrorView, FigureView, NotebookView, ScrapView, Table
from nbci.render.visuals import Visuals
from nbci.vocabulary import format_duration, format_number, status_label

TRACEBACK_CHARS = 200_000
"""A traceback longer than this is cut in the middle (HTML; markdown cuts more)."""
TEXT_CHARS = 20_000
JSON_CHARS = 20_000
HTML_SCRAP_CHARS = 500_000
TABLE_ROWS = 200
TABLE_COLUMNS = 40
CELL_CHARS = 300


def notebook_view(
    nb: NotebookResult,
    *,
    anchor: str,
    comparison: Comparison | None,
    base_figures: Collection[str],
    change: str,
    metrics_elsewhere: bool,
    visuals: Visuals | None = None,
    leads: Leads | None = None,
) -> NotebookView:
    tables = {t.name: t for t in comparison.tables if t.job_id == nb.id} if comparison else {}
    return NotebookView(
        id=name(nb.id),
        anchor=anchor,
        path=name(nb.path),
        status=nb.status,
        status_label=status_label(nb.status),
        cached=nb.cached,
        duration=format_duration(nb.ran_for),
        parameters=tuple((name(k), param_value(v)) for k, v in nb.parameters.items()),
        output=nb.output,
        html=nb.html,
        error=_error_view(nb.error) if nb.error or not nb.ok else None,
        metrics=notebook_metrics(nb, comparison, {}, leads),
        metrics_elsewhere=metrics_elsewhere,
        figures=tuple(
            FigureView(name(f.name), f.path, in_baseline=f.path in base_figures) for f in nb.figures
        ),
        scraps=tuple(
            _scrap_view(key, scrap, tables.get(key))
            for key, scrap in nb.scraps.items()
            if key not in tables or not tables[key].unchanged
        ),
        unchanged_tables=tuple(name(t.name) for t in tables.values() if t.unchanged),
        notes=tuple(clean_text(truncate(n, 1_000)) for n in nb.notes),
        change=change,
        visuals=visuals or Visuals(),
    )


def _error_view(error: ErrorInfo | None) -> ErrorView:
    if error is None:
        return ErrorView(summary="no error recorded", cell=None, traceback="")
    traceback, omitted = truncate_middle(error.traceback or "", TRACEBACK_CHARS)
    return ErrorView(
        summary=clean_text(truncate(error.summary, 5_000)),
        cell=error.cell,
        traceback=clean_text(traceback),
        traceback_omitted=omitted,
    )


def _scrap_view(key: str, scrap: Scrap, change: TableChange | None = None) -> ScrapView:
    """Never raises: a malformed value is shown as JSON with a note. A table that differs
    from the baseline's (`change`) shows what changed (`nbci.render.table_diff`)."""
    label = name(key)
    kind = scrap.kind
    if kind == "table" and change is not None and not change.unchanged:
        from nbci.render.table_diff import table_diff

        diff = table_diff(scrap.value, change.baseline)
        if diff is not None:
            return ScrapView(label, "table", table=diff)
    if kind == "text" and isinstance(scrap.value, str):
        text, omitted = cut(scrap.value, TEXT_CHARS)
        return ScrapView(label, "text", text=clean_text(text), note=omitted_note(omitted))
    if kind == "html" and isinstance(scrap.value, str):
        html, omitted = cut(scrap.value, HTML_SCRAP_CHARS)
        return ScrapView(label, "html", html=html, note=omitted_note(omitted))
    if kind == "table":
        table = _scrap_table(scrap.value)
        if table is not None:
            return ScrapView(label, "table", table=table)
    text, omitted = cut(json_text(scrap.value), JSON_CHARS)
    return ScrapView(label, "json", text=text, note=omitted_note(omitted))


def _scrap_table(value: Any) -> Table | None:
    if not isinstance(value, Mapping):
        return None
    columns, rows = value.get("columns"), value.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        return None
    total = value.get("total_rows")
    if isinstance(total, float):
        total = int(total) if math.isfinite(total) else 0
    total_rows = total if isinstance(total, int) and not isinstance(total, bool) else 0
    total_rows = max(total_rows, len(rows))
    shown_columns = columns[:TABLE_COLUMNS]
    width = len(shown_columns)
    body = []
    for raw in rows[:TABLE_ROWS]:
        cells = list(raw)[:width] if isinstance(raw, list) else [raw]
        cells += [""] * (width - len(cells))
        body.append(tuple(Cell(table_value(c)) for c in cells))
    numeric = [
        all(
            isinstance(r[i], int | float)
            for r in rows[:TABLE_ROWS]
            if isinstance(r, list) and i < len(r)
        )
        for i in range(width)
    ]
    notes = []
    if total_rows > len(body):
        notes.append(f"showing {len(body):,} of {total_rows:,} rows")
    if len(columns) > width:
        notes.append(f"{width} of {len(columns):,} columns")
    return Table(
        columns=tuple(table_value(c) for c in shown_columns),
        rows=tuple(body),
        align=tuple("right" if n and rows else "left" for n in numeric),
        note=", ".join(notes),
    )


def table_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return format_number(value)
    if not isinstance(value, str):
        value = json_text(value, indent=None)
    return clean_text(truncate(value, CELL_CHARS))
