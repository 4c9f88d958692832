"""Metric tables of the view: across notebooks (a sweep's shared metrics), per
notebook, and against a baseline (the table `nbci diff` shows too)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from nbci.headline import Leads
from nbci.model import Change, Comparison, MetricDelta, NotebookResult, Run
from nbci.render.labels import (
    job_cell,
    name,
    names,
    ordered_union,
    parameters_text,
)
from nbci.render.view import Align, Cell, Table, Tone
from nbci.vocabulary import (
    CHANGE_ORDER,
    MISSING,
    count,
    describe_change,
    format_number,
    format_range,
)

WIDE_METRICS = 8
"""Up to this many shared metrics are columns of one wide table (one row per notebook)."""


def metric_tables(
    run: Run,
    comparison: Comparison | None,
    anchors: Mapping[str, str],
    leads: Leads | None = None,
    *,
    elsewhere: Collection[str] = (),
) -> tuple[tuple[Table, ...], frozenset[str]]:
    """Tables across notebooks, and the ids of the notebooks whose metrics they show;
    the jobs in `elsewhere` (a sweep's) are left to their own table."""
    if comparison is not None:
        deltas = [d for d in comparison.deltas if d.job_id not in elsewhere]
        shown = frozenset(nb.id for nb in run.notebooks)
        if not deltas:
            return (), shown
        table = comparison_table(deltas, anchors, with_job=True, leads=leads)
        return (replace(table, title="Other notebooks") if elsewhere else table,), shown
    with_metrics = [nb for nb in run.notebooks if nb.metrics and nb.id not in elsewhere]
    if len(with_metrics) >= 2 and _is_shared(with_metrics):
        groups = [with_metrics]
    else:  # notebooks with the very same metrics, e.g. one notebook run with several parameters
        by_names: dict[tuple[str, ...], list[NotebookResult]] = {}
        for nb in with_metrics:
            by_names.setdefault(tuple(sorted(nb.metrics)), []).append(nb)
        groups = [group for group in by_names.values() if len(group) >= 2]
    titled = len(groups) > 1 or sum(map(len, groups)) < len(with_metrics) or bool(elsewhere)
    tables = tuple(_group_table(group, anchors, leads, titled=titled) for group in groups)
    return tables, frozenset(nb.id for group in groups for nb in group) | frozenset(elsewhere)


def _group_table(
    notebooks: Sequence[NotebookResult],
    anchors: Mapping[str, str],
    leads: Leads | None,
    *,
    titled: bool,
) -> Table:
    metric_names = ordered_union(nb.metrics for nb in notebooks)
    if leads is not None:  # the metrics that lead in any of the notebooks first
        metric_names.sort(key=lambda m: not any(leads.leads(nb.id, m) for nb in notebooks))
    if len(metric_names) <= WIDE_METRICS:
        table = _wide_table(notebooks, metric_names, anchors)
    else:
        table = long_table(notebooks, anchors)
    if not titled:
        return table
    paths = list(dict.fromkeys(nb.path for nb in notebooks))
    title = paths[0] if len(paths) == 1 else ", ".join(nb.id for nb in notebooks)
    return replace(table, title=name(title))


def _is_shared(notebooks: Sequence[NotebookResult]) -> bool:
    """Some metric is in two notebooks, and a wide table would be at most a third empty."""
    metric_names = ordered_union(nb.metrics for nb in notebooks)
    if not any(sum(m in nb.metrics for nb in notebooks) >= 2 for m in metric_names):
        return False
    filled = sum(len(nb.metrics) for nb in notebooks)
    return filled * 3 >= 2 * len(notebooks) * len(metric_names)


def _wide_table(
    notebooks: Sequence[NotebookResult], metric_names: Sequence[str], anchors: Mapping[str, str]
) -> Table:
    with_params = any(nb.parameters for nb in notebooks)
    columns = ("Notebook", *(("Parameters",) if with_params else ()), *metric_names)
    rows = []
    for nb in notebooks:
        cells = [job_cell(nb.id, nb.status, anchors)]
        if with_params:
            cells.append(Cell(parameters_text(nb.parameters)))
        cells += [_value_cell(nb.metrics.get(n)) for n in metric_names]
        rows.append(tuple(cells))
    left: list[Align] = ["left"] * (2 if with_params else 1)
    right: list[Align] = ["right"] * len(metric_names)
    return Table(names(columns), tuple(rows), (*left, *right))


def long_table(notebooks: Sequence[NotebookResult], anchors: Mapping[str, str]) -> Table:
    rows = tuple(
        (job_cell(nb.id, nb.status, anchors), Cell(name(metric)), Cell(format_number(value)))
        for nb in notebooks
        for metric, value in nb.metrics.items()
    )
    return Table(("Notebook", "Metric", "Value"), rows, ("left", "left", "right"))


def comparison_table(
    deltas: Sequence[MetricDelta],
    anchors: Mapping[str, str],
    *,
    with_job: bool,
    leads: Leads | None = None,
) -> Table:
    """Changed headline metrics first (regressions, improvements, …); unchanged ones folded,
    then the metrics that do not lead (`nbci.headline`; without `leads` every metric does).

    With history, a `Base branch range` column shows each metric's range.
    """
    lead = [d for d in deltas if leads is None or leads.leads(d.job_id, d.metric)]
    others = sorted(
        (d for d in deltas if leads is not None and not leads.leads(d.job_id, d.metric)),
        key=lambda d: CHANGE_ORDER.index(d.change),
    )
    ordered = sorted(
        (d for d in lead if d.change != "unchanged"), key=lambda d: CHANGE_ORDER.index(d.change)
    )
    unchanged = [d for d in lead if d.change == "unchanged"]
    with_range = any(d.range is not None for d in deltas)
    columns = (
        *(("Notebook",) if with_job else ()),
        "Metric",
        "Baseline",
        "This run",
        *(("Base branch range",) if with_range else ()),
        "Change",
    )
    labels = 2 if with_job else 1
    left: list[Align] = ["left"] * labels
    right: list[Align] = ["right"] * (len(columns) - labels)

    def row(delta: MetricDelta) -> tuple[Cell, ...]:
        job = (job_cell(delta.job_id, None, anchors),) if with_job else ()
        found = delta.range
        spread = Cell(format_range(found.low, found.high)) if found else Cell(MISSING, "muted")
        return (
            *job,
            Cell(name(delta.metric)),
            _value_cell(delta.baseline),
            _value_cell(delta.value),
            *((spread,) if with_range else ()),
            _change_cell(delta),
        )

    folded_label = ", ".join(
        [
            *([count(len(unchanged), "unchanged metric")] if unchanged else []),
            *([count(len(others), "other metric")] if others else []),
        ]
    )
    return Table(
        columns,
        tuple(row(d) for d in ordered),
        (*left, *right),
        folded=tuple(row(d) for d in (*unchanged, *others)),
        folded_label=folded_label,
    )


def _value_cell(value: object) -> Cell:
    return Cell(MISSING, "muted") if value is None else Cell(format_number(value))


def _change_cell(delta: MetricDelta) -> Cell:
    """The change in words (`vocabulary.describe_change`), toned for the renderers."""
    text = describe_change(delta)
    return Cell(text, change_tone(delta.change) if text != "changed" else "strong")


def change_tone(change: Change) -> Tone:
    return _TONE.get(change, "plain")


_TONE: Mapping[Change, Tone] = {
    "regressed": "worse",
    "improved": "better",
    "added": "muted",
    "removed": "muted",
    "unchanged": "muted",
    "within": "muted",
}


def notebook_metrics(
    nb: NotebookResult,
    comparison: Comparison | None,
    anchors: Mapping[str, str],
    leads: Leads | None = None,
) -> Table | None:
    if comparison is not None:
        deltas = [d for d in comparison.deltas if d.job_id == nb.id]
        return comparison_table(deltas, anchors, with_job=False, leads=leads) if deltas else None
    if not nb.metrics:
        return None
    ordered = leads.first(nb.id, list(nb.metrics)) if leads else list(nb.metrics)
    rows = tuple((Cell(name(k)), Cell(format_number(nb.metrics[k]))) for k in ordered)
    return Table(("Metric", "Value"), rows, ("left", "right"))
