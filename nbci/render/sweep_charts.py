"""Sweep charts: a headline metric against one numeric matrix parameter, one PNG each.

With a second parameter, one line per value of it (with more, per combination of
the others); against a baseline, the baseline's values dashed in the same colour,
as `nbci.render.charts` draws curves. Every line has its own marker, so the chart
reads without colour. Drawn with matplotlib's Agg canvas (no pyplot state), its
margins fitted to its labels (`charts.fit_margins`); names come from notebooks and
are shown as plain text.
"""

from __future__ import annotations

import functools
import io
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbci._files import is_within, write_bytes_atomic
from nbci.model import Comparison, NotebookResult, finite_float
from nbci.render.charts import DPI, MARKERS, fit_margins, kept_chart, line_colours, plain
from nbci.render.labels import param_value
from nbci.render.sweeps import FOLDER, Sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

MAX_LINES = 10
"""Lines one chart draws at most (values of the other parameters), the first ones."""
SIZE_INCHES = (5.6, 3.4)

Points = list[tuple[float, float]]


def write_sweep_charts(
    sweeps: Sequence[Sweep],
    comparison: Comparison | None,
    out_dir: Path,
    *,
    store: Path | None = None,
) -> list[Path]:
    """Draw every sweep's charts into `out_dir/sweeps/` (replacing an earlier report's); a
    chart that cannot be drawn is skipped (logged). `store` keeps drawn charts by what they
    show, as it keeps series charts (`charts.kept_chart`): a warm run draws none."""
    folder = out_dir / FOLDER
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder)
    written = []
    for sweep, (metric, axis) in ((s, chart) for s in sweeps for chart in s.charts()):
        path = out_dir / sweep.chart_path(metric, axis)
        if not is_within(path, out_dir):
            continue
        try:
            draw = functools.partial(draw_sweep_chart, sweep, metric, axis, comparison)
            png = kept_chart(store, _shown(sweep, metric, axis, comparison), draw)
            written.append(write_bytes_atomic(path, png))
        except (ValueError, OverflowError, RuntimeError, OSError) as error:
            logger.warning(
                "sweep chart of %s: %s against %s not drawn: %s", sweep.path, metric, axis, error
            )
    return written


def draw_sweep_chart(
    sweep: Sweep, metric: str, axis: str, comparison: Comparison | None = None
) -> bytes:
    """The PNG of `metric` against `axis`, a line per value of the sweep's other parameters."""
    buffer = io.BytesIO()
    figure = sweep_figure(sweep, metric, axis, comparison)
    figure.savefig(buffer, format="png", metadata={"Software": None})  # same bytes every time
    return buffer.getvalue()


def sweep_figure(
    sweep: Sweep, metric: str, axis: str, comparison: Comparison | None = None
) -> Figure:
    """The matplotlib Figure that `draw_sweep_chart` renders."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=SIZE_INCHES, dpi=DPI)  # margins: `fit_margins`
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    lines = _lines(sweep, metric, axis, comparison)
    colours = line_colours(len(lines))
    handles: list[Any] = []
    with_baseline = False
    for index, (label, head, base) in enumerate(lines):
        style = {"color": colours[index], "marker": MARKERS[index % len(MARKERS)], "markersize": 5}
        if base:
            with_baseline = True
            axes.plot(*zip(*sorted(base), strict=True), linestyle="--", alpha=0.8, **style)
        if head:
            axes.plot(*zip(*sorted(head), strict=True), linestyle="-", **style)
        handles.append(Line2D([], [], label=plain(label or metric), **style))
    if with_baseline and comparison is not None:
        handles += [
            Line2D([], [], color="black", linestyle="-", label="this run"),
            Line2D(
                [],
                [],
                color="black",
                linestyle="--",
                label=plain(f"base {comparison.baseline_label}"),
            ),
        ]
    if _spans_decades(sweep, axis):
        axes.set_xscale("log")
    axes.set_xlabel(plain(axis), fontsize=8)
    axes.set_ylabel(plain(metric), fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(True, alpha=0.3)
    title = plain(f"{sweep.id}: {metric} against {axis}")
    axes.legend(handles=handles, fontsize=7, loc="best")
    fit_margins(canvas, axes, title, title_pt=9)
    return figure


def _shown(
    sweep: Sweep, metric: str, axis: str, comparison: Comparison | None
) -> dict[str, object]:
    """Everything `draw_sweep_chart` draws from: what the kept chart is found by."""
    return {
        "sweep": sweep.id,
        "metric": metric,
        "axis": axis,
        "lines": _lines(sweep, metric, axis, comparison),
        "log_x": _spans_decades(sweep, axis),
        "baseline": comparison.baseline_label if comparison else None,
    }


def _lines(
    sweep: Sweep, metric: str, axis: str, comparison: Comparison | None
) -> list[tuple[str, Points, Points]]:
    """(label, this run's points, the baseline's points) per combination of the other axes."""
    others = [a for a in sweep.axes if a != axis]
    lines: dict[str, tuple[Points, Points]] = {}
    for nb in sweep.notebooks:
        label = ", ".join(f"{a}={param_value(nb.parameters.get(a))}" for a in others)
        head, base = lines.setdefault(label, ([], []))
        x = finite_float(nb.parameters.get(axis))
        if x is None:
            continue
        if (y := finite_float(nb.metrics.get(metric))) is not None:
            head.append((x, y))
        if (b := _baseline(nb, metric, comparison)) is not None:
            base.append((x, b))
    return [(label, head, base) for label, (head, base) in lines.items()][:MAX_LINES]


def _baseline(nb: NotebookResult, metric: str, comparison: Comparison | None) -> float | None:
    delta = comparison.delta(nb.id, metric) if comparison else None
    return finite_float(delta.baseline) if delta else None


def _spans_decades(sweep: Sweep, axis: str) -> bool:
    """Positive values of `axis` spanning two decades or more (`C = 0.1, 1, 10`)."""
    values = [
        v for nb in sweep.notebooks if (v := finite_float(nb.parameters.get(axis))) is not None
    ]
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 100
