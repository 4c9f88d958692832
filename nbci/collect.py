"""Collect: read what an executed notebook glued, in scrapbook's format.

The outputs are parsed here rather than with `scrapbook.read_notebook`, which
reads the same format but fails the whole notebook on one malformed or
unknown-encoder scrap, validates every payload with jsonschema (slow on big
ones) and keeps nothing bounded. Here each scrap stands alone: an odd one
becomes a note and the rest are still collected. Where scraps sit in the
outputs (scrapbook's format and papermill < 1.0's) is `nbci.scrap_outputs`.

Everything is untrusted and bounded (the `MAX_*` constants): names, counts,
sizes, nesting. Nothing raises on odd content; what was trimmed or skipped is
said in `Collected.notes`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from nbci._files import is_within, safe_name, write_bytes_atomic
from nbci.formats import MAX_FIGURE_BYTES, PNG_SIGNATURE, image_type
from nbci.glue import MAX_CELL_CHARS, MAX_TABLE_ROWS, TABLE_MARKER, table_from_dataframe
from nbci.model import Figure, Job, MetricValue, Scrap, SeriesGroup
from nbci.scrap_outputs import Found, Notes, find_scraps, read_cells
from nbci.scrap_outputs import shown as _shown
from nbci.series import Recognised, recognise

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 256
"""Longer scrap names are shortened (keeping a hash of the original, so they stay distinct)."""
MAX_METRICS = 5000
MAX_EXACT_INT = 2**63
"""Integer metrics beyond this become floats (±inf past the float range)."""
MAX_SCRAPS = 500
MAX_FIGURES = 100
MAX_SERIES = 200
"""Curves per notebook (each holds at most `nbci.series.MAX_POINTS` points)."""
MAX_TEXT_CHARS = 100_000
MAX_HTML_CHARS = 200_000
MAX_JSON_CHARS = 100_000
"""A json scrap larger than this (serialized) is kept as trimmed text instead."""
MAX_JSON_DEPTH = 20
MAX_FLATTEN_DEPTH = 10
"""A dict of numbers nested deeper than this is kept as a json scrap, not as metrics."""
MAX_TABLE_COLUMNS = 200
MAX_PARQUET_BYTES = 50 * 1024 * 1024

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity)"
_NUMBER_REPR = re.compile(
    rf"(?:(?:np|numpy)\.(?:float|int|uint)\d*\(({_NUMBER})\)"  # np.float64(0.5)
    rf"|tensor\(({_NUMBER})(?:,[^()]*)?\)"  # tensor(0.5000, device='cuda:0')
    rf"|array\(({_NUMBER})(?:, dtype=\w+)?\)"  # array(0.5)
    rf"|({_NUMBER}))",
    re.IGNORECASE,
)
_BOOL_REPR = re.compile(r"(?:(?:np|numpy)\.)?(True|False)_?")
_SURROGATE = re.compile("[\ud800-\udfff]")
"""A lone surrogate (a `\\ud800` escape in the notebook's JSON) has no UTF-8 encoding."""


@dataclass(frozen=True)
class Collected:
    """Everything one executed notebook glued, sorted by kind."""

    metrics: dict[str, MetricValue]
    scraps: dict[str, Scrap]
    figures: tuple[Figure, ...]
    notes: tuple[str, ...]
    series: tuple[SeriesGroup, ...] = ()


def collect_notebook(notebook_path: Path, job: Job, out_dir: Path) -> Collected:
    """Read the scraps of an executed notebook; write its figures below `out_dir/figures/`."""
    collector = _Collector(job.id, out_dir)
    cells = read_cells(notebook_path, collector.notes)
    for name, found in find_scraps(cells, collector.notes).items():
        collector.add(name, found)
    return collector.result()


# -- sorting scraps into metrics, scraps and figures -----------------------------


@dataclass
class _Collector:
    job_id: str
    out_dir: Path
    notes: Notes = field(default_factory=Notes)
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    scraps: dict[str, Scrap] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    series: list[SeriesGroup] = field(default_factory=list)
    dropped_metrics: int = 0

    def result(self) -> Collected:
        if self.dropped_metrics:
            self.notes.add(
                f"kept the first {MAX_METRICS} metrics, dropped {self.dropped_metrics} more"
            )
        return Collected(
            metrics=self.metrics,
            scraps=self.scraps,
            figures=tuple(self.figures),
            notes=self.notes.result(),
            series=tuple(self.series),
        )

    def add(self, raw_name: str, found: Found) -> None:
        name = self._name(_unicode(raw_name))
        try:
            if found.has_data:
                self._add_data(name, found.encoder or "", found.data)
            elif found.display is not None:
                self._add_display(name, found.display)
        except Exception as error:  # a bug here must not lose the other scraps
            logger.exception("collecting scrap %r", name)
            self.notes.add(f"{_shown(name)}: skipped, could not be read ({error!r})"[:500])

    def _name(self, name: str) -> str:
        if len(name) <= MAX_NAME_CHARS:
            return name
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        short = f"{name[: MAX_NAME_CHARS - 9]}…{digest}"
        self.notes.add(f"{_shown(short)}: name shortened from {len(name)} characters")
        return short

    # data scraps

    def _add_data(self, name: str, encoder: str, data: Any) -> None:
        if encoder == "text":
            self._add_text(name, data if isinstance(data, str) else str(data))
        elif encoder == "json" and data is None:
            # `scrapbook.glue` of a NaN or infinite float: the kernel's serializer wrote null.
            self.notes.add(f"{_shown(name)}: stored as null (a NaN or infinity), kept as NaN")
            self._add_metric(name, float("nan"))
        elif encoder == "json":
            self._add_value(name, _decode_json(data))
        elif encoder == "pandas":
            self._add_parquet(name, data)
        else:
            self.notes.add(f"{_shown(name)}: skipped, unknown scrapbook encoder {_shown(encoder)}")

    def _add_value(self, name: str, value: Any) -> None:
        if _is_metric(value):
            self._add_metric(name, value)
        elif isinstance(value, str):
            self._add_text(name, value)
        elif (found := recognise(name, value)) is not None:
            self._add_series(name, found)
        elif isinstance(value, dict) and TABLE_MARKER in value:
            self._add_table(name, value)
        elif isinstance(value, dict) and (flat := self._flatten(name, value)) is not None:
            for key, number in flat:
                self._add_metric(key, number)
        else:
            self._add_json(name, value)

    def _add_metric(self, name: str, value: MetricValue) -> None:
        name = _unicode(name)  # flattened keys come straight from the notebook
        if not isinstance(value, bool) and isinstance(value, int) and abs(value) > MAX_EXACT_INT:
            value = _as_float(value)  # so that every reader can format and compare it
            self.notes.add(f"{_shown(name)}: an integer beyond ±2**63, kept as the float {value}")
        if name in self.metrics or len(self.metrics) < MAX_METRICS:
            self.metrics[name] = value
        else:
            self.dropped_metrics += 1

    def _add_series(self, name: str, found: Recognised) -> None:
        """Keep glued curves, and their last/min/max metrics."""
        group = found.group
        total = sum(len(g.series) for g in self.series)
        if total + len(group.series) > MAX_SERIES:
            self.notes.add(f"{_shown(name)}: skipped, more than {MAX_SERIES} series")
            return
        series = tuple(replace(s, name=_trim(s.name, MAX_NAME_CHARS)) for s in group.series)
        self.series.append(replace(group, series=series))
        for metric, number in found.metrics.items():
            self._add_metric(metric, number)
        downsampled = [s for s in group.series if s.points > len(s.y)]
        if downsampled:
            most = max(s.points for s in downsampled)
            self.notes.add(
                f"{_shown(name)}: {most} points, kept {len(downsampled[0].y)} for charts"
            )

    def _flatten(self, name: str, value: dict[str, Any]) -> list[tuple[str, MetricValue]] | None:
        """`{"a": {"b": 1}}` → `[("name.a.b", 1)]`; None unless every leaf is a number."""
        flat: list[tuple[str, MetricValue]] = []
        stack: list[tuple[str, Any, int]] = [(name, value, 0)]
        while stack:
            prefix, node, depth = stack.pop()
            if _is_metric(node):
                flat.append((prefix, node))
            elif isinstance(node, dict) and node and depth < MAX_FLATTEN_DEPTH:
                stack.extend((f"{prefix}.{k}", v, depth + 1) for k, v in reversed(node.items()))
            else:
                if isinstance(node, dict) and node:
                    self.notes.add(
                        f"{_shown(name)}: nested deeper than {MAX_FLATTEN_DEPTH} levels, "
                        "kept as json rather than metrics"
                    )
                return None
        return flat

    def _add_scrap(self, name: str, scrap: Scrap) -> None:
        if name in self.scraps or len(self.scraps) < MAX_SCRAPS:
            self.scraps[name] = scrap
        else:
            self.notes.add(f"{_shown(name)}: skipped, more than {MAX_SCRAPS} scraps")

    def _add_text(self, name: str, text: str, kind: Literal["text", "html"] = "text") -> None:
        limit = MAX_HTML_CHARS if kind == "html" else MAX_TEXT_CHARS
        if len(text) > limit:
            self.notes.add(f"{_shown(name)}: {kind} trimmed from {len(text)} to {limit} characters")
            text = text[: limit - 1] + "…"
        self._add_scrap(name, Scrap(kind=kind, value=_unicode(text)))

    def _add_json(self, name: str, value: Any) -> None:
        too_deep = _depth(value, MAX_JSON_DEPTH + 1) > MAX_JSON_DEPTH
        text = json.dumps(value, allow_nan=True, ensure_ascii=False)
        if too_deep or len(text) > MAX_JSON_CHARS:
            why = f"nested deeper than {MAX_JSON_DEPTH}" if too_deep else f"{len(text)} characters"
            self.notes.add(f"{_shown(name)}: json value {why}, kept as trimmed text")
            self._add_scrap(name, Scrap(kind="text", value=_trim(text, MAX_JSON_CHARS)))
        else:
            self._add_scrap(name, Scrap(kind="json", value=_unicode_json(value)))

    def _add_table(self, name: str, table: dict[str, Any]) -> None:
        columns, rows = table.get("columns"), table.get("rows")
        if not isinstance(columns, list) or not isinstance(rows, list):
            self.notes.add(f"{_shown(name)}: malformed table, kept as json")
            self._add_json(name, table)
            return
        total = table.get("total_rows")
        total = total if isinstance(total, int) and total >= len(rows) else len(rows)
        index = table.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        self._add_rows(name, columns, rows, total, index=index)

    def _add_rows(
        self, name: str, columns: list[Any], rows: list[Any], total: int, *, index: int = 0
    ) -> None:
        if len(columns) > MAX_TABLE_COLUMNS:
            self.notes.add(f"{_shown(name)}: kept {MAX_TABLE_COLUMNS} of {len(columns)} columns")
        if len(rows) > MAX_TABLE_ROWS or total > len(rows):
            self.notes.add(f"{_shown(name)}: kept {min(len(rows), MAX_TABLE_ROWS)} of {total} rows")
        width = min(len(columns), MAX_TABLE_COLUMNS)
        value = {
            "columns": [_trim(str(c), MAX_CELL_CHARS) for c in columns[:width]],
            "rows": [_row(row, width) for row in rows[:MAX_TABLE_ROWS]],
            "total_rows": total,
        }
        if 0 < index <= width:  # leading columns that were the DataFrame's index
            value["index"] = index
        self._add_scrap(name, Scrap(kind="table", value=value))

    def _add_parquet(self, name: str, data: Any) -> None:
        """A DataFrame glued with scrapbook's own `pandas` encoder (base64 parquet)."""
        if not isinstance(data, str) or len(data) > MAX_PARQUET_BYTES * 4 // 3:
            self.notes.add(f"{_shown(name)}: skipped a pandas scrap that is not small base64")
            return
        try:
            import io

            import pandas as pd

            frame = pd.read_parquet(io.BytesIO(base64.b64decode(data)))
        except Exception as error:  # pyarrow missing, or not parquet
            self.notes.add(f"{_shown(name)}: could not read the pandas scrap ({error!r})"[:500])
            return
        self._add_table(name, table_from_dataframe(frame))

    # display scraps

    def _add_display(self, name: str, bundle: dict[str, Any]) -> None:
        images = [mime for mime in ("image/png", "image/svg+xml") if mime in bundle]
        for mime in images:
            if self._add_figure(name, mime, bundle[mime]):
                return
        if images:
            return
        if "text/html" in bundle:
            self._add_text(name, _text(bundle["text/html"]), kind="html")
        elif "text/plain" in bundle:
            text = _text(bundle["text/plain"])
            number = _parse_scalar(text)
            if number is not None:
                self._add_metric(name, number)
            else:
                self._add_text(name, text)
        else:
            mimes = ", ".join(sorted(str(m) for m in bundle))[:200]
            self.notes.add(
                f"{_shown(name)}: skipped a display with no png, svg, html or text ({mimes})"
            )

    def _add_figure(self, name: str, mime: str, raw: Any) -> bool:
        if len(self.figures) >= MAX_FIGURES:
            self.notes.add(f"{_shown(name)}: skipped, more than {MAX_FIGURES} figures")
            return True
        data, problem = (_png_bytes if mime == "image/png" else _svg_bytes)(_text(raw))
        if data is None:
            self.notes.add(f"{_shown(name)}: skipped {mime} figure, {problem}")
            return False
        suffix = "png" if mime == "image/png" else "svg"
        relative = f"figures/{safe_name(self.job_id)}/{safe_name(name)}.{suffix}"
        path = self.out_dir / relative
        if not is_within(path, self.out_dir):
            self.notes.add(f"{_shown(name)}: skipped, its path would leave the output directory")
            return True
        try:
            write_bytes_atomic(path, data)
        except OSError as error:
            self.notes.add(f"{_shown(name)}: could not write the figure ({error.strerror})")
            return True
        self.figures.append(Figure(name=name, path=relative))
        return True


# -- small pure helpers ------------------------------------------------------------


def _decode_json(data: Any) -> Any:
    """Like scrapbook's json decoder: a string holding JSON is parsed.

    `"nan"`/`"inf"`/`"-inf"` strings (older kernels' spelling of a glued
    non-finite float) become floats.
    """
    if not isinstance(data, str):
        return data
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        lowered = data.strip().lower()
        return (
            float(lowered) if lowered in ("nan", "inf", "-inf", "infinity", "-infinity") else data
        )


def _as_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_metric(value: Any) -> bool:
    return isinstance(value, bool | int | float)


def _parse_scalar(text: str) -> MetricValue | None:
    """A number from a display's text: `0.93`, `np.float64(0.93)`, `tensor(3)`, `np.True_`."""
    text = text.strip()
    if len(text) > 100:
        return None
    if boolean := _BOOL_REPR.fullmatch(text):
        return boolean.group(1) == "True"
    match = _NUMBER_REPR.fullmatch(text)
    if match is None:
        return None
    literal = next(group for group in match.groups() if group is not None)
    try:
        return int(literal)
    except ValueError:
        return float(literal)


def _png_bytes(text: str) -> tuple[bytes | None, str]:
    if len(text) > MAX_FIGURE_BYTES * 4 // 3 + 1024:
        return None, f"larger than {MAX_FIGURE_BYTES} bytes"
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None, "not valid base64"
    if not (data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"):
        return None, "not a PNG image"
    return data, ""


def _svg_bytes(text: str) -> tuple[bytes | None, str]:
    data = text.encode("utf-8", "replace")
    if len(data) > MAX_FIGURE_BYTES:
        return None, f"larger than {MAX_FIGURE_BYTES} bytes"
    if image_type(data) != "image/svg+xml":
        return None, "not an SVG image"
    return data, ""


def _text(value: Any) -> str:
    """A mime bundle value: nbformat may store text as a list of lines."""
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return value if isinstance(value, str) else json.dumps(value)


def _row(row: Any, width: int) -> list[Any]:
    cells = row if isinstance(row, list) else [row]
    cells = [*cells[:width], *[None] * (width - len(cells))]
    return [_table_cell(cell) for cell in cells]


def _table_cell(cell: Any) -> Any:
    if cell is None or isinstance(cell, bool | int | float):
        return cell
    text = cell if isinstance(cell, str) else json.dumps(cell, allow_nan=True)
    return _trim(text, MAX_CELL_CHARS)


def _trim(text: str, limit: int) -> str:
    return _unicode(text if len(text) <= limit else text[: limit - 1] + "…")


def _unicode(text: str) -> str:
    """`text` with lone surrogates shown as U+FFFD, so that it can be written as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def _unicode_json(value: Any) -> Any:
    """`_unicode` for every key and string of a (depth-bounded) JSON value."""
    if isinstance(value, str):
        return _unicode(value)
    if isinstance(value, dict):
        return {_unicode(str(key)): _unicode_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unicode_json(item) for item in value]
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counting no further than `limit`."""
    depth, level = 0, [value]
    while level and depth < limit:
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        depth += 1 if level else 0
    return depth
