"""Gates: pass/fail rules on metrics, from `[tool.nbci.gates]`.

```toml
[tool.nbci.gates]
accuracy = { min = 0.9, max_drop = "1%" }     # every job that has `accuracy`
"train:loss" = { max = 0.5, max_rise = 0.05 } # job `train` only
"*f1*" = { required = true }                  # globs on either part
```

A key is `METRIC` or `JOB_ID:METRIC` (split at the first `:`; job ids never
hold one); either part may be a glob (`fnmatch`, case-sensitive), matched
against the whole metric name. Checks, each giving one `GateResult`:

- `min` / `max`: absolute bounds on the value; NaN, or a value that is not a
  number, fails them.
- `max_drop` / `max_rise`: how far the value may fall / rise against the
  baseline, whatever the metric's direction: a number (absolute) or `"N%"`
  (of |baseline|; against a zero baseline any move that way fails). Without
  a baseline value (no baseline run, new metric, NaN or infinite baseline)
  the check passes with the reason saying so.
- `required = true`: the metric must be there. For `JOB:METRIC` the job part
  must match at least one job, and every job it matches must have a matching
  metric. For a bare `METRIC` at least one job must have it. A shard run
  (`--shard`) does not fail for what may sit in another shard.

A job that is not `ok` fails its gates: every rule whose job part matches it,
and every bare rule unless the baseline shows the same job, `ok`, without a
matching metric (so a failing data-prep notebook does not fail the `accuracy`
gate of a run whose baseline proves it never had one; without a baseline it
does, since nothing proves otherwise). A metric that is simply absent from an
`ok` job fails nothing unless `required`.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nbci.errors import GateRuleError
from nbci.model import (
    Comparison,
    GateResult,
    MetricValue,
    NotebookResult,
    Run,
    Status,
    Verdict,
)
from nbci.render.numbers import format_number, format_percent

logger = logging.getLogger(__name__)

RULE_KEYS = ("min", "max", "max_drop", "max_rise", "required")
_GLOB_CHARS = frozenset("*?[")
_WHY_NOT_OK = {
    "failed": "job failed",
    "timeout": "job timed out",
    "died": "kernel died",
    "invalid": "job is invalid",
    "interrupted": "run was interrupted",
}


@dataclass(frozen=True)
class Bound:
    """A `max_drop` / `max_rise` limit: absolute, or a percentage of |baseline|."""

    value: float
    relative: bool = False

    def limit(self, baseline: float) -> float:
        return self.value / 100 * abs(baseline) if self.relative else self.value

    def __str__(self) -> str:
        return f"{_plain(self.value)}%" if self.relative else _plain(self.value)


@dataclass(frozen=True)
class GateRule:
    """One parsed rule of `[tool.nbci.gates]`."""

    key: str
    """As written: `METRIC`, `JOB_ID:METRIC`, or a glob on either part."""
    min: float | None = None
    max: float | None = None
    max_drop: Bound | None = None
    max_rise: Bound | None = None
    required: bool = False

    @property
    def job_pattern(self) -> str | None:
        """The part before the first `:`; None for a bare metric rule."""
        job, sep, _ = self.key.partition(":")
        return job if sep else None

    @property
    def metric_pattern(self) -> str:
        return self.key.partition(":")[2] if ":" in self.key else self.key

    def matches_job(self, job_id: str) -> bool:
        pattern = self.job_pattern
        return pattern is None or fnmatch.fnmatchcase(job_id, pattern)

    def matches_metric(self, metric: str) -> bool:
        return fnmatch.fnmatchcase(metric, self.metric_pattern)


# -- parsing -------------------------------------------------------------------


def parse_gates(
    table: Mapping[str, Any], source: str, *, table_name: str = "[tool.nbci.gates]"
) -> tuple[GateRule, ...]:
    """Validate the gates table; `source` (the file) and `table_name` (`[gates]` in
    an nbci.toml) say where in error messages.

    Raises `GateRuleError` (`<source>: <table_name> "<key>": <what is wrong>,
    <what is expected>`) for anything that is not a valid rule.
    """
    where = f"{source}: {table_name}"
    if not isinstance(table, Mapping):
        raise GateRuleError(f"{where} must be a table of rules, got {_kind(table)}")
    return tuple(_parse_rule(key, value, f"{where} {_show(key)}") for key, value in table.items())


def _parse_rule(key: object, value: object, where: str) -> GateRule:
    if not isinstance(key, str) or not key:
        raise GateRuleError(f"{where}: a rule needs a key like accuracy or train:loss")
    job, sep, metric = key.partition(":")
    if sep and (not job or not metric):
        raise GateRuleError(f"{where}: expected METRIC or JOB_ID:METRIC, both parts non-empty")
    if not isinstance(value, Mapping):
        raise GateRuleError(
            f'{where}: expected a table like {{ min = 0.9, max_drop = "1%" }}, got {_kind(value)}'
        )
    for name in value:
        if name not in RULE_KEYS:
            raise GateRuleError(f"{where}: unknown key {_show(name)}{_did_you_mean(name)}")
    rule = GateRule(
        key=key,
        min=_absolute(value, "min", where),
        max=_absolute(value, "max", where),
        max_drop=_bound(value, "max_drop", where),
        max_rise=_bound(value, "max_rise", where),
        required=_required(value, where),
    )
    if rule.min is not None and rule.max is not None and rule.min > rule.max:
        raise GateRuleError(f"{where}: min {_plain(rule.min)} is above max {_plain(rule.max)}")
    bounds = (rule.min, rule.max, rule.max_drop, rule.max_rise)
    if not rule.required and all(b is None for b in bounds):
        raise GateRuleError(
            f"{where}: the rule checks nothing; expected at least one of "
            "min, max, max_drop, max_rise, required = true"
        )
    return rule


def _absolute(rule: Mapping[Any, Any], name: str, where: str) -> float | None:
    value = rule.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        raise GateRuleError(
            f"{where}: {name} = {_show(value)}: {name} is an absolute bound and takes a "
            "number; a % bound is only for max_drop or max_rise"
        )
    return _finite(value, name, where, expected="a number")


def _bound(rule: Mapping[Any, Any], name: str, where: str) -> Bound | None:
    value = rule.get(name)
    if value is None:
        return None
    expected = 'a number (absolute) or a percentage string like "1%"'
    if isinstance(value, str):
        percent = _percentage(value)
        if percent is None:
            raise GateRuleError(f"{where}: {name} = {_show(value)}: expected {expected}")
        bound = Bound(percent, relative=True)
    else:
        bound = Bound(_finite(value, name, where, expected=expected))
    if bound.value < 0:
        raise GateRuleError(f"{where}: {name} = {_show(value)}: expected {expected}, not negative")
    return bound


def _percentage(text: str) -> float | None:
    """`"1.5%"` → 1.5; None unless a finite number followed by `%`."""
    text = text.strip()
    if not text.endswith("%"):
        return None
    try:
        number = float(text[:-1])
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _required(rule: Mapping[Any, Any], where: str) -> bool:
    value = rule.get("required", False)
    if not isinstance(value, bool):
        raise GateRuleError(f"{where}: required = {_show(value)}: expected true or false")
    return value


def _finite(value: object, name: str, where: str, *, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateRuleError(f"{where}: {name} = {_show(value)}: expected {expected}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise GateRuleError(f"{where}: {name} = {_show(value)}: expected a finite number")
    return number


def _did_you_mean(name: object) -> str:
    close = difflib.get_close_matches(str(name), RULE_KEYS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{hint}; expected one of {', '.join(RULE_KEYS)}"


def _show(value: object) -> str:
    """A config key or value for a one-line message: strings quoted, no control characters."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value)
    text = _printable(text)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _printable(text: str) -> str:
    """`text` on one line: newlines and other control characters as escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


# -- evaluation ----------------------------------------------------------------


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
    return Verdict(tuple(results))


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

    @classmethod
    def of(cls, comparison: Comparison | None) -> _Baseline:
        if comparison is None:
            return cls(known=False, values={}, metrics={}, changed_status={})
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
        if rule.max_drop is not None:
            yield _check_move(result, "max_drop", base, value, rule.max_drop)
        if rule.max_rise is not None:
            yield _check_move(result, "max_rise", base, value, rule.max_rise)
    if rule.required and not metrics and rule.job_pattern is not None:
        result = _Result(rule, nb.id, rule.metric_pattern)
        what = "no metric matches" if _is_glob(rule.metric_pattern) else "missing"
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
        what = f"no job matches {job_pattern}" if _is_glob(job_pattern) else "no such job"
    elif any(rule.matches_metric(m) for nb in run.notebooks for m in nb.metrics):
        return
    else:
        what = "no job has a matching metric" if _is_glob(rule.key) else "no job has it"
    if run.shard is not None:
        logger.debug(
            "gate %s: %s in shard %s; checked on the merged run", rule.key, what, run.shard
        )
        return
    reason = f"{_printable(rule.key)} missing: {_printable(what)}"
    yield GateResult(rule.key, "", rule.metric_pattern, False, reason, check="required")


def _fail_not_ok(rule: GateRule, nb: NotebookResult, baseline: _Baseline) -> Iterator[GateResult]:
    """One failure per metric the rule would have checked (or one for the rule's pattern)."""
    known = dict.fromkeys([*nb.metrics, *baseline.metrics.get(nb.id, ())])
    matching = [m for m in known if rule.matches_metric(m)]
    why = _WHY_NOT_OK.get(nb.status, f"job {nb.status}")
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
        return _printable(f"{self.job_id}:{self.metric}")

    def __call__(self, check: str, passed: bool, reason: str) -> GateResult:
        return GateResult(self.rule.key, self.job_id, self.metric, passed, reason, check=check)


def _check_bound(result: _Result, check: str, value: object, bound: float) -> GateResult:
    """`min` or `max`: an absolute bound; NaN or a value that is not a number fails."""
    number = _number(value)
    if number is None or math.isnan(number):
        shown = f"{_show_value(value)} is not a number ({check} {_plain(bound)})"
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
    return _show(str(value))


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
    return shown, _plain(bound)


def _plain(number: float) -> str:
    """A number from the config, as the user would have written it: `0.93`, `1`, `1e-06`."""
    return f"{number:.12g}"


def _is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)
