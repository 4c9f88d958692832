"""`nbci diff`: a comparison as markdown (like `dvc metrics diff`) or as JSON.

The markdown is drawn from the same view and wording as the reports
(`nbci.render.build.build_diff_view`): what needs attention first (gate
failures, jobs newly failing or fixed, jobs added or removed, parameters that
differ), the gates' tally when they were asked for, a count of changes, then
the report's comparison table. Unchanged metrics are hidden unless `show_all`,
with a line saying how many. Everything a notebook named is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from nbci.model import CodeChange, Comparison, Range, Verdict
from nbci.render.build import build_diff_view
from nbci.render.cell_diff import code_view
from nbci.render.escape import escape_markdown, fenced
from nbci.render.markdown import gfm_table
from nbci.render.view import DiffView
from nbci.vocabulary import (
    CHANGE_ORDER,
    CHANGE_WORD,
    NOTICE_ICON,
    change_counts,
    json_number,
)

DIFF_SCHEMA = "nbci.diff/1"


def diff_markdown(
    comparison: Comparison,
    *,
    show_all: bool = False,
    verdict: Verdict | None = None,
    code: Sequence[CodeChange] = (),
) -> str:
    """The comparison as markdown for a terminal or a PR; ends with a newline.

    `code`: the notebooks' changed code cells (`nbci.code_changes`), listed with their diff.
    """
    view = build_diff_view(comparison, verdict)
    parts = [f"### nbci diff against {escape_markdown(view.baseline_label)}"]
    if view.notices:
        parts.append(
            "\n".join(f"- {NOTICE_ICON[n.kind]} {escape_markdown(n.text)}" for n in view.notices)
        )
    if code:
        parts.append(_code_markdown(code))
    if verdict is not None:
        parts.append(_gates_markdown(view, show_all=show_all))
    parts.append(_metrics_markdown(view, show_all=show_all))
    return "\n\n".join(p.rstrip("\n") for p in parts if p) + "\n"


def for_terminal(markdown: str) -> str:
    """`diff_markdown`'s text for a terminal, where nothing renders it: `&gt;` shown as `>`.

    The entities are the escaper's own (`<`, `>`, `&`, `"` of untrusted text, whose
    control characters were dropped before), so unescaping them brings none back.
    """
    return html.unescape(markdown)


def _code_markdown(code: Sequence[CodeChange]) -> str:
    """`**Code changes**`, a line per notebook, then the diff of its changed cells."""
    parts = ["**Code changes**"]
    for change in code:
        view = code_view(change)
        parts.append(f"- {escape_markdown(change.job_id)}: {escape_markdown(view.summary)}")
        parts.append(fenced(view.unified, "diff"))
    return "\n\n".join(parts)


def _gates_markdown(view: DiffView, *, show_all: bool) -> str:
    """The gates' tally; with `show_all` every result (failures are notices already)."""
    head = f"**Gates: {view.gates_summary}**"
    if not show_all or view.gates is None:
        return head
    rows = [*view.gates.rows, *view.gates.folded]
    return f"{head}\n\n{gfm_table(view.gates, rows)}"


def _metrics_markdown(view: DiffView, *, show_all: bool) -> str:
    table = view.metrics
    if not table.size:
        return "No metrics in either run."
    summary = _summary_line(view)
    rows = [*table.rows, *table.folded] if show_all else list(table.rows)
    if not rows:
        unchanged = view.counts["unchanged"]
        return f"{summary}\n\nEvery metric is unchanged ({unchanged}); `--all` lists them."
    parts = [summary, gfm_table(table, rows)]
    hidden = table.size - len(rows)
    if hidden:
        what = (
            "metric hidden; `--all` shows it"
            if hidden == 1
            else "metrics hidden; `--all` shows them"
        )
        parts.append(f"{hidden} unchanged {what}.")
    return "\n\n".join(p.rstrip("\n") for p in parts)


def _summary_line(view: DiffView) -> str:
    """`**2 regressed**, 1 improved, 4 unchanged.`"""
    words = [
        f"**{n} {CHANGE_WORD[change]}**" if change == "regressed" else f"{n} {CHANGE_WORD[change]}"
        for change in CHANGE_ORDER
        if (n := view.counts[change])
    ]
    return ", ".join(words) + "."


def diff_json(
    comparison: Comparison, *, verdict: Verdict | None = None, code: Sequence[CodeChange] = ()
) -> dict[str, Any]:
    """The whole comparison for machines (`nbci diff --json`), unchanged metrics included.

    Plain JSON types only: a NaN or infinite value is spelled as in results.json
    (`"NaN"`, `"Infinity"`, `"-Infinity"`), so `json.dumps(..., allow_nan=False)` works.
    With history, each metric carries its `range` (or null) and whether this
    run's value is `inside_range`. `code_changes`: each notebook's changed code cells,
    by kind and `In [N]` (null on the side it is absent from), with the unified diff of
    its source.
    """
    counts = change_counts(comparison.deltas)
    data: dict[str, Any] = {
        "schema": DIFF_SCHEMA,
        "baseline": comparison.baseline_label,
        "history_runs": comparison.history_runs,
        "summary": dict(counts),
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
        "parameters": [
            {
                "job": p.job_id,
                "name": p.name,
                "baseline": p.baseline,
                "value": p.value,
                "baseline_origin": p.baseline_origin,
                "origin": p.origin,
            }
            for p in comparison.parameters
        ],
        "code_changes": [_code_json(change) for change in code],
        "metrics": [
            {
                "job": d.job_id,
                "metric": d.metric,
                "baseline": json_number(d.baseline),
                "value": json_number(d.value),
                "absolute": json_number(d.absolute),
                "relative": json_number(d.relative),
                "direction": d.direction,
                "change": d.change,
                "range": _range_json(d.range),
                "inside_range": d.inside_range,
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


def _code_json(change: CodeChange) -> dict[str, Any]:
    view = code_view(change)
    return {
        "job": change.job_id,
        "summary": view.summary,
        "cells": [
            {
                "kind": cell.kind,
                "number": cell.number,
                "baseline_number": cell.baseline_number,
                "diff": shown.unified,
            }
            for cell, shown in zip(change.cells, view.cells, strict=True)
        ],
    }


def _range_json(found: Range | None) -> dict[str, Any] | None:
    """The base branch's range of a metric: bounds, median and the values it rests on."""
    if found is None:
        return None
    return {
        "low": found.low,
        "high": found.high,
        "median": found.median,
        "runs": len(found.values),
    }
