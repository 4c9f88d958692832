"""nbci.glue: values stored in scrapbook's format, read back by scrapbook and by nbci.collect."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scrapbook

import nbci
from nbci.collect import Collected, collect_notebook
from nbci.glue import (
    MAX_TABLE_ROWS,
    SERIES_MARKER,
    TABLE_MARKER,
    table_from_dataframe,
    to_scrap_data,
)
from nbci.model import Job

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "notebooks"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def glued(
    tmp_path_factory: pytest.TempPathFactory, execute_notebook: Callable[[Path, Path], Path]
) -> tuple[Path, Collected, Path]:
    """collect_glue.ipynb (nbci.glue under the Agg backend), executed once and collected."""
    folder = tmp_path_factory.mktemp("glue")
    executed = execute_notebook(FIXTURES / "collect_glue.ipynb", folder / "collect_glue.ipynb")
    out_dir = folder / "out"
    job = Job(id="glue", path="collect_glue.ipynb")
    return executed, collect_notebook(executed, job, out_dir), out_dir


# -- in a kernel -----------------------------------------------------------------


@pytest.mark.kernel
def test_scrapbook_reads_what_nbci_glue_stored(glued: tuple[Path, Collected, Path]) -> None:
    scraps = scrapbook.read_notebook(str(glued[0])).scraps

    assert scraps["n_int"].data == 7
    assert scraps["f32"].data == 0.5
    assert scraps["flag"].data is True
    assert scraps["zero_d"].data == 0.75
    assert math.isnan(scraps["nan_metric"].data)
    assert scraps["inf_metric"].data == -math.inf
    assert scraps["scores"].data["per_class"] == {"3": 4}
    assert scraps["vector"].data == [0, 1, 2]
    assert scraps["summary"].data == "all good"
    assert scraps["per_class"].data[TABLE_MARKER] == 1
    assert scraps["shown"].data == 0.5  # data kept although it is displayed too
    assert scraps["shown"].display["data"]["text/plain"] == "0.5"
    for figure in ("curve", "curve_axes"):
        assert scraps[figure].encoder == "display"
        assert "image/png" in scraps[figure].display["data"]


@pytest.mark.kernel
def test_numpy_values_become_metrics(glued: tuple[Path, Collected, Path]) -> None:
    metrics = glued[1].metrics

    assert metrics["n_int"] == 7 and type(metrics["n_int"]) is int
    assert metrics["flag"] is True
    assert metrics["f32"] == 0.5
    assert metrics["zero_d"] == 0.75
    assert math.isnan(metrics["nan_metric"])
    assert metrics["inf_metric"] == -math.inf
    assert metrics["scores.f1"] == 0.25
    assert metrics["scores.per_class.3"] == 4
    assert math.isnan(metrics["scores.nan"])
    assert metrics["shown"] == 0.5


@pytest.mark.kernel
def test_dataframes_become_tables(glued: tuple[Path, Collected, Path]) -> None:
    scraps = glued[1].scraps

    per_class = scraps["per_class"]
    assert per_class.kind == "table"
    assert per_class.value == {
        "columns": ["label", "precision", "support"],
        "rows": [["cat", 0.9, 10], ["dog", 1.0, 12]],
        "total_rows": 2,
        "index": 1,  # `label` was the index: rows are matched by it against the baseline
    }
    long_table = scraps["long_table"].value
    assert long_table["total_rows"] == 1500
    assert len(long_table["rows"]) == MAX_TABLE_ROWS
    assert long_table["rows"][:2] == [[0, 1.0], [1, None]]  # NaN is an empty cell
    assert any("long_table" in note and "1000 of 1500" in note for note in glued[1].notes)


@pytest.mark.kernel
def test_other_values_become_text_and_json(glued: tuple[Path, Collected, Path]) -> None:
    scraps = glued[1].scraps

    assert scraps["summary"].kind == "text" and scraps["summary"].value == "all good"
    assert "vector" not in scraps  # a 1-D array of numbers is a series
    assert scraps["when"].value == "2026-01-02T00:00:00"
    assert scraps["nothing"].kind == "text" and scraps["nothing"].value == "None"


@pytest.mark.kernel
def test_curves_become_series_with_metrics(glued: tuple[Path, Collected, Path]) -> None:
    _, collected, _ = glued
    groups = {g.name: g for g in collected.series}

    assert [s.name for s in groups["history"].series] == ["history.loss", "history.val_loss"]
    assert collected.metrics["history.val_loss.min"] == 0.8
    assert collected.metrics["history.val_loss.last"] == 0.9
    assert groups["lr"].series[0].x == (0.0, 10.0, 20.0)  # the numeric index
    assert collected.metrics["lr.last"] == 0.001
    assert [s.name for s in groups["frame"].series] == ["frame.acc"]  # numeric columns only
    assert groups["vector"].series[0].y == (0.0, 1.0, 2.0)
    long = groups["long"].series[0]
    assert long.points == 10_000 and len(long.y) <= 2000
    assert any(math.isnan(v) for v in long.y)  # the gap survives
    assert any("'long': 10000 points, kept" in note for note in collected.notes)
    assert collected.scraps["words"].kind == "json"  # not all numbers


def test_glue_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        nbci.glue("x", [1], kind="curve")  # type: ignore[arg-type]


def test_dataframe_as_series() -> None:
    frame = pd.DataFrame({"loss": [1.0, math.nan], "ok": [True, False]}, index=[5, 6])

    assert to_scrap_data(frame, kind="series") == (
        "json",
        '{"nbci.series": 1, "x": [5, 6], "columns": {"loss": [1.0, NaN]}}',
    )


@pytest.mark.kernel
def test_agg_figure_becomes_a_png_file(glued: tuple[Path, Collected, Path]) -> None:
    _, collected, out_dir = glued

    assert [(f.name, f.path) for f in collected.figures] == [
        ("curve", "figures/glue/curve.png"),
        ("curve_axes", "figures/glue/curve_axes.png"),
    ]
    import matplotlib.image

    for figure in collected.figures:
        path = out_dir / figure.path
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        height, width, _ = matplotlib.image.imread(path).shape
        assert height > 50 and width > 50


# -- without a kernel ---------------------------------------------------------------


class FakeTensor:
    """Quacks like a torch tensor (torch is not a dependency of the tests)."""

    __module__ = "torch"

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def detach(self) -> FakeTensor:
        return self

    def cpu(self) -> FakeTensor:
        return self

    def numel(self) -> int:
        return len(self.values)

    def item(self) -> float:
        (value,) = self.values
        return value

    def tolist(self) -> list[float]:
        return list(self.values)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(np.int64(7), ("json", 7), id="int64"),
        pytest.param(np.float32(0.5), ("json", 0.5), id="float32"),
        pytest.param(np.bool_(False), ("json", False), id="bool_"),
        pytest.param(np.array(0.75), ("json", 0.75), id="0-d array"),
        pytest.param(np.arange(3), ("json", [0, 1, 2]), id="array"),
        pytest.param(
            {"a": np.int64(1), 2: (np.float64(1.5),)}, ("json", {"a": 1, "2": [1.5]}), id="dict"
        ),
        pytest.param(float("nan"), ("json", "NaN"), id="nan"),
        pytest.param({"loss": float("inf")}, ("json", '{"loss": Infinity}'), id="inf in dict"),
        pytest.param(
            pd.Series([1, 2], index=["a", "b"]),
            ("json", {SERIES_MARKER: 1, "x": None, "columns": {"": [1, 2]}}),
            id="Series of numbers",
        ),
        pytest.param(
            pd.Series(["a", "b"], index=[3, 4]), ("json", {"3": "a", "4": "b"}), id="Series of text"
        ),
        pytest.param(FakeTensor([0.25]), ("json", 0.25), id="tensor of one"),
        pytest.param(FakeTensor([1.0, 2.0]), ("json", [1.0, 2.0]), id="tensor"),
        pytest.param("text", ("text", "text"), id="str"),
        pytest.param(None, None, id="None"),
        pytest.param(1j, None, id="complex"),
        pytest.param({"a": object()}, None, id="object in dict"),
    ],
)
def test_values_convert_to_scrapbook_data(value: Any, expected: tuple[str, Any] | None) -> None:
    assert to_scrap_data(value) == expected


def test_table_keeps_index_and_bounds_rows() -> None:
    frame = pd.DataFrame(
        {("a", "x"): [1.5, math.inf, math.nan], ("b", "y"): ["s", None, "t" * 5000]},
        index=pd.Index([3, 4, 5], name="k"),
    )
    table = table_from_dataframe(frame)

    assert table["columns"] == ["k", "a / x", "b / y"]
    assert table["rows"][:2] == [[3, 1.5, "s"], [4, "inf", None]]
    assert len(table["rows"][2][2]) == 1000

    big = table_from_dataframe(pd.DataFrame({"x": range(MAX_TABLE_ROWS + 5)}))
    assert (len(big["rows"]), big["total_rows"]) == (MAX_TABLE_ROWS, MAX_TABLE_ROWS + 5)


def test_list_cells_show_their_values_as_json() -> None:
    nested = np.array(
        [np.array(["foo", "bar"], dtype=object), np.array([1.5, np.nan])], dtype=object
    )
    frame = pd.DataFrame(
        {"tokens": [np.array(["foo", "bar"], dtype=object), nested], "meta": [{"k": 1}, ("x", 2)]}
    )
    assert table_from_dataframe(frame)["rows"] == [
        ['["foo", "bar"]', '{"k": 1}'],
        ['[["foo", "bar"], [1.5, null]]', '["x", 2]'],
    ]


def test_glue_outside_a_kernel_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nbci.glue"):
        nbci.glue("accuracy", 0.5)
    assert "not running in a Jupyter kernel" in caplog.text


def test_glue_rejects_a_name_that_is_not_a_string() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        nbci.glue(3, 0.5)  # type: ignore[arg-type]
