"""nbci.series: what counts as a curve, its metrics, downsampling that keeps the shape."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from nbci import series
from nbci.glue import SERIES_MARKER
from nbci.model import Series, SeriesGroup
from nbci.series import (
    MAX_POINTS,
    change_score,
    downsample,
    group_from_dict,
    group_to_dict,
    recognise,
)


def test_a_list_of_numbers_is_a_series_with_its_metrics() -> None:
    found = recognise("val_loss", [0.9, 0.5, 0.7])

    assert found is not None
    (curve,) = found.group.series
    assert curve == Series(name="val_loss", x=(0.0, 1.0, 2.0), y=(0.9, 0.5, 0.7), points=3)
    assert found.metrics == {"val_loss.last": 0.7, "val_loss.min": 0.5, "val_loss.max": 0.9}


def test_a_dict_of_equal_length_lists_is_a_group_sharing_x() -> None:
    history = {"loss": [1.0, 0.5], "val_loss": [1.2, 0.8]}

    found = recognise("history", history)

    assert found is not None
    assert [s.name for s in found.group.series] == ["history.loss", "history.val_loss"]
    assert [found.group.label(s.name) for s in found.group.series] == ["loss", "val_loss"]
    assert found.metrics["history.val_loss.min"] == 0.8


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["a", 1], id="not all numbers"),
        pytest.param([], id="empty"),
        pytest.param([None, None], id="only gaps"),
        pytest.param([True, False], id="bools"),
        pytest.param({"a": [1, 2], "b": [1]}, id="unequal lengths"),
        pytest.param({"a": [1, 2], "b": "x"}, id="a value that is not a list"),
        pytest.param({"a": {"b": [1]}}, id="nested"),
        pytest.param(0.5, id="a number"),
        pytest.param({"nbci.table": 1, "columns": [], "rows": []}, id="a table"),
    ],
)
def test_other_values_are_not_series(value: Any) -> None:
    assert recognise("x", value) is None


def test_gaps_are_kept_and_metrics_skip_them() -> None:
    found = recognise("loss", [1.0, None, math.nan, math.inf, 0.25, -math.inf])

    assert found is not None
    y = found.group.series[0].y
    assert [math.isnan(v) for v in y] == [False, True, True, True, False, True]
    assert found.metrics["loss.min"] == 0.25 and found.metrics["loss.max"] == 1.0
    assert found.metrics["loss.last"] == -math.inf  # as glued: a diverged run shows it


def test_a_series_of_only_gaps_and_one_number_has_nan_where_nothing_is_finite() -> None:
    found = recognise("s", [math.inf, None])
    assert found is not None
    assert all(math.isnan(v) for v in found.metrics.values())


def test_the_glue_payload_uses_a_numeric_index_as_x() -> None:
    payload = {SERIES_MARKER: 1, "x": [10, 20, 30], "columns": {"acc": [0.1, 0.2, 0.3]}}

    found = recognise("frame", payload)

    assert found is not None
    assert found.group.series[0].name == "frame.acc"
    assert found.group.series[0].x == (10.0, 20.0, 30.0)


def test_a_glued_pandas_series_is_named_after_its_scrap_and_a_text_index_is_ignored() -> None:
    payload = {SERIES_MARKER: 1, "x": ["a", "b"], "columns": {"": [1, 2]}}

    found = recognise("acc", payload)

    assert found is not None
    assert found.group.series[0].name == "acc"
    assert found.group.series[0].x == (0.0, 1.0)


def test_downsampling_keeps_extremes_ends_and_gaps_within_the_limit() -> None:
    n = 1_000_000
    y = [math.sin(i / 5000) for i in range(n)]
    y[123_456] = 50.0  # a spike
    y[654_321] = -50.0
    y[777_777] = math.nan  # a gap

    found = recognise("long", y)

    assert found is not None
    kept = found.group.series[0]
    assert kept.points == n and len(kept.y) <= MAX_POINTS
    assert kept.x[0] == 0 and kept.x[-1] == n - 1
    assert 50.0 in kept.y and -50.0 in kept.y
    assert 777_777.0 in kept.x and math.isnan(kept.y[kept.x.index(777_777.0)])
    assert list(kept.x) == sorted(kept.x)


def test_downsampling_leaves_short_curves_alone() -> None:
    assert downsample([0, 1, 2], [3, 4, 5], 10) == ([0, 1, 2], [3, 4, 5])


def test_json_round_trip_stores_gaps_as_null_and_a_plain_x_as_null() -> None:
    found = recognise("loss", [1, None, 0.5])
    assert found is not None

    data = json.loads(json.dumps(group_to_dict(found.group), allow_nan=False))

    assert data["series"][0]["y"] == [1, None, 0.5] and data["series"][0]["x"] is None
    back = group_from_dict(data, "g")
    assert back.series[0].x == found.group.series[0].x
    assert math.isnan(back.series[0].y[1])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": 1, "series": []}, "string name"),
        ({"name": "g", "series": [{"name": "s", "y": ["x"], "x": None, "points": 1}]}, ".y"),
        ({"name": "g", "series": [{"name": "s", "y": [1], "x": [1, 2], "points": 1}]}, ".x"),
        ({"name": "g", "series": [{"name": "s", "y": [1, 2], "x": None, "points": 1}]}, "points"),
        ({"name": "g", "series": [{"name": "s", "y": [1] * (MAX_POINTS + 1), "points": 1}]}, ".y"),
    ],
)
def test_reading_rejects_anything_off_contract(data: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        group_from_dict(data, "notebooks[0].series[0]")


def _group(name: str, *curves: list[float]) -> SeriesGroup:
    return SeriesGroup(
        name=name,
        series=tuple(series.make_series(f"{name}.{i}", curve) for i, curve in enumerate(curves)),
    )


def test_change_scores_grow_with_the_change() -> None:
    same = _group("g", [1, 2, 3])

    assert change_score(same, same) == 0.0
    assert change_score(same, None) == 1.0 and change_score(None, None) == 0.0
    little = change_score(same, _group("g", [1, 2, 3.1]))
    much = change_score(same, _group("g", [3, 2, 1]))
    assert 0 < little < much
    assert change_score(same, _group("g", [1, 2, 3], [1, 1, 1])) == 1.0  # a series removed
