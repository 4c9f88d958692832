"""Sweeps: a notebook run with a matrix, shown as one table with a row per combination.

A sweep is every job of one notebook when there are two or more and their
parameters differ; its axes are the parameters whose values differ (the matrix,
as the plan recorded it in each job's parameters). The table has the axes as
columns, then the notebook's headline metrics (`nbci.headline`), the best value
of each marked by its direction and, against a baseline, each value's move. Every
metric of its jobs follows, folded. The HTML report adds a chart of each headline
metric against each numeric axis (`nbci.render.sweep_charts`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nbci.headline import Leads
from nbci.ids import job_id
from nbci.model import Comparison, Direction, MetricValue, NotebookResult, Run, finite_float
from nbci.render.labels import name, names, param_value
from nbci.render.metric_tables import change_tone, comparison_table, long_table
from nbci.render.view import Align, Cell, FigureView, SweepView, Table
from nbci.vocabulary import BEST_MARK, MISSING, count, format_move, format_number

FOLDER = "sweeps"
"""Where the sweep charts go in the output directory: `sweeps/<notebook>/<metric>-<axis>.png`."""
MAX_SWEEP_CHARTS = 40
"""Charts a report draws at most for one sweep, the first headline metrics'."""


@dataclass(frozen=True)
class Sweep:
    """The jobs of one notebook run with a matrix."""

    path: str
    notebooks: tuple[NotebookResult, ...]
    axes: tuple[str, ...]
    """The parameters whose values differ between the jobs, in the parameters' order."""
    metrics: tuple[str, ...]
    """Its headline metrics, over all its jobs, in order."""
    directions: Mapping[str, Direction]

    @property
    def id(self) -> str:
        """The notebook's job id without matrix values: `train`."""
        return job_id(self.path, {})

    def numeric_axes(self) -> tuple[str, ...]:
        """Axes whose every value is a number: a chart can put them on its x axis."""
        return tuple(
            axis
            for axis in self.axes
            if all(_is_number(nb.parameters.get(axis)) for nb in self.notebooks)
        )

    def chart_path(self, metric: str, axis: str) -> str:
        from nbci._files import safe_name

        return f"{FOLDER}/{safe_name(self.id)}/{safe_name(metric)}-{safe_name(axis)}.png"

    def charts(self) -> list[tuple[str, str]]:
        """(metric, axis) of each chart: every headline metric that moves across the sweep
        against each numeric axis, at most `MAX_SWEEP_CHARTS`."""
        moving = [m for m in self.metrics if len(self.values_of(m)) >= 2 and self._varies(m)]
        charts = [(metric, axis) for metric in moving for axis in self.numeric_axes()]
        return charts[:MAX_SWEEP_CHARTS]

    def values_of(self, metric: str) -> list[float]:
        return [
            v for nb in self.notebooks if (v := finite_float(nb.metrics.get(metric))) is not None
        ]

    def _varies(self, metric: str) -> bool:
        """Whether `metric` moves across the sweep: a flat line is not worth a chart."""
        values = self.values_of(metric)
        return min(values) != max(values)


def find_sweeps(run: Run, leads: Leads) -> tuple[Sweep, ...]:
    """The run's sweeps, in the order of their notebooks' first jobs."""
    by_path: dict[str, list[NotebookResult]] = {}
    for nb in run.notebooks:
        by_path.setdefault(nb.path, []).append(nb)
    sweeps = []
    for path, notebooks in by_path.items():
        axes = _axes(notebooks)
        if len(notebooks) < 2 or not axes:
            continue
        metrics = tuple(dict.fromkeys(m for nb in notebooks for m in leads.metrics(nb)))
        directions = {m: leads.headline.direction(m) for m in metrics}
        sweeps.append(Sweep(path, tuple(notebooks), axes, metrics, directions))
    return tuple(sweeps)


def sweep_view(
    sweep: Sweep, comparison: Comparison | None, anchors: Mapping[str, str]
) -> SweepView:
    """The sweep's table, every metric of its jobs (folded) and its charts."""
    return SweepView(
        title=name(sweep.path),
        table=_combinations(sweep, comparison, anchors),
        jobs=_every_metric(sweep, comparison, anchors),
        axes=len(sweep.axes),
        charts=tuple(
            FigureView(name(f"{metric} against {axis}"), sweep.chart_path(metric, axis))
            for metric, axis in sweep.charts()
        ),
    )


def _combinations(sweep: Sweep, comparison: Comparison | None, anchors: Mapping[str, str]) -> Table:
    best = {m: _best(sweep, m) for m in sweep.metrics}
    rows = []
    for nb in sweep.notebooks:
        first, *others = (param_value(nb.parameters.get(axis)) for axis in sweep.axes)
        # the first value links to the job's section, and says when the job did not pass
        status = None if nb.ok else nb.status
        cells = [Cell(first, status=status, anchor=anchors.get(nb.id))]
        cells += [Cell(text) for text in others]
        cells += [_metric_cell(sweep, nb, m, best[m], comparison) for m in sweep.metrics]
        rows.append(tuple(cells))
    left: list[Align] = ["left"] * len(sweep.axes)
    right: list[Align] = ["right"] * len(sweep.metrics)
    return Table(
        (*names(sweep.axes), *names(sweep.metrics)),
        tuple(rows),
        (*left, *right),
        note=_legend(best, comparison),
    )


def _metric_cell(
    sweep: Sweep,
    nb: NotebookResult,
    metric: str,
    best: MetricValue | None,
    comparison: Comparison | None,
) -> Cell:
    value = nb.metrics.get(metric)
    if value is None:
        return Cell(MISSING, "muted")
    text = format_number(value)
    if best is not None and finite_float(value) == finite_float(best):
        text += f" {BEST_MARK}"
    delta = comparison.delta(nb.id, metric) if comparison else None
    if delta is None or delta.change in ("unchanged", "added"):
        return Cell(text)
    move = format_move(delta)
    return Cell(f"{text} {move}" if move else text, change_tone(delta.change))


def _best(sweep: Sweep, metric: str) -> MetricValue | None:
    """The best finite value of `metric` by its direction; None for a neutral metric, or when
    fewer than two jobs have it."""
    direction = sweep.directions.get(metric, "neutral")
    values = [
        v for nb in sweep.notebooks if (v := finite_float(nb.metrics.get(metric))) is not None
    ]
    if direction == "neutral" or len(values) < 2 or min(values) == max(values):
        return None
    return max(values) if direction == "higher" else min(values)


def _legend(best: Mapping[str, MetricValue | None], comparison: Comparison | None) -> str:
    parts = []
    if any(v is not None for v in best.values()):
        parts.append(f"{BEST_MARK} the best value of each metric")
    if comparison is not None:
        parts.append(f"moves against {comparison.baseline_label}")
    return "; ".join(parts)


def _every_metric(sweep: Sweep, comparison: Comparison | None, anchors: Mapping[str, str]) -> Table:
    """Every metric of the sweep's jobs, all of it folded."""
    ids = {nb.id for nb in sweep.notebooks}
    if comparison is not None:
        table = comparison_table(
            [d for d in comparison.deltas if d.job_id in ids], anchors, with_job=True
        )
    else:
        table = long_table(sweep.notebooks, anchors)
    rows = (*table.rows, *table.folded)
    label = f"Every metric of its {count(len(sweep.notebooks), 'notebook')} ({len(rows):,})"
    return Table(table.columns, (), table.align, folded=rows, folded_label=label)


def _axes(notebooks: Sequence[NotebookResult]) -> tuple[str, ...]:
    parameters = dict.fromkeys(p for nb in notebooks for p in nb.parameters)
    return tuple(
        p
        for p in parameters
        if len({_canonical(nb.parameters.get(p, _ABSENT)) for nb in notebooks}) > 1
    )


_ABSENT = object()


def _canonical(value: object) -> str:
    if value is _ABSENT:
        return "\0absent"
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _is_number(value: object) -> bool:
    return finite_float(value) is not None
