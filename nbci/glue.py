"""`nbci.glue`: record a value in the running notebook, in scrapbook's own format.

The forgiving front door for notebooks: numpy and torch scalars, 0-d arrays,
matplotlib figures (whatever the backend, `Agg` too) and pandas DataFrames are
turned into something scrapbook can store, so `scrapbook.read_notebook(path)
.scraps[name]` still reads every value and `nbci.collect` finds it.

The outputs are published directly with IPython's `display(..., raw=True)`
rather than through `scrapbook.glue`: scrapbook imports pandas, papermill and
jsonschema (too slow for `import nbci` in every kernel) and refuses numpy
scalars. The payload and metadata are exactly the ones scrapbook writes.

How values are stored:

- `str` → scrapbook `text` scrap.
- numbers, bools, lists, dicts (numpy/torch values converted) → `json` scrap;
  a value holding NaN or ±inf is stored as its JSON text, which scrapbook's
  json decoder turns back into floats.
- DataFrame → `json` scrap holding a table: `{"nbci.table": 1, "columns": [...],
  "rows": [[...]], "total_rows": N}` with at most `MAX_TABLE_ROWS` rows; a
  non-default index becomes leading columns, counted by `"index": N` (rows of two
  runs' tables are matched by them).
- pandas Series of numbers, or a DataFrame glued with `kind="series"` → `json`
  scrap holding curves: `{"nbci.series": 1, "x": [...] or null, "columns":
  {name: [...]}}` (a Series' one column is named ""); `x` is the index when it
  is numeric. Lists and 1-D arrays of numbers need no marker: collect reads
  them as series too.
- matplotlib Figure (or Axes, or anything with a `.figure`) → a scrapbook
  display scrap with an `image/png` rendered by `savefig`.
- anything else → a display scrap of whatever IPython can display for it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import math
import numbers
import sys
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal

from nbci.formats import SCRAP_PREFIX

logger = logging.getLogger(__name__)

SCRAP_MIME = SCRAP_PREFIX + "{encoder}+json"
SCRAP_VERSION = 1
TABLE_MARKER = "nbci.table"
"""Key that marks a json scrap as a table (its value is the table format's version)."""
SERIES_MARKER = "nbci.series"
"""Key that marks a json scrap as curves (`nbci.series` reads it; glue stays import-light)."""
MAX_TABLE_ROWS = 1000
"""Rows of a DataFrame that are kept; `total_rows` keeps the real count."""
MAX_CELL_CHARS = 1000
MAX_CELL_DEPTH = 10
"""A list-like table cell is shown to this depth; deeper values as text."""
MAX_DEPTH = 100
"""Deeper values are stored as their display: the bound only stops self-referential
containers. Deep values within it are stored as data, so that collect keeps them (as
trimmed text past its own bounds) and says so in a note."""
FIGURE_DPI = 100


class _NotJson(Exception):
    """Raised inside `_to_json`: the value has no faithful JSON form."""


def glue(
    name: str, value: Any, *, display: bool | None = None, kind: Literal["series"] | None = None
) -> None:
    """Record `value` under `name` in the notebook being executed.

    `display=True` also shows the value in the notebook. Figures and other
    rich objects are always shown: a display output is how they are stored.
    `kind="series"` stores every numeric column of a DataFrame as a curve
    against its index (charted against the baseline's), instead of a table.
    Outside a Jupyter kernel this logs a warning and records nothing.
    """
    if not isinstance(name, str):
        raise TypeError(f"nbci.glue: the name must be a str, not {type(name).__name__}")
    if kind not in (None, "series"):
        raise ValueError(f"nbci.glue: kind must be None or 'series', not {kind!r}")
    if not _in_kernel():
        logger.warning("nbci.glue(%r): not running in a Jupyter kernel, nothing recorded", name)
        return
    figure = _matplotlib_figure(value)
    if figure is not None:
        _publish_display(name, {"image/png": _png_base64(figure), "text/plain": repr(figure)}, {})
        return
    stored = to_scrap_data(value, kind=kind)
    if stored is None:
        _publish_display(name, *_display_bundle(value))
        return
    encoder, data = stored
    _publish_data(name, encoder, data, _display_bundle(value) if display else None)


def to_scrap_data(value: Any, kind: Literal["series"] | None = None) -> tuple[str, Any] | None:
    """The scrapbook encoder name and JSON payload `data` for a value.

    None when the value has no faithful JSON form (glue then stores its display).
    """
    if isinstance(value, str):
        return "text", value
    if _is_dataframe(value) and kind == "series":
        value = series_from_dataframe(value)
    elif _is_dataframe(value):
        return "json", table_from_dataframe(value)
    elif _is_numeric_series(value):
        value = series_from_dataframe(value.to_frame(name=""))
    try:
        converted = _to_json(value, 0)
    except _NotJson:
        return None
    if converted is None:  # scrapbook's payload schema has no null data
        return None
    if _has_nonfinite(converted):
        # The kernel's message serializer refuses NaN; scrapbook's json decoder
        # parses a JSON string back, restoring the floats.
        return "json", json.dumps(converted, allow_nan=True)
    return "json", converted


# -- converting values -------------------------------------------------------


def _to_json(value: Any, depth: int) -> Any:
    """A JSON-compatible copy of `value`: numpy/torch/pandas values become builtins."""
    if depth > MAX_DEPTH:
        raise _NotJson
    value = _scalar(value)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if _is_dataframe(value):
        return table_from_dataframe(value)
    if _module(value) == "pandas":
        if hasattr(value, "to_dict"):  # a Series: index → value
            value = value.to_dict()
        elif hasattr(value, "tolist"):  # an Index or an extension array
            value = value.tolist()
        elif _is_missing(value):  # pd.NA, pd.NaT
            return None
    if isinstance(value, Mapping):
        return {str(key): _to_json(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_to_json(item, depth + 1) for item in value]
    raise _NotJson


def _scalar(value: Any) -> Any:
    """numpy scalars, 0-d arrays and one-element tensors as Python values; others as given.

    Larger arrays and tensors become (nested) lists.
    """
    module = _module(value)
    if module == "numpy":
        if getattr(value, "ndim", None) == 0:
            return value.item()
        if hasattr(value, "tolist"):
            return value.tolist()
    elif module == "torch" and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        return tensor.item() if tensor.numel() == 1 else tensor.tolist()
    return value


def table_from_dataframe(frame: Any) -> dict[str, Any]:
    """A DataFrame as nbci's table shape, bounded to `MAX_TABLE_ROWS` rows."""
    total_rows = len(frame)
    frame = frame.head(MAX_TABLE_ROWS)
    index = 0
    if not _default_index(frame.index):
        with contextlib.suppress(ValueError):  # an index name that is also a column name
            frame, index = frame.reset_index(), frame.index.nlevels
    columns = [_column_name(column) for column in frame.columns]
    rows = [[_cell(cell) for cell in row] for row in frame.itertuples(index=False, name=None)]
    table = {TABLE_MARKER: 1, "columns": columns, "rows": rows, "total_rows": total_rows}
    return {**table, "index": index} if index else table


def series_from_dataframe(frame: Any) -> dict[str, Any]:
    """Every numeric column of a DataFrame as a curve against the index (x when numeric)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    columns = {
        _column_name(column): frame[column].tolist()
        for column in frame.columns
        if is_numeric_dtype(frame[column]) and not is_bool_dtype(frame[column])
    }
    index = frame.index
    numeric_index = is_numeric_dtype(index) and not is_bool_dtype(index)
    x = index.tolist() if numeric_index and not _default_index(index) else None
    return {SERIES_MARKER: 1, "x": x, "columns": columns}


def _is_numeric_series(value: Any) -> bool:
    if not (_module(value) == "pandas" and type(value).__name__ == "Series"):
        return False
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(value)) and not is_bool_dtype(value) and len(value) > 0


def _default_index(index: Any) -> bool:
    import pandas as pd

    return (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
    )


def _column_name(column: Any) -> str:
    if isinstance(column, tuple):  # MultiIndex columns
        return " / ".join(str(part) for part in column if str(part))
    return str(column)


def _cell(value: Any) -> str | int | float | bool | None:
    """One table cell as a JSON scalar: missing → None, ±inf → "inf"/"-inf", objects → str."""
    value = _scalar(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list | tuple | dict):
        text = _json_text(value)
    elif _is_missing(value):
        return None
    else:
        text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def _json_text(value: Any) -> str:
    """A list-like cell (parquet gives numpy arrays, nested ones too) as its values in JSON."""
    return json.dumps(_plain(value, MAX_CELL_DEPTH), ensure_ascii=False, default=str)


def _plain(value: Any, depth: int) -> Any:
    """`value` with numpy/torch values inside lists and dicts as Python ones (to `depth`)."""
    value = _scalar(value)
    if depth <= 0:
        return value if isinstance(value, str | int | float | bool | None) else str(value)
    if isinstance(value, list | tuple):
        return [_plain(item, depth - 1) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item, depth - 1) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-likes
        return False


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_nonfinite(item) for item in value)
    return False


def _module(value: Any) -> str:
    """Top-level package of the value's type: `numpy`, `torch`, `pandas`, ..."""
    return (type(value).__module__ or "").partition(".")[0]


def _is_dataframe(value: Any) -> bool:
    return _module(value) == "pandas" and type(value).__name__ == "DataFrame"


# -- figures -------------------------------------------------------------------


def _matplotlib_figure(value: Any) -> Any:
    """The matplotlib Figure behind a Figure, Axes, or seaborn grid; None otherwise."""
    if "matplotlib" not in sys.modules:
        return None
    from matplotlib.figure import Figure, SubFigure

    for candidate in (value, getattr(value, "figure", None)):
        if isinstance(candidate, SubFigure):
            candidate = candidate.figure
        if isinstance(candidate, Figure):
            return candidate
    return None


def _png_base64(figure: Any) -> str:
    """Render with `savefig`, which works under any backend (Agg included)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# -- publishing ------------------------------------------------------------------


def _in_kernel() -> bool:
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _publish_data(
    name: str, encoder: str, data: Any, shown: tuple[dict[str, Any], dict[str, Any]] | None
) -> None:
    """One output holding the scrap and, when `shown`, its display bundle too.

    `scrapbook.glue(..., display=True)` writes two outputs, and
    `read_notebook` then lets the display replace the data (`.data` is None);
    a single output keeps both.
    """
    from IPython.display import display

    payload = {"name": name, "data": data, "encoder": encoder, "version": SCRAP_VERSION}
    bundle, metadata = shown or ({}, {})
    bundle = {**bundle, SCRAP_MIME.format(encoder=encoder): payload}
    metadata = {**metadata, "scrapbook": {"name": name, "data": True, "display": bool(shown)}}
    display(bundle, metadata=metadata, raw=True)


def _publish_display(name: str, bundle: dict[str, Any], metadata: dict[str, Any]) -> None:
    from IPython.display import display

    metadata = {**metadata, "scrapbook": {"name": name, "data": False, "display": True}}
    display(bundle, metadata=metadata, raw=True)


def _display_bundle(value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """What IPython would display for the value (its richest forms), with their metadata."""
    from IPython.core.formatters import format_display_data

    bundle, metadata = format_display_data(value)
    if not bundle:
        bundle = {"text/plain": repr(value)}
    return dict(bundle), dict(metadata)
