"""Compare a run with a baseline run: every metric of every job, joined by id and name.

Which way a metric improves comes from the config's `higher_is_better` /
`lower_is_better` globs, then from the defaults below, else it is neutral.
Names are matched case-insensitively, as a whole and by their last dotted
segment (`scores.f1` matches `f1`).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from nbci.history import metric_ranges
from nbci.ids import pair_renamed, with_head_ids
from nbci.model import (
    Comparison,
    Direction,
    JobChange,
    MetricDelta,
    NotebookResult,
    ParameterChange,
    Run,
    Scrap,
    TableChange,
)

DEFAULT_HIGHER: tuple[str, ...] = (
    "accuracy", "*accuracy*", "acc", "*_acc", "top*acc*",
    "f1", "*f1*", "fbeta*", "*_fbeta*",
    "auc", "*auc*", "roc_auc*", "pr_auc*", "average_precision*", "map", "map@*", "*_map",
    "precision", "*precision*", "recall", "*recall*", "sensitivity", "specificity",
    "r2", "r2_*", "*_r2", "explained_variance*",
    "iou", "*iou*", "miou", "dice", "*_dice", "ndcg*", "*_ndcg*", "bleu*", "rouge*",
    "mcc", "kappa", "*_kappa", "balanced_accuracy*",
    "throughput*", "*_per_s", "*_per_sec", "*_per_second",
)  # fmt: skip
"""Metric names (globs) that improve when they rise. Deliberately narrow: a
`*r2*` would catch `error2`, so `r2` is matched only as a word."""

DEFAULT_LOWER: tuple[str, ...] = (
    "loss", "*loss*", "error", "*error*", "err", "*_err", "*_error_rate",
    "mae", "*_mae", "mse", "*_mse", "rmse", "*_rmse", "mape", "*_mape", "msle", "rmsle",
    "log_loss", "logloss", "nll", "*_nll", "perplexity", "*perplexity*", "ppl", "*_ppl",
    "wer", "cer", "fpr", "fnr", "eer", "brier*", "*_brier*",
    "time", "*_time", "*_time_s", "*_time_ms", "*_seconds", "duration", "duration_*",
    "*_duration", "*_duration_s", "latency*", "*_latency*", "runtime", "*_runtime",
    "*memory*", "*_mb", "*_gb",
)  # fmt: skip
"""Metric names (globs) that improve when they fall. Checked before the
higher-is-better globs, so `accuracy_loss` counts as a loss."""


def direction_of(metric: str, higher: Sequence[str] = (), lower: Sequence[str] = ()) -> Direction:
    """Which way `metric` improves: the config's globs first, then the defaults.

    Within each layer the whole name is tried before its last dotted segment;
    for each name an exact (non-glob) entry wins, then the lower-is-better
    globs, then the higher-is-better ones.
    """
    names = _candidate_names(metric)
    for higher_globs, lower_globs in ((higher, lower), (DEFAULT_HIGHER, DEFAULT_LOWER)):
        for name in names:
            found = _direction_in_layer(name, higher_globs, lower_globs)
            if found is not None:
                return found
    return "neutral"


def compare(
    run: Run,
    baseline: Run,
    *,
    label: str,
    higher: Sequence[str] = (),
    lower: Sequence[str] = (),
    history: Sequence[Run] = (),
) -> Comparison:
    """Every metric of every job of `run` against `baseline`, nothing dropped.

    `history`: the base branch's recent runs, oldest first; a metric with
    enough of them gets its range (`nbci.history`), and a move inside it is
    `within` rather than regressed or improved.

    Jobs are joined by id and metrics by name. Order: the head run's jobs and
    metrics as they come, then whatever only the baseline has. A job present
    on one side only gives a `JobChange` and one `added`/`removed` delta per
    metric; a job whose status changed gives a `JobChange` too. A job on both
    sides whose parameters differ gives a `ParameterChange` per parameter.
    """
    deltas: list[MetricDelta] = []
    jobs: list[JobChange] = []
    parameters: list[ParameterChange] = []
    tables: list[TableChange] = []
    directions: dict[str, Direction] = {}  # many jobs share metric names
    ranges = metric_ranges([with_head_ids(run.notebooks, old) for old in history])
    for job_id, head_nb, base_nb in _join_jobs(run, baseline):
        head_status = head_nb.status if head_nb else None
        base_status = base_nb.status if base_nb else None
        if head_status != base_status:
            jobs.append(JobChange(job_id, baseline_status=base_status, status=head_status))
        if head_nb and base_nb:
            parameters += _parameter_changes(job_id, base_nb, head_nb)
            tables += _table_changes(job_id, base_nb.scraps, head_nb.scraps)
        head_metrics = head_nb.metrics if head_nb else {}
        base_metrics = base_nb.metrics if base_nb else {}
        for name in _union(head_metrics, base_metrics):
            if name not in directions:
                directions[name] = direction_of(name, higher, lower)
            deltas.append(
                MetricDelta(
                    job_id=job_id,
                    metric=name,
                    baseline=base_metrics.get(name),
                    value=head_metrics.get(name),
                    direction=directions[name],
                    range=ranges.get((job_id, name)),
                )
            )
    return Comparison(
        baseline_label=label,
        deltas=tuple(deltas),
        jobs=tuple(jobs),
        parameters=tuple(parameters),
        history_runs=len(history),
        tables=tuple(tables),
    )


def _table_changes(
    job_id: str, baseline: Mapping[str, Scrap], head: Mapping[str, Scrap]
) -> list[TableChange]:
    """Each table scrap on both sides: equal (same columns, rows and row count) or not."""
    changes = []
    for name, scrap in head.items():
        base = baseline.get(name)
        if scrap.kind != "table" or base is None or base.kind != "table":
            continue
        same = all(_get(scrap.value, k) == _get(base.value, k) for k in _TABLE_KEYS)
        changes.append(TableChange(job_id, name, None if same else base.value))
    return changes


_TABLE_KEYS = ("columns", "rows", "total_rows")


def _get(table: Any, key: str) -> Any:
    return table.get(key) if isinstance(table, Mapping) else table


def _parameter_changes(
    job_id: str, baseline: NotebookResult, head: NotebookResult
) -> list[ParameterChange]:
    """Every parameter whose effective value differs, with where each side's came from.

    A run written before `/3` recorded only its injected parameters: a name it lacks
    ran with the notebook's default, whose value it did not record. Such a name is
    named only when the other side injected it (`model (default) → "svc" (-p)`).
    """
    base, head_values = _ran_with(baseline), _ran_with(head)
    changes = []
    for name in _union(head_values, base):
        base_text, base_origin = base.get(name, _absent(baseline))
        head_text, head_origin = head_values.get(name, _absent(head))
        if base_text == head_text:
            continue
        if base_origin == head_origin == "default" and None in (base_text, head_text):
            continue  # both ran with the notebook's default, one of them not recorded
        changes.append(
            ParameterChange(job_id, name, base_text, head_text, base_origin, head_origin)
        )
    return changes


def _ran_with(nb: NotebookResult) -> dict[str, tuple[str, str]]:
    """Name → (value as text, where it came from) for every parameter the job recorded."""
    if not nb.effective_parameters:
        return {name: (_json_text(value), "injected") for name, value in nb.parameters.items()}
    return {
        name: (p.value if p.expression else _json_text(p.value), p.origin)
        for name, p in nb.effective_parameters.items()
    }


def _absent(nb: NotebookResult) -> tuple[str | None, str | None]:
    """A name a job did not record: a default not written down (a run before `/3`), or
    one it did not have."""
    return (None, None) if nb.effective_parameters else (None, "default")


def _json_text(value: Any) -> str:
    """A parameter value as compact JSON (its canonical form: `0.1`, `"adam"`, `[1, 2]`)."""
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _join_jobs(
    run: Run, baseline: Run
) -> Iterator[tuple[str, NotebookResult | None, NotebookResult | None]]:
    """(job id, head result, baseline result), either side None when absent.

    A baseline job stored under an older id of the same job is joined under its
    head id (`nbci.ids.pair_renamed`).
    """
    renamed = pair_renamed(run.notebooks, baseline.notebooks)
    base_by_id = {renamed.get(nb.id, nb.id): nb for nb in baseline.notebooks}
    head_ids = {nb.id for nb in run.notebooks}
    for nb in run.notebooks:
        yield nb.id, nb, base_by_id.get(nb.id)
    for nb in baseline.notebooks:
        if renamed.get(nb.id, nb.id) not in head_ids:
            yield nb.id, None, nb


def _union(first: Mapping[str, object], second: Mapping[str, object]) -> list[str]:
    """Keys of both mappings, in order, each once."""
    return list(dict.fromkeys([*first, *second]))


def _candidate_names(metric: str) -> tuple[str, ...]:
    name = metric.lower()
    last = name.rsplit(".", 1)[-1]
    return (name, last) if last != name else (name,)


def _direction_in_layer(name: str, higher: Sequence[str], lower: Sequence[str]) -> Direction | None:
    lowered_higher = [g.lower() for g in higher]
    lowered_lower = [g.lower() for g in lower]
    if name in lowered_lower:
        return "lower"
    if name in lowered_higher:
        return "higher"
    if any(fnmatch.fnmatchcase(name, g) for g in lowered_lower):
        return "lower"
    if any(fnmatch.fnmatchcase(name, g) for g in lowered_higher):
        return "higher"
    return None
