"""`nbci diff`: a comparison as a markdown table (like `dvc metrics diff`) or as JSON.

The markdown leads with what a reviewer must not miss (jobs newly failing,
then the gate verdict when there is one), then a one-line count of
regressions and improvements, then `Job | Metric | Base | Head | Change`.
`-` marks a missing value. The change column says it in words (improved,
**regressed**) next to an arrow for the way the number moved (▲ up, ▼ down),
so nothing depends on colour. Unchanged metrics are hidden unless `show_all`,
with a line saying how many. Everything a notebook named is escaped.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from nbci.model import Change, Comparison, JobChange, MetricDelta, MetricValue, Verdict
from nbci.render.escape import escape_cell, escape_markdown, truncate
from nbci.render.numbers import format_delta, format_number, format_percent

DIFF_SCHEMA = "nbci.diff/1"
MISSING = "-"
_MAX_TEXT_VALUE = 80
_CHANGE_ORDER: tuple[Change, ...] = (
    "regressed",
    "improved",
    "changed",
    "added",
    "removed",
    "unchanged",
)


def diff_markdown(
    comparison: Comparison, *, show_all: bool = False, verdict: Verdict | None = None
) -> str:
    """The comparison as markdown for a terminal or a PR; ends with a newline."""
    parts = [f"### nbci diff against {escape_markdown(comparison.baseline_label)}"]
    parts += _job_lines(comparison.jobs)
    if verdict is not None:
        parts.append(verdict_markdown(verdict, show_all=show_all))
    parts.append(_metrics_markdown(comparison.deltas, show_all=show_all))
    return "\n\n".join(p for p in parts if p) + "\n"


def verdict_markdown(verdict: Verdict, *, show_all: bool = False) -> str:
    """The gates' verdict: one line, then every failure (and every pass with `show_all`)."""
    total = len(verdict.results)
    if not total:
        return "**Gates: passed** (no gate applies)"
    failures = verdict.failures
    if failures:
        head = f"**Gates: FAILED**: {len(failures)} of {total} checks failed"
    else:
        head = f"**Gates: passed**: all {total} checks passed"
    shown = verdict.results if show_all else failures
    lines = [
        f"- {'✓ pass' if r.passed else '✗ **FAIL**'}: {escape_markdown(r.reason)}" for r in shown
    ]
    return "\n".join([head, *lines]) if lines else head


def diff_json(comparison: Comparison, *, verdict: Verdict | None = None) -> dict[str, Any]:
    """The whole comparison for machines (`nbci diff --json`), unchanged metrics included.

    Plain JSON types only: a NaN or infinite value is the string `"NaN"`,
    `"inf"` or `"-inf"`, so `json.dumps(..., allow_nan=False)` works.
    """
    data: dict[str, Any] = {
        "schema": DIFF_SCHEMA,
        "baseline": comparison.baseline_label,
        "summary": _summary_counts(comparison.deltas),
        "added_jobs": list(comparison.added_jobs),
        "removed_jobs": list(comparison.removed_jobs),
        "newly_failing": list(comparison.newly_failing),
        "jobs": [
            {
                "id": job.job_id,
                "baseline_status": job.baseline_status,
                "status": job.status,
                "newly_failing": job.newly_failing,
                "fixed": job.fixed,
            }
            for job in comparison.jobs
        ],
        "metrics": [
            {
                "job": d.job_id,
                "metric": d.metric,
                "baseline": _json_value(d.baseline),
                "value": _json_value(d.value),
                "absolute": _json_value(d.absolute),
                "relative": _json_value(d.relative),
                "direction": d.direction,
                "change": d.change,
            }
            for d in comparison.deltas
        ],
    }
    if verdict is not None:
        data["gates"] = {
            "passed": verdict.passed,
            "results": [
                {
                    "rule": r.rule,
                    "job": r.job_id,
                    "metric": r.metric,
                    "check": r.check,
                    "passed": r.passed,
                    "reason": r.reason,
                }
                for r in verdict.results
            ],
        }
    return data


# -- markdown pieces -------------------------------------------------------------


def _job_lines(jobs: tuple[JobChange, ...]) -> list[str]:
    """Newly failing first (bold), then fixed, other status changes, added, removed."""
    groups: list[tuple[str, list[JobChange]]] = [
        ("**Newly failing**", [j for j in jobs if j.newly_failing]),
        ("Fixed", [j for j in jobs if j.fixed]),
        (
            "Status changed",
            [
                j
                for j in jobs
                if None not in (j.status, j.baseline_status) and not (j.newly_failing or j.fixed)
            ],
        ),
    ]
    lines = [
        f"{title}: {', '.join(_status_change(j) for j in group)}"
        for title, group in groups
        if group
    ]
    added = [escape_markdown(j.job_id) for j in jobs if j.baseline_status is None]
    removed = [escape_markdown(j.job_id) for j in jobs if j.status is None]
    if added:
        lines.append(f"Added jobs: {', '.join(added)}")
    if removed:
        lines.append(f"Removed jobs: {', '.join(removed)}")
    return ["  \n".join(lines)] if lines else []


def _status_change(job: JobChange) -> str:
    was, now = escape_markdown(job.baseline_status), escape_markdown(job.status)
    return f"{escape_markdown(job.job_id)} ({was} → {now})"


def _metrics_markdown(deltas: tuple[MetricDelta, ...], *, show_all: bool) -> str:
    if not deltas:
        return "No metrics in either run."
    counts = _summary_counts(deltas)
    rows = [d for d in deltas if show_all or d.change != "unchanged"]
    summary = _summary_line(counts)
    if not rows:
        return (
            f"{summary}\n\nEvery metric is unchanged ({counts['unchanged']}); `--all` lists them."
        )
    table = [
        "| Job | Metric | Base | Head | Change |",
        "|---|---|--:|--:|---|",
        *(_row(d) for d in rows),
    ]
    parts = [summary, "\n".join(table)]
    hidden = len(deltas) - len(rows)
    if hidden:
        what = (
            "metric hidden; `--all` shows it"
            if hidden == 1
            else "metrics hidden; `--all` shows them"
        )
        parts.append(f"{hidden} unchanged {what}.")
    return "\n\n".join(parts)


def _summary_line(counts: dict[str, int]) -> str:
    words = [
        f"**{n} regressed**" if change == "regressed" else f"{n} {change}"
        for change in _CHANGE_ORDER
        if (n := counts[change])
    ]
    return ", ".join(words) + "."


def _row(delta: MetricDelta) -> str:
    cells = (
        escape_cell(delta.job_id),
        escape_cell(delta.metric),
        _value_cell(delta.baseline),
        _value_cell(delta.value),
        _change_cell(delta),
    )
    return "| " + " | ".join(cells) + " |"


def _value_cell(value: MetricValue | None) -> str:
    if value is None:
        return MISSING
    if isinstance(value, int | float):
        return format_number(value)
    return escape_cell(truncate(str(value), _MAX_TEXT_VALUE))


def _change_cell(delta: MetricDelta) -> str:
    """`**regressed** ▼ -0.03000 (-3.2%)`: the verdict in words, then the move."""
    change = delta.change
    if change in ("added", "removed", "unchanged"):
        return change
    move = _move(delta)
    word = {"improved": "improved", "regressed": "**regressed**"}.get(change)
    if word is None:  # a neutral metric: the move says it, or `changed` when it cannot
        return move or "changed"
    if not move:  # one side is NaN (or not a number)
        move = _nan_side(delta)
    return f"{word} {move}".strip()


def _nan_side(delta: MetricDelta) -> str:
    if _is_nan(delta.value):
        return "now NaN"
    if _is_nan(delta.baseline):
        return "was NaN"
    return ""


def _move(delta: MetricDelta) -> str:
    absolute = delta.absolute
    if absolute is None or math.isnan(absolute):
        return ""
    arrow = "▲" if absolute > 0 else "▼"
    percent = format_percent(delta.relative)
    return f"{arrow} {format_delta(absolute)}" + (f" ({percent})" if percent else "")


def _summary_counts(deltas: tuple[MetricDelta, ...]) -> dict[str, int]:
    counts = Counter(d.change for d in deltas)
    return {change: counts.get(change, 0) for change in _CHANGE_ORDER}


def _json_value(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return format_number(value)
    return value


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
