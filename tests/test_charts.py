"""nbci.render.charts: this run solid, the baseline dashed, readable without colour."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from chart_layout import assert_fits_snugly
from PIL import Image

from nbci.model import NotebookResult, Run, SeriesGroup
from nbci.render import charts as charts_module
from nbci.render.charts import DPI, SIZE_INCHES, chart_figure, draw_chart, write_charts
from nbci.series import make_series

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.lines import Line2D
    from matplotlib.typing import LineStyleType

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def group(name: str, **curves: list[float | None]) -> SeriesGroup:
    return SeriesGroup(
        name=name, series=tuple(make_series(f"{name}.{k}", v) for k, v in curves.items())
    )


HEAD = group("history", loss=[1.0, 0.6, 0.4, 0.3], val_loss=[1.1, 0.8, 0.7, 0.65])
BASE = group("history", loss=[1.0, 0.7, 0.5, 0.45], val_loss=[1.2, 0.9, 0.85, 0.8])


def lines_by_style(figure: MplFigure) -> dict[LineStyleType, list[Line2D]]:
    (axes,) = figure.axes
    styles: dict[LineStyleType, list[Line2D]] = {}
    for line in axes.get_lines():
        styles.setdefault(line.get_linestyle(), []).append(line)
    return styles


def legend_texts(figure: MplFigure) -> list[str]:
    (axes,) = figure.axes
    legend = axes.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_this_run_is_solid_and_the_baseline_dashed_in_the_same_colour_and_marker() -> None:
    figure = chart_figure(HEAD, BASE, baseline_label="abc1234", title="train: history")

    styles = lines_by_style(figure)
    assert len(styles["-"]) == 2 and len(styles["--"]) == 2
    for solid, dashed in zip(styles["-"], styles["--"], strict=True):
        assert solid.get_color() == dashed.get_color()
        assert solid.get_marker() == dashed.get_marker()
    markers = {line.get_marker() for line in styles["-"]}
    assert len(markers) == 2  # told apart without colour
    assert legend_texts(figure) == ["loss", "val_loss", "this run", "base abc1234"]


def test_without_a_baseline_only_the_runs_own_curves() -> None:
    figure = chart_figure(HEAD)

    assert set(lines_by_style(figure)) == {"-"}
    assert legend_texts(figure) == ["loss", "val_loss"]


def test_the_png_has_the_chart_size_and_is_the_same_every_time() -> None:
    png = draw_chart(HEAD, BASE, baseline_label="abc1234")

    assert png.startswith(PNG_SIGNATURE)
    width, height = Image.open(io.BytesIO(png)).size
    assert (width, height) == (SIZE_INCHES[0] * DPI, SIZE_INCHES[1] * DPI)
    assert draw_chart(HEAD, BASE, baseline_label="abc1234") == png


def test_values_spanning_more_than_three_decades_use_a_log_scale() -> None:
    wide = group("lr", lr=[1.0, 1e-2, 1e-4])
    narrow = group("lr", lr=[1.0, 0.5, 0.01])
    signed = group("lr", lr=[1000.0, -1.0, 1e-4])

    assert chart_figure(wide).axes[0].get_yscale() == "log"
    assert chart_figure(narrow).axes[0].get_yscale() == "linear"
    assert chart_figure(signed).axes[0].get_yscale() == "linear"


def test_gaps_and_hostile_names_draw() -> None:
    nasty = group("$\\frac{", **{"$x^": [1.0, math.nan, None, 2.0, math.inf, 3.0]})

    figure = chart_figure(nasty, baseline_label="$\\undefined{")

    assert legend_texts(figure) == ["\\$x^"]  # shown literally, not as mathtext
    assert draw_chart(nasty, nasty, baseline_label="$\\undefined{").startswith(PNG_SIGNATURE)


def test_a_group_of_twelve_has_twelve_distinct_markers() -> None:
    curves: dict[str, list[float | None]] = {f"s{i}": [i, i + 1.0, i + 0.5] for i in range(12)}
    twelve = group("g", **curves)

    styles = lines_by_style(chart_figure(twelve))

    assert len({line.get_marker() for line in styles["-"]}) == 12


def test_a_series_only_in_the_baseline_is_drawn_dashed() -> None:
    removed = group("history", loss=[1.0, 0.5], old=[3.0, 2.0])

    figure = chart_figure(group("history", loss=[1.0, 0.4]), removed, baseline_label="main")

    styles = lines_by_style(figure)
    assert len(styles["-"]) == 1 and len(styles["--"]) == 2
    assert "old" in legend_texts(figure)


def run_of(**groups_by_job: list[SeriesGroup]) -> Run:
    notebooks = tuple(
        NotebookResult(id=job, path=f"{job}.ipynb", parameters={}, status="ok", series=tuple(g))
        for job, g in groups_by_job.items()
    )
    return Run(notebooks=notebooks, created="2026-12-01T00:00:00Z")


def test_charts_are_written_most_changed_first(tmp_path: Path) -> None:
    same, moved = group("same", a=[1.0, 2.0]), group("../moved", a=[1.0, 2.0])
    gone = group("gone", a=[5.0, 6.0])
    head = run_of(train=[same, moved])
    base = run_of(train=[same, group("../moved", a=[2.0, 1.0]), gone])

    charts, left_out = write_charts(head, base, tmp_path, baseline_label="abc1234")

    assert [(c.group, c.change > 0) for c in charts] == [
        ("../moved", True),
        ("gone", True),  # only the baseline has it: drawn dashed
        ("same", False),
    ]
    assert left_out == 0
    for chart in charts:
        assert chart.path.startswith("charts/train/") and ".." not in chart.path
        assert (tmp_path / chart.path).read_bytes().startswith(PNG_SIGNATURE)
    alone, _ = write_charts(head, None, tmp_path / "alone")
    assert [c.group for c in alone] == ["same", "../moved"]  # run order without a baseline


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's, in matplotlib
def test_a_chart_matplotlib_cannot_draw_is_left_out_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Values a notebook glued that matplotlib cannot lay out (±1.7e308: its axis range
    overflows) skip that chart with a warning; the report and the other charts stand."""
    huge = group("huge", a=[1.7e308, -1.7e308, 1.0])
    head = run_of(train=[huge, group("fine", a=[1.0, 2.0])])

    charts, _ = write_charts(head, None, tmp_path)

    assert [c.group for c in charts] == ["fine"]
    assert "chart of train: huge not drawn" in caplog.text


def test_charts_past_the_bound_are_counted_not_drawn(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(charts_module, "MAX_CHARTS", 2)
    head = run_of(train=[group(f"g{i}", a=[1.0, 2.0]) for i in range(3)])

    charts, left_out = write_charts(head, None, tmp_path)

    assert len(charts) == 2 and left_out == 1


def test_a_job_run_under_another_id_is_drawn_against_its_baseline_job(
    tmp_path: Path, monkeypatch: Any
) -> None:
    drawn: list[object] = []

    def draw(head: object, base: object, **_: object) -> bytes:
        drawn.append(base)
        return b"png"

    monkeypatch.setattr(charts_module, "draw_chart", draw)
    head = run_of(train=[HEAD])
    base = run_of(**{"train-lr-0.1": [BASE]})
    base = Run(
        notebooks=tuple(replace(nb, path="train.ipynb") for nb in base.notebooks),
        created=base.created,
    )

    write_charts(head, base, tmp_path)

    assert drawn == [BASE]


def test_a_chart_drawn_before_is_reused_from_the_store_not_drawn_again(
    tmp_path: Path, monkeypatch: Any
) -> None:
    drawn: list[str] = []
    draw = charts_module.draw_chart

    def counting(head: Any, base: Any, **kwargs: Any) -> bytes:
        drawn.append(kwargs["title"])
        return draw(head, base, **kwargs)

    monkeypatch.setattr(charts_module, "draw_chart", counting)
    store = tmp_path / "cache" / "charts"
    head = run_of(train=[HEAD])

    first, _ = write_charts(head, None, tmp_path / "one", store=store)
    again, _ = write_charts(head, None, tmp_path / "two", store=store)

    assert drawn == ["train: history"]  # drawn once, copied the second time
    assert again == first
    png = (tmp_path / "one" / first[0].path).read_bytes()
    assert (tmp_path / "two" / again[0].path).read_bytes() == png
    (kept,) = store.iterdir()
    kept.write_bytes(png[:100])  # damaged: drawn again
    write_charts(head, None, tmp_path / "three", store=store)
    write_charts(head, run_of(train=[BASE]), tmp_path / "four", store=store)  # other curves
    assert drawn == ["train: history"] * 3
    assert kept.read_bytes() == png and len(list(store.iterdir())) == 2


def test_whole_number_x_values_get_whole_number_ticks() -> None:
    epochs = group("history", loss=[0.9, 0.6, 0.5, 0.45, 0.44])  # x: 0…4, as epochs are
    figure = chart_figure(epochs)
    figure.canvas.draw()
    (axes,) = figure.axes
    ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)

    fractional = SeriesGroup("f", (make_series("f.a", [1.0, 2.0], x=[0.5, 1.25]),))
    figure = chart_figure(fractional)
    figure.canvas.draw()
    assert not all(float(t).is_integer() for t in figure.axes[0].get_xticks())


@pytest.mark.parametrize(
    ("curves", "xs", "title"),
    [
        ({"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7]}, None, "train: history"),
        ({"loss": [10.0**-i for i in range(8)]}, None, "train: loss"),  # log y, 10^-7
        ({"acc": [0.5, 0.7, 0.9]}, [1_000_000, 1_020_000, 1_050_000], ""),  # 1e6 below x
        ({"energy": [4.4e9, 1.2e9, 3.0e9]}, None, "sim: energy"),  # 1e9 above y
    ],
)
def test_a_chart_fits_its_labels_snugly(
    curves: dict[str, list[float]], xs: list[float] | None, title: str
) -> None:
    """The margins, fitted to the labels without a layout engine (`fit_margins`)."""
    drawn = SeriesGroup("g", tuple(make_series(f"g.{k}", v, xs) for k, v in curves.items()))
    assert_fits_snugly(chart_figure(drawn, title=title), title)
