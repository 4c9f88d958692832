"""A Code Insights report (Bitbucket): the verdict, headline metrics as data, findings.

Where a forge has a place for a structured report beside its commit status
(Bitbucket's Code Insights, shown in the pull request's Reports panel), the
same verdict is posted there too: its one-line description as the title, the
counts and the headline metrics (the compared metrics first, else the run's
own) as report data, and one annotation per failed notebook (on its path)
and per failed gate. What goes in is decided here once; the forge
(`PostsInsights`) maps it onto its API and its limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from nbci.model import Comparison, MetricValue, Run, Verdict, passed
from nbci.publish.status import describe
from nbci.vocabulary import status_label

DataType = Literal["NUMBER", "BOOLEAN", "TEXT"]
MAX_DATA = 10
"""Bitbucket Cloud's limit of report data fields (Data Center shows 6)."""
MAX_FINDINGS = 1000
"""Bitbucket's limit of annotations a report (Cloud and Data Center alike)."""


@dataclass(frozen=True)
class DataField:
    title: str
    type: DataType
    value: int | float | bool | str


@dataclass(frozen=True)
class Finding:
    """One annotation: a failed notebook (with its path) or a failed gate."""

    key: str
    """Unique within the report, stable between publishes."""
    summary: str
    path: str | None = None


@dataclass(frozen=True)
class Insight:
    passed: bool
    title: str
    data: tuple[DataField, ...]
    findings: tuple[Finding, ...]


@runtime_checkable
class PostsInsights(Protocol):
    """A forge that also posts the verdict as a structured report (Bitbucket)."""

    def post_insights(self, sha: str, *, name: str, insight: Insight) -> None: ...


def build_insight(run: Run, verdict: Verdict | None, comparison: Comparison | None) -> Insight:
    """What the report says about `run`; at most `MAX_DATA` fields and `MAX_FINDINGS` findings."""
    total = len(run.notebooks)
    ok = sum(1 for nb in run.notebooks if nb.ok)
    data = [
        DataField("Notebooks passed", "NUMBER", ok),
        DataField("Notebooks failed", "NUMBER", total - ok),
    ]
    if verdict is not None and verdict.results:
        data.append(DataField("Gates failed", "NUMBER", len(verdict.failures)))
    data += _headline_metrics(run, comparison)[: MAX_DATA - len(data)]
    return Insight(
        passed=passed(run, verdict),
        title=describe(run, verdict, comparison),
        data=tuple(data),
        findings=tuple(_findings(run, verdict)[:MAX_FINDINGS]),
    )


def _headline_metrics(run: Run, comparison: Comparison | None) -> list[DataField]:
    """`job: metric` values, those compared with the baseline first."""
    seen: set[tuple[str, str]] = set()
    fields = []
    pairs: list[tuple[str, str, MetricValue | None]] = [
        (d.job_id, d.metric, d.value) for d in (comparison.deltas if comparison else ())
    ]
    pairs += [(nb.id, name, value) for nb in run.notebooks for name, value in nb.metrics.items()]
    for job, metric, value in pairs:
        if value is None or (job, metric) in seen:
            continue
        seen.add((job, metric))
        kind: DataType = "BOOLEAN" if isinstance(value, bool) else "NUMBER"
        fields.append(DataField(f"{job}: {metric}", kind, value))
    return fields


def _findings(run: Run, verdict: Verdict | None) -> list[Finding]:
    paths = {nb.id: nb.path for nb in run.notebooks}
    found = []
    for nb in run.notebooks:
        if not nb.ok:
            why = nb.error.summary if nb.error is not None else ""
            summary = f"{nb.id}: {status_label(nb.status)}" + (f" ({why})" if why else "")
            found.append(Finding(f"notebook-{nb.id}", summary, nb.path))
    for i, gate in enumerate(verdict.failures if verdict else ()):
        if gate.check == "status":
            continue  # the notebook's own finding says it
        summary = f"gate failed: {gate.reason}"
        found.append(Finding(f"gate-{i + 1}", summary, paths.get(gate.job_id)))
    return found
