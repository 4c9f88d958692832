"""Series: glued curves (a loss per epoch) recognised, bounded and summarised.

What counts as a series, from a decoded scrap value:

- a list of numbers (`null`, NaN and ±inf allowed as gaps, at least one number):
  one series against x = 0..n-1;
- a dict whose values are lists of numbers of one length (Keras'
  `history.history`, `DataFrame.to_dict("list")`): a group sharing x = 0..n-1;
- `nbci.glue`'s series payload `{"nbci.series": 1, "x": [...], "columns": {...}}`
  (a pandas Series, or a DataFrame glued with `kind="series"`): a group against
  the index when it is numeric.

Each series gives the metrics `NAME.last`, `NAME.min` and `NAME.max`, computed
from every glued point; the points kept are at most `MAX_POINTS`, downsampled
bucket by bucket so that the curve's shape (its extremes, its gaps) survives.
Pure functions, no I/O: collect recognises, results stores, render draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nbci.glue import SERIES_MARKER
from nbci.model import MetricValue, Series, SeriesGroup, finite_float

MAX_POINTS = 2000
"""Points kept per series; longer ones are downsampled."""
MAX_SERIES_PER_GROUP = 100
"""A dict with more curves than this stays a json scrap."""
_PER_BUCKET = 5
"""Points a bucket may keep: first, min, max, last and its first gap."""


@dataclass(frozen=True)
class Recognised:
    """A scrap value read as curves, and the metrics they give."""

    group: SeriesGroup
    metrics: dict[str, MetricValue]


def recognise(name: str, value: Any) -> Recognised | None:
    """The series group a glued value holds; None when it is not curves."""
    columns, x = _columns(name, value)
    if not columns:
        return None
    series: list[Series] = []
    metrics: dict[str, MetricValue] = {}
    for series_name, values in columns.items():
        series.append(make_series(series_name, values, x))
        metrics.update(summary_metrics(series_name, values))
    return Recognised(SeriesGroup(name=name, series=tuple(series)), metrics)


def _columns(name: str, value: Any) -> tuple[dict[str, list[Any]], list[Any] | None]:
    """Series name → its values, and the shared x (None for 0..n-1); empty when no series."""
    if _is_numbers(value):
        return {name: value}, None
    if not isinstance(value, dict) or not value:
        return {}, None
    if SERIES_MARKER in value:
        return _marked_columns(name, value)
    if len(value) > MAX_SERIES_PER_GROUP or not all(_is_numbers(v) for v in value.values()):
        return {}, None
    if len({len(v) for v in value.values()}) != 1:
        return {}, None
    return {f"{name}.{key}": column for key, column in value.items()}, None


def _marked_columns(
    name: str, value: dict[str, Any]
) -> tuple[dict[str, list[Any]], list[Any] | None]:
    columns = value.get("columns")
    if not isinstance(columns, dict) or not columns or len(columns) > MAX_SERIES_PER_GROUP:
        return {}, None
    if not all(_is_numbers(v) for v in columns.values()):
        return {}, None
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        return {}, None
    x = value.get("x")
    numeric_x = isinstance(x, list) and len(x) in lengths and all(_is_finite(v) for v in x)
    if len(columns) == 1 and next(iter(columns)) in ("", name):
        return {name: next(iter(columns.values()))}, x if numeric_x else None
    return {f"{name}.{key}": column for key, column in columns.items()}, x if numeric_x else None


def make_series(name: str, values: Sequence[Any], x: Sequence[Any] | None = None) -> Series:
    """A series of `values` (None, NaN, ±inf become gaps), downsampled to `MAX_POINTS`."""
    xs = [float(v) for v in x] if x is not None else [float(i) for i in range(len(values))]
    ys = [_point(v) for v in values]
    kept_x, kept_y = downsample(xs, ys, MAX_POINTS)
    return Series(name=name, x=tuple(kept_x), y=tuple(kept_y), points=len(values))


def summary_metrics(name: str, values: Sequence[Any]) -> dict[str, MetricValue]:
    """`NAME.last` (the last point as glued: NaN when it is a gap), `NAME.min`, `NAME.max`
    (over the finite points; NaN when there are none)."""
    finite = [v for v in values if _is_finite(v)]
    last = values[-1] if values and _is_number(values[-1]) else math.nan
    return {
        f"{name}.last": last,
        f"{name}.min": min(finite) if finite else math.nan,
        f"{name}.max": max(finite) if finite else math.nan,
    }


def downsample(
    x: Sequence[float], y: Sequence[float], limit: int
) -> tuple[list[float], list[float]]:
    """At most `limit` points of the curve, keeping its shape.

    The points are cut into equal buckets; each keeps its first and last
    point, its lowest and highest, and its first gap (so a NaN stretch still
    shows as a break). Curves within the limit come back unchanged.
    """
    n = len(y)
    if n <= limit:
        return list(x), list(y)
    buckets = max(limit // _PER_BUCKET, 1)
    kept: list[int] = []
    for b in range(buckets):
        start, stop = b * n // buckets, (b + 1) * n // buckets
        kept.extend(sorted(_bucket_points(y, start, stop)))
    return [x[i] for i in kept], [y[i] for i in kept]


def _bucket_points(y: Sequence[float], start: int, stop: int) -> set[int]:
    chosen = {start, stop - 1}
    finite = [i for i in range(start, stop) if math.isfinite(y[i])]
    if finite:
        chosen.add(min(finite, key=y.__getitem__))
        chosen.add(max(finite, key=y.__getitem__))
    gap = next((i for i in range(start, stop) if not math.isfinite(y[i])), None)
    if gap is not None:
        chosen.add(gap)
    return chosen


# -- how much a group changed ------------------------------------------------------

_SAMPLES = 50


def change_score(head: SeriesGroup | None, base: SeriesGroup | None) -> float:
    """0 for identical curves, up to 1 (a series only on one side) and beyond.

    Each series is compared at `_SAMPLES` positions along its length, the
    difference measured against the span of both curves; the group's score is
    its most changed series'. Used to show the groups that changed most first.
    """
    if head is None or base is None:
        return 0.0 if head is base else 1.0
    head_by_name = {s.name: s for s in head.series}
    base_by_name = {s.name: s for s in base.series}
    scores = [
        _series_change(head_by_name.get(name), base_by_name.get(name))
        for name in dict.fromkeys([*head_by_name, *base_by_name])
    ]
    return max(scores, default=0.0)


def _series_change(head: Series | None, base: Series | None) -> float:
    if head is None or base is None:
        return 1.0
    if head.y == base.y and head.x == base.x:
        return 0.0
    finite = [v for v in (*head.y, *base.y) if math.isfinite(v)]
    span = (max(finite) - min(finite)) if finite else 0.0
    span = span or max((abs(v) for v in finite), default=1.0) or 1.0
    differences = [
        _difference(a, b, span) for a, b in zip(_resample(head.y), _resample(base.y), strict=True)
    ]
    length = abs(head.points - base.points) / max(head.points, base.points, 1)
    return sum(differences) / len(differences) + length


def _difference(a: float, b: float, span: float) -> float:
    """0 for equal points (two gaps too), 1 for a point against a gap."""
    if math.isfinite(a) and math.isfinite(b):
        return abs(a - b) / span
    return 0.0 if math.isfinite(a) == math.isfinite(b) else 1.0


def _resample(y: Sequence[float]) -> list[float]:
    """`_SAMPLES` values picked evenly along the curve."""
    if not y:
        return [math.nan] * _SAMPLES
    return [y[round(i * (len(y) - 1) / (_SAMPLES - 1))] for i in range(_SAMPLES)]


# -- results.json ------------------------------------------------------------------


def group_to_dict(group: SeriesGroup) -> dict[str, Any]:
    """The JSON form: gaps as null, an x of 0..n-1 as null."""
    return {
        "name": group.name,
        "series": [
            {
                "name": s.name,
                "points": s.points,
                "x": None if _is_range(s.x) else [_json_number(v) for v in s.x],
                "y": [_json_number(v) for v in s.y],
            }
            for s in group.series
        ],
    }


def group_from_dict(data: Any, where: str) -> SeriesGroup:
    """Read `group_to_dict`'s form back; ValueError `where: field: why` on anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError(f"{where}: expected an object with a string name")
    raw_series = data.get("series")
    if not isinstance(raw_series, list) or len(raw_series) > MAX_SERIES_PER_GROUP:
        raise ValueError(f"{where}.series: expected a list of at most {MAX_SERIES_PER_GROUP}")
    return SeriesGroup(
        name=data["name"],
        series=tuple(
            _series_from_dict(s, f"{where}.series[{i}]") for i, s in enumerate(raw_series)
        ),
    )


def _series_from_dict(data: Any, where: str) -> Series:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError(f"{where}: expected an object with a string name")
    y, x, points = data.get("y"), data.get("x"), data.get("points")
    if not isinstance(y, list) or len(y) > MAX_POINTS or not all(_is_point(v) for v in y):
        raise ValueError(f"{where}.y: expected at most {MAX_POINTS} numbers or nulls")
    if x is None:
        x = list(range(len(y)))
    if not isinstance(x, list) or len(x) != len(y) or not all(_is_finite(v) for v in x):
        raise ValueError(f"{where}.x: expected null or {len(y)} finite numbers")
    if not isinstance(points, int) or isinstance(points, bool) or points < len(y):
        raise ValueError(f"{where}.points: expected a whole number of at least {len(y)}")
    return Series(
        name=data["name"],
        x=tuple(float(v) for v in x),
        y=tuple(_point(v) for v in y),
        points=points,
    )


# -- small helpers -------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return finite_float(value) is not None


def _is_point(value: Any) -> bool:
    return value is None or _is_number(value)


def _is_numbers(value: Any) -> bool:
    """A non-empty list of numbers and gaps (null) holding at least one number."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(_is_point(v) for v in value)
        and any(_is_number(v) for v in value)
    )


def _point(value: Any) -> float:
    """A stored y value: a finite float, or NaN for a gap."""
    if not _is_number(value):
        return math.nan
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        return math.nan
    return number if math.isfinite(number) else math.nan


def _json_number(value: float) -> float | int | None:
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _is_range(x: Sequence[float]) -> bool:
    return all(v == i for i, v in enumerate(x))
