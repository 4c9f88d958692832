"""Gate evaluation: every rule applied to a run and its comparison, one `GateResult`
per check (what each rule means is in `nbci.gates`' docstring)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from nbci.gates.rules import Bound, GateRule, is_glob, plain, printable, show
from nbci.model import (
    Comparison,
    GateResult,
    MetricValue,
    NotebookResult,
    Range,
    Run,
    Status,
    Verdict,
)
from nbci.vocabulary import WHY_NOT_OK, format_number, format_percent, format_range

logger = logging.getLogger(__name__)


def evaluate(rules: Sequence[GateRule], run: Run, comparison: Comparison | None) -> Verdict:
    """Apply every rule to `run`, with `comparison` against its baseline if there is one.

    Results come in rule order, then job order, then metric order; each check
    of a rule on a job's metric is one `GateResult`. A `required` failure that
    belongs to no single job (no such job, no job has the metric) has
    `job_id=""`.
    """
    baseline = _Baseline.of(comparison)
    results: list[GateResult] = []
    for rule in rules:
        results.extend(_evaluate_rule(rule, run, baseline))
    return Verdict(_once_per_job(results, run))


MAX_NAMED_CHECKS = 5
"""Gate checks a not-ok job's one failure names; the rest are counted."""


def _once_per_job(results: Sequence[GateResult], run: Run) -> tuple[GateResult, ...]:
    """A job that is not `ok` fails its gates once, where its first check was: one failed
    notebook is one failure (and one annotation), not one per metric and rule."""
    by_job: dict[str, list[GateResult]] = {}
    for result in results:
        if result.check == "status":
            by_job.setdefault(result.job_id, []).append(result)
    statuses = {nb.id: nb.status for nb in run.notebooks}
    kept: list[GateResult] = []
    for result in results:
        if result.check != "status":
            kept.append(result)
        elif result is by_job[result.job_id][0]:
            kept.append(_one_failure(by_job[result.job_id], statuses[result.job_id]))
    return tuple(kept)


def _one_failure(failures: Sequence[GateResult], status: Status) -> GateResult:
    if len(failures) == 1:
        return failures[0]
    first = failures[0]
    targets = list(dict.fromkeys(printable(f"{f.job_id}:{f.metric}") for f in failures))
    named = ", ".join(targets[:MAX_NAMED_CHECKS])
    if len(targets) > MAX_NAMED_CHECKS:
        named += f" and {len(targets) - MAX_NAMED_CHECKS} more"
    why = WHY_NOT_OK.get(status, f"job {status}")
    checks = f"{len(failures)} gate checks did not run ({named})"
    reason = f"{printable(first.job_id)} fails: {why}, so {checks}"
    return replace(
        first,
        rule=", ".join(dict.fromkeys(f.rule for f in failures)),
        metric=", ".join(dict.fromkeys(f.metric for f in failures)),
        reason=reason,
    )


@dataclass(frozen=True)
class _Baseline:
    """What the comparison tells of the baseline run, indexed once per evaluation."""

    known: bool
    """False without a comparison: nothing is known of the baseline."""
    values: Mapping[tuple[str, str], MetricValue]
    metrics: Mapping[str, tuple[str, ...]]
    """Job id → the metrics it had on the baseline."""
    changed_status: Mapping[str, Status | None]
    """Job id → its baseline status, for jobs whose status differs (None: new job)."""
    ranges: Mapping[tuple[str, str], Range]
    """(job id, metric) → the base branch's range, for metrics with enough history."""

    @classmethod
    def of(cls, comparison: Comparison | None) -> _Baseline:
        if comparison is None:
            return cls(known=False, values={}, metrics={}, changed_status={}, ranges={})
        values = {
            (d.job_id, d.metric): d.baseline for d in comparison.deltas if d.baseline is not None
        }
        metrics: dict[str, list[str]] = {}
        for job_id, metric in values:
            metrics.setdefault(job_id, []).append(metric)
        return cls(
            known=True,
            values=values,
            metrics={job_id: tuple(names) for job_id, names in metrics.items()},
            changed_status={j.job_id: j.baseline_status for j in comparison.jobs},
            ranges={(d.job_id, d.metric): d.range for d in comparison.deltas if d.range},
        )

    def status(self, nb: NotebookResult) -> Status | None:
        return self.changed_status.get(nb.id, nb.status)


def _evaluate_rule(rule: GateRule, run: Run, baseline: _Baseline) -> Iterator[GateResult]:
    jobs = [nb for nb in run.notebooks if rule.matches_job(nb.id)]
    for nb in jobs:
        if nb.ok:
            yield from _check_ok_job(rule, nb, baseline)
        elif rule.job_pattern is not None or _bare_rule_targets(rule, nb, baseline):
            yield from _fail_not_ok(rule, nb, baseline)
    if rule.required:
        yield from _check_present_somewhere(rule, run, jobs)


def _check_ok_job(rule: GateRule, nb: NotebookResult, baseline: _Baseline) -> Iterator[GateResult]:
    metrics = [m for m in nb.metrics if rule.matches_metric(m)]
    for metric in metrics:
        value = nb.metrics[metric]
        base = baseline.values.get((nb.id, metric))
        result = _Result(rule, nb.id, metric)
        if rule.required:
            yield result("required", True, f"{result.target} present")
        if rule.min is not None:
            yield _check_bound(result, "min", value, rule.min)
        if rule.max is not None:
            yield _check_bound(result, "max", value, rule.max)
        spread = baseline.ranges.get((nb.id, metric)) if rule.outside_range else None
        if rule.max_drop is not None:
            yield _within(
                _check_move(result, "max_drop", base, value, rule.max_drop), value, spread
            )
        if rule.max_rise is not None:
            yield _within(
                _check_move(result, "max_rise", base, value, rule.max_rise), value, spread
            )
    if rule.required and not metrics and rule.job_pattern is not None:
        result = _Result(rule, nb.id, rule.metric_pattern)
        what = "no metric matches" if is_glob(rule.metric_pattern) else "missing"
        yield result("required", False, f"{result.target} {what}")


def _check_present_somewhere(
    rule: GateRule, run: Run, jobs: Sequence[NotebookResult]
) -> Iterator[GateResult]:
    """`required`: the job part must match a job; a bare metric must be in some job.

    Not in a shard run, where the job or metric may be in another shard.
    """
    job_pattern = rule.job_pattern
    if job_pattern is not None:
        if jobs:
            return
        what = f"no job matches {job_pattern}" if is_glob(job_pattern) else "no such job"
    elif any(rule.matches_metric(m) for nb in run.notebooks for m in nb.metrics):
        return
    else:
        what = "no job has a matching metric" if is_glob(rule.key) else "no job has it"
    if run.shard is not None:
        logger.debug(
            "gate %s: %s in shard %s; checked on the merged run", rule.key, what, run.shard
        )
        return
    reason = f"{printable(rule.key)} missing: {printable(what)}"
    yield GateResult(rule.key, "", rule.metric_pattern, False, reason, check="required")


def _fail_not_ok(rule: GateRule, nb: NotebookResult, baseline: _Baseline) -> Iterator[GateResult]:
    """One failure per metric the rule would have checked (or one for the rule's pattern)."""
    known = dict.fromkeys([*nb.metrics, *baseline.metrics.get(nb.id, ())])
    matching = [m for m in known if rule.matches_metric(m)]
    why = WHY_NOT_OK.get(nb.status, f"job {nb.status}")
    for metric in matching or [rule.metric_pattern]:
        result = _Result(rule, nb.id, metric)
        yield result("status", False, f"{result.target} fails: {why}")


def _bare_rule_targets(rule: GateRule, nb: NotebookResult, baseline: _Baseline) -> bool:
    """Whether a bare-metric rule applies to a job that is not `ok`.

    It does unless the baseline shows this job, `ok`, without a matching metric.
    """
    if not baseline.known or any(rule.matches_metric(m) for m in nb.metrics):
        return True
    if baseline.status(nb) != "ok":
        return True  # a new job, or one that failed on the baseline too: nothing proves it
    return any(rule.matches_metric(m) for m in baseline.metrics.get(nb.id, ()))


# -- single checks -------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    """Makes the `GateResult`s of one rule on one job's metric."""

    rule: GateRule
    job_id: str
    metric: str

    @property
    def target(self) -> str:
        """`job:metric` for a reason, on one line whatever the notebook named it."""
        return printable(f"{self.job_id}:{self.metric}")

    def __call__(self, check: str, passed: bool, reason: str) -> GateResult:
        return GateResult(self.rule.key, self.job_id, self.metric, passed, reason, check=check)


def _check_bound(result: _Result, check: str, value: object, bound: float) -> GateResult:
    """`min` or `max`: an absolute bound; NaN or a value that is not a number fails."""
    number = _number(value)
    if number is None or math.isnan(number):
        shown = f"{_show_value(value)} is not a number ({check} {plain(bound)})"
        return result(check, False, f"{result.target} {shown}")
    shown, shown_bound = _distinct(value, number, bound)
    is_min = check == "min"
    failed = number < bound if is_min else number > bound
    relation = ("<" if is_min else ">") if failed else ("≥" if is_min else "≤")
    return result(check, not failed, f"{result.target} {shown} {relation} {check} {shown_bound}")


def _check_move(
    result: _Result, check: str, baseline: object, value: object, bound: Bound
) -> GateResult:
    """`max_drop` (how far the value fell) or `max_rise` (how far it rose)."""
    base = _number(baseline)
    if base is None or not math.isfinite(base):
        why = "no baseline" if baseline is None else f"baseline {_show_value(baseline)}"
        return result(check, True, f"{result.target} {why}, {check} not checked")
    number = _number(value)
    if number is None or math.isnan(number):
        shown = f"{_show_value(value)} is not a number ({check} {bound})"
        return result(check, False, f"{result.target} {shown}")
    dropping = check == "max_drop"
    moved = base - number if dropping else number - base
    span = f"({format_number(baseline)} → {format_number(value)})"
    if moved <= 0:
        no_move = "no drop" if dropping else "no rise"
        return result(check, True, f"{result.target} {span} {no_move} ({check} {bound})")
    verb = "dropped" if dropping else "rose"
    if bound.relative and base:
        amount = format_percent(moved / abs(base)).lstrip("+")
    elif _is_int(baseline) and _is_int(value) and math.isfinite(moved):
        amount = format_number(round(moved))
    else:
        amount = format_number(moved)
    limit = bound.limit(base)
    if moved > limit and not math.isclose(moved, limit, rel_tol=1e-9, abs_tol=1e-12):
        return result(check, False, f"{result.target} {verb} {amount} {span} > {check} {bound}")
    return result(check, True, f"{result.target} {verb} {amount} {span} ≤ {check} {bound}")


def _within(result: GateResult, value: object, spread: Range | None) -> GateResult:
    """`outside_range = true`: a failed move check passes when the value lies inside
    the base branch's range (noise, not a regression)."""
    number = _number(value)
    if result.passed or spread is None or number is None or not spread.contains(number):
        return result
    inside = f"within the base branch's range {format_range(spread.low, spread.high)}"
    return replace(result, passed=True, reason=f"{result.reason}, but {inside} (outside_range)")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> float | None:
    """A metric value as a float (bools are 0 and 1); None for anything else."""
    if not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf if value > 0 else -math.inf


def _show_value(value: object) -> str:
    if value is None or isinstance(value, int | float):
        return format_number(value)
    return show(str(value))


def _distinct(value: object, number: float, bound: float) -> tuple[str, str]:
    """The value as reports show it and the bound as written in the config, with more
    digits for the value when its short form would read as the bound itself."""
    shown = format_number(value)
    try:
        looks_equal = float(shown) == bound
    except ValueError:  # `true` / `false`
        looks_equal = False
    if looks_equal and number != bound:
        shown = f"{number:.12g}"
    return shown, plain(bound)
