"""What a report shows, as plain dataclasses built from a `Run` (+ comparison, verdict).

The view decides *what* is shown and in which order; the markdown and HTML
templates only decide *how*. Every string in a view is plain, unescaped text
(much of it came from a notebook): the renderers escape all of it, and the
templates add every bit of markup themselves. Numbers are formatted here, once,
with `nbci.render.numbers`.

Sizes are capped for the HTML report (which has no hard limit but should stay
sane); the markdown renderer trims further to fit a PR comment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from nbci.model import (
    Comparison,
    ErrorInfo,
    MetricDelta,
    NotebookResult,
    Run,
    Scrap,
    ScrapKind,
    Status,
    Verdict,
)
from nbci.render.escape import clean_text, truncate, truncate_middle
from nbci.render.numbers import format_delta, format_duration, format_number, format_percent

Tone = Literal["plain", "better", "worse", "muted", "strong"]
Align = Literal["left", "right"]
NoticeKind = Literal["fail", "warn", "info", "pass"]

TRACEBACK_CHARS = 200_000
"""A traceback longer than this is cut in the middle (HTML; markdown cuts more)."""
TEXT_CHARS = 20_000
JSON_CHARS = 20_000
HTML_SCRAP_CHARS = 500_000
TABLE_ROWS = 200
TABLE_COLUMNS = 40
CELL_CHARS = 300
NAME_CHARS = 200
PARAM_CHARS = 200
WIDE_METRICS = 8
"""Up to this many shared metrics are columns of one wide table (one row per notebook)."""

STATUS_LABEL: Mapping[Status, str] = {
    "ok": "passed",
    "failed": "failed",
    "timeout": "timed out",
    "died": "kernel died",
    "invalid": "invalid",
    "interrupted": "interrupted",
}

CHANGE_ORDER = {"regressed": 0, "improved": 1, "changed": 2, "added": 3, "removed": 4}


@dataclass(frozen=True)
class Cell:
    text: str
    tone: Tone = "plain"
    status: Status | None = None
    """Set on a notebook cell: the renderer shows the status icon before the text."""
    anchor: str | None = None
    """Set on a notebook cell: links to that notebook's section (HTML)."""


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    align: tuple[Align, ...]
    folded: tuple[tuple[Cell, ...], ...] = ()
    """Rows shown collapsed (unchanged metrics, passed gates)."""
    folded_label: str = ""
    note: str = ""
    """What the table does not show (`showing 200 of 1,234 rows`)."""
    title: str = ""

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.folded)


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    text: str


@dataclass(frozen=True)
class VerdictView:
    passed: bool
    headline: str
    """`2 of 3 notebooks failed`, `All 3 notebooks passed`."""
    facts: tuple[str, ...]
    """Short counts after the headline: `1 passed`, `1 cached`, `gates: 2 of 6 failed`."""
    gates: str = ""
    """`2 of 6 failed`, `all 6 passed`; empty without gates."""


@dataclass(frozen=True)
class ErrorView:
    summary: str
    """`ename: evalue`, or the message."""
    cell: int | None
    traceback: str
    """Possibly cut in the middle (`traceback_omitted` characters left out)."""
    traceback_omitted: int = 0


@dataclass(frozen=True)
class FigureView:
    name: str
    path: str
    """Relative to the output directory: `figures/<job>/<name>.png`."""
    in_baseline: bool = False
    """The baseline run has a figure at the same path: show them side by side."""


@dataclass(frozen=True)
class ScrapView:
    name: str
    kind: ScrapKind
    text: str = ""
    """`text` scraps, and `json` scraps pretty-printed."""
    table: Table | None = None
    html: str = ""
    """Untrusted HTML: only the HTML renderer shows it, after sanitising."""
    note: str = ""


@dataclass(frozen=True)
class NotebookView:
    id: str
    anchor: str
    path: str
    status: Status
    status_label: str
    cached: bool
    duration: str
    parameters: tuple[tuple[str, str], ...]
    output: str | None
    html: str | None
    error: ErrorView | None
    metrics: Table | None
    """This notebook's own metrics (None when it has none)."""
    metrics_elsewhere: bool
    figures: tuple[FigureView, ...]
    scraps: tuple[ScrapView, ...]
    notes: tuple[str, ...]
    change: str = ""
    """Against the baseline: `fails now (passed on the baseline)`, `new notebook`, …"""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class ReportView:
    title: str
    verdict: VerdictView
    notices: tuple[Notice, ...]
    """What needs attention first: failed gates, newly failing notebooks, an interrupted run."""
    gates: Table | None
    metrics: tuple[Table, ...]
    """Tables across notebooks: one for a comparison; else one per group of notebooks
    that share their metrics (a parameter sweep). A notebook in none of them has its own."""
    notebooks: tuple[NotebookView, ...]
    jobs: Table
    """Every notebook with status, duration and cache state (for the run details)."""
    details: tuple[tuple[str, str], ...]
    packages: Table | None
    baseline_label: str | None = None
    removed_jobs: tuple[str, ...] = ()

    @property
    def metric_rows(self) -> int:
        return sum(table.size for table in self.metrics)

    @property
    def failures(self) -> tuple[NotebookView, ...]:
        return tuple(nb for nb in self.notebooks if not nb.ok)


def build_view(
    run: Run,
    *,
    comparison: Comparison | None = None,
    verdict: Verdict | None = None,
    base_figures: Collection[str] = (),
    title: str = "nbci",
) -> ReportView:
    """The report's content for `run`; `base_figures`: figure paths the baseline also has."""
    anchors = _anchors(nb.id for nb in run.notebooks)
    job_changes = _job_changes(comparison)
    metrics, in_tables = _metric_tables(run, comparison, anchors)
    notebooks = tuple(
        _notebook_view(
            nb,
            anchor=anchors[nb.id],
            comparison=comparison,
            base_figures=base_figures,
            change=job_changes.get(nb.id, ""),
            metrics_elsewhere=nb.id in in_tables,
        )
        for nb in run.notebooks
    )
    return ReportView(
        title=title,
        verdict=_verdict(run, comparison, verdict),
        notices=_notices(run, comparison, verdict),
        gates=_gates_table(verdict),
        metrics=metrics,
        notebooks=notebooks,
        jobs=_jobs_table(run, anchors),
        details=_details(run, comparison),
        packages=_packages_table(run),
        baseline_label=comparison.baseline_label if comparison else None,
        removed_jobs=comparison.removed_jobs if comparison else (),
    )


# -- verdict and notices -------------------------------------------------------


def _verdict(run: Run, comparison: Comparison | None, verdict: Verdict | None) -> VerdictView:
    counts = run.counts
    total = len(run.notebooks)
    not_ok = total - counts["ok"]
    gates_failed = len(verdict.failures) if verdict else 0
    passed = run.ok and gates_failed == 0
    noun = "notebook" if total == 1 else "notebooks"
    if total == 0:
        headline = "No notebooks ran"
    elif not_ok:
        headline = f"{not_ok} of {total} {noun} did not pass"
        if not_ok == counts["failed"]:
            headline = f"{not_ok} of {total} {noun} failed"
    elif gates_failed:
        headline = f"All {total} {noun} ran, {_count(gates_failed, 'gate')} failed"
    else:
        headline = "The notebook passed" if total == 1 else f"All {total} notebooks passed"
    if run.interrupted:
        headline = f"Interrupted: {headline[0].lower()}{headline[1:]}"

    facts = [f"{counts['ok']} passed"] if not_ok else []
    facts += [f"{n} {STATUS_LABEL[s]}" for s, n in counts.items() if n and s != "ok"]
    if run.cached_count:
        facts.append(f"{run.cached_count} cached")
    gates = ""
    if verdict and verdict.results:
        n = len(verdict.results)
        gates = f"{gates_failed} of {n} failed" if gates_failed else f"all {n} passed"
        facts.append(f"gates: {gates}")
    if comparison:
        facts.extend(_comparison_facts(comparison))
    return VerdictView(passed=passed, headline=headline, facts=tuple(facts), gates=gates)


def _comparison_facts(comparison: Comparison) -> list[str]:
    tally: dict[str, int] = {}
    for delta in comparison.deltas:
        tally[delta.change] = tally.get(delta.change, 0) + 1
    facts = []
    for change, singular, plural in (
        ("regressed", "regression", "regressions"),
        ("improved", "improvement", "improvements"),
    ):
        if tally.get(change):
            facts.append(f"{tally[change]} {singular if tally[change] == 1 else plural}")
    if not facts and comparison.deltas:
        facts.append("no metric regressed or improved")
    return facts


def _notices(
    run: Run, comparison: Comparison | None, verdict: Verdict | None
) -> tuple[Notice, ...]:
    notices: list[Notice] = []
    if run.interrupted:
        unfinished = run.counts["interrupted"]
        notices.append(
            Notice("warn", f"The run was interrupted; {_count(unfinished, 'notebook')} unfinished.")
        )
    if verdict:
        notices += [Notice("fail", f"Gate failed: {r.reason}") for r in verdict.failures]
    if comparison:
        for change in comparison.jobs:
            if change.newly_failing:
                label = STATUS_LABEL.get(change.status, "fails") if change.status else "fails"
                notices.append(
                    Notice("fail", f"{change.job_id} {label} now (passed on the baseline)")
                )
        for change in comparison.jobs:
            if change.fixed:
                notices.append(Notice("pass", f"{change.job_id} passes again"))
        if comparison.added_jobs:
            notices.append(
                Notice("info", "New, not in the baseline: " + ", ".join(comparison.added_jobs))
            )
        if comparison.removed_jobs:
            notices.append(
                Notice("warn", "Not in this run any more: " + ", ".join(comparison.removed_jobs))
            )
    return tuple(Notice(n.kind, clean_text(truncate(n.text, 2_000))) for n in notices)


def _job_changes(comparison: Comparison | None) -> dict[str, str]:
    if comparison is None:
        return {}
    changes = {}
    for change in comparison.jobs:
        if change.baseline_status is None:
            changes[change.job_id] = "new notebook (not in the baseline)"
        elif change.newly_failing:
            changes[change.job_id] = "newly failing: passed on the baseline"
        elif change.fixed:
            changes[change.job_id] = "fixed (did not pass on the baseline)"
    return changes


# -- metrics -------------------------------------------------------------------


def _metric_tables(
    run: Run, comparison: Comparison | None, anchors: Mapping[str, str]
) -> tuple[tuple[Table, ...], frozenset[str]]:
    """Tables across notebooks, and the ids of the notebooks whose metrics they show."""
    if comparison is not None:
        table = _comparison_table(comparison.deltas, anchors, with_job=True)
        return (table,), frozenset(nb.id for nb in run.notebooks)
    with_metrics = [nb for nb in run.notebooks if nb.metrics]
    if len(with_metrics) >= 2 and _is_shared(with_metrics):
        groups = [with_metrics]
    else:  # notebooks with the very same metrics, e.g. one notebook run with several parameters
        by_names: dict[tuple[str, ...], list[NotebookResult]] = {}
        for nb in with_metrics:
            by_names.setdefault(tuple(sorted(nb.metrics)), []).append(nb)
        groups = [group for group in by_names.values() if len(group) >= 2]
    titled = len(groups) > 1 or sum(map(len, groups)) < len(with_metrics)
    tables = tuple(_group_table(group, anchors, titled=titled) for group in groups)
    return tables, frozenset(nb.id for group in groups for nb in group)


def _group_table(
    notebooks: Sequence[NotebookResult], anchors: Mapping[str, str], *, titled: bool
) -> Table:
    names = _ordered_union(nb.metrics for nb in notebooks)
    if len(names) <= WIDE_METRICS:
        table = _wide_table(notebooks, names, anchors)
    else:
        table = _long_table(notebooks, anchors)
    if not titled:
        return table
    paths = list(dict.fromkeys(nb.path for nb in notebooks))
    title = paths[0] if len(paths) == 1 else ", ".join(nb.id for nb in notebooks)
    return replace(table, title=_name(title))


def _is_shared(notebooks: Sequence[NotebookResult]) -> bool:
    """Some metric is in two notebooks, and a wide table would be at most a third empty."""
    names = _ordered_union(nb.metrics for nb in notebooks)
    if not any(sum(name in nb.metrics for nb in notebooks) >= 2 for name in names):
        return False
    filled = sum(len(nb.metrics) for nb in notebooks)
    return filled * 3 >= 2 * len(notebooks) * len(names)


def _wide_table(
    notebooks: Sequence[NotebookResult], names: Sequence[str], anchors: Mapping[str, str]
) -> Table:
    with_params = any(nb.parameters for nb in notebooks)
    columns = ("Notebook", *(("Parameters",) if with_params else ()), *names)
    rows = []
    for nb in notebooks:
        cells = [_job_cell(nb.id, nb.status, anchors)]
        if with_params:
            cells.append(Cell(_parameters_text(nb.parameters)))
        cells += [
            Cell(format_number(nb.metrics[n])) if n in nb.metrics else Cell("–", "muted")
            for n in names
        ]
        rows.append(tuple(cells))
    align = ("left", *(("left",) if with_params else ()), *(("right",) * len(names)))
    return Table(_names(columns), tuple(rows), align)  # type: ignore[arg-type]


def _long_table(notebooks: Sequence[NotebookResult], anchors: Mapping[str, str]) -> Table:
    rows = tuple(
        (_job_cell(nb.id, nb.status, anchors), Cell(_name(name)), Cell(format_number(value)))
        for nb in notebooks
        for name, value in nb.metrics.items()
    )
    return Table(("Notebook", "Metric", "Value"), rows, ("left", "left", "right"))


def _comparison_table(
    deltas: Sequence[MetricDelta], anchors: Mapping[str, str], *, with_job: bool
) -> Table:
    """Changed metrics first (regressions, improvements, …); unchanged ones folded."""
    ordered = sorted(
        (d for d in deltas if d.change != "unchanged"), key=lambda d: CHANGE_ORDER[d.change]
    )
    unchanged = [d for d in deltas if d.change == "unchanged"]
    columns = (*(("Notebook",) if with_job else ()), "Metric", "Baseline", "This run", "Change")
    align = (*(("left",) if with_job else ()), "left", "right", "right", "right")

    def row(delta: MetricDelta) -> tuple[Cell, ...]:
        job = (_job_cell(delta.job_id, None, anchors),) if with_job else ()
        return (
            *job,
            Cell(_name(delta.metric)),
            _value_cell(delta.baseline),
            _value_cell(delta.value),
            _change_cell(delta),
        )

    folded_label = f"{_count(len(unchanged), 'unchanged metric')}" if unchanged else ""
    return Table(
        columns,
        tuple(row(d) for d in ordered),
        align,  # type: ignore[arg-type]
        folded=tuple(row(d) for d in unchanged),
        folded_label=folded_label,
    )


def _value_cell(value: object) -> Cell:
    return Cell("–", "muted") if value is None else Cell(format_number(value))


def _change_cell(delta: MetricDelta) -> Cell:
    change = delta.change
    if change == "added":
        return Cell("new", "muted")
    if change == "removed":
        return Cell("removed", "muted")
    if change == "unchanged":
        return Cell("no change", "muted")
    absolute = delta.absolute
    if absolute is None or math.isnan(absolute):
        return Cell("changed", "strong")
    marker = "▲" if absolute > 0 else "▼"
    whole = all(
        isinstance(v, int) and not isinstance(v, bool) for v in (delta.baseline, delta.value)
    )
    text = f"{marker} {format_delta(int(absolute) if whole else absolute)}"
    relative = format_percent(delta.relative)
    if relative:
        text += f" ({relative})"
    if change == "regressed":
        return Cell(f"{text} regressed", "worse")
    if change == "improved":
        return Cell(f"{text} improved", "better")
    return Cell(text)


def _notebook_metrics(
    nb: NotebookResult, comparison: Comparison | None, anchors: Mapping[str, str]
) -> Table | None:
    if comparison is not None:
        deltas = [d for d in comparison.deltas if d.job_id == nb.id]
        return _comparison_table(deltas, anchors, with_job=False) if deltas else None
    if not nb.metrics:
        return None
    rows = tuple((Cell(_name(k)), Cell(format_number(v))) for k, v in nb.metrics.items())
    return Table(("Metric", "Value"), rows, ("left", "right"))


# -- notebooks -----------------------------------------------------------------


def _notebook_view(
    nb: NotebookResult,
    *,
    anchor: str,
    comparison: Comparison | None,
    base_figures: Collection[str],
    change: str,
    metrics_elsewhere: bool,
) -> NotebookView:
    return NotebookView(
        id=_name(nb.id),
        anchor=anchor,
        path=_name(nb.path),
        status=nb.status,
        status_label=STATUS_LABEL.get(nb.status, str(nb.status)),
        cached=nb.cached,
        duration=format_duration(nb.duration_s),
        parameters=tuple((_name(k), _param_value(v)) for k, v in nb.parameters.items()),
        output=nb.output,
        html=nb.html,
        error=_error_view(nb.error) if nb.error or not nb.ok else None,
        metrics=_notebook_metrics(nb, comparison, {}),
        metrics_elsewhere=metrics_elsewhere,
        figures=tuple(
            FigureView(_name(f.name), f.path, in_baseline=f.path in base_figures)
            for f in nb.figures
        ),
        scraps=tuple(_scrap_view(name, scrap) for name, scrap in nb.scraps.items()),
        notes=tuple(clean_text(truncate(n, 1_000)) for n in nb.notes),
        change=change,
    )


def _error_view(error: ErrorInfo | None) -> ErrorView:
    if error is None:
        return ErrorView(summary="no error recorded", cell=None, traceback="")
    traceback, omitted = truncate_middle(error.traceback or "", TRACEBACK_CHARS)
    return ErrorView(
        summary=clean_text(truncate(error.summary, 5_000)),
        cell=error.cell,
        traceback=clean_text(traceback),
        traceback_omitted=omitted,
    )


def _scrap_view(name: str, scrap: Scrap) -> ScrapView:
    """Never raises: a malformed value is shown as JSON with a note."""
    name = _name(name)
    kind = scrap.kind
    if kind == "text" and isinstance(scrap.value, str):
        text, omitted = _cut(scrap.value, TEXT_CHARS)
        return ScrapView(name, "text", text=clean_text(text), note=_omitted_note(omitted))
    if kind == "html" and isinstance(scrap.value, str):
        html, omitted = _cut(scrap.value, HTML_SCRAP_CHARS)
        return ScrapView(name, "html", html=html, note=_omitted_note(omitted))
    if kind == "table":
        table = _scrap_table(scrap.value)
        if table is not None:
            return ScrapView(name, "table", table=table)
    text, omitted = _cut(_json_text(scrap.value), JSON_CHARS)
    return ScrapView(name, "json", text=text, note=_omitted_note(omitted))


def _scrap_table(value: Any) -> Table | None:
    if not isinstance(value, Mapping):
        return None
    columns, rows = value.get("columns"), value.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        return None
    total = value.get("total_rows")
    if isinstance(total, float):
        total = int(total) if math.isfinite(total) else 0
    total_rows = total if isinstance(total, int) and not isinstance(total, bool) else 0
    total_rows = max(total_rows, len(rows))
    shown_columns = columns[:TABLE_COLUMNS]
    width = len(shown_columns)
    body = []
    for raw in rows[:TABLE_ROWS]:
        cells = list(raw)[:width] if isinstance(raw, list) else [raw]
        cells += [""] * (width - len(cells))
        body.append(tuple(Cell(_table_value(c)) for c in cells))
    numeric = [
        all(
            isinstance(r[i], int | float)
            for r in rows[:TABLE_ROWS]
            if isinstance(r, list) and i < len(r)
        )
        for i in range(width)
    ]
    notes = []
    if total_rows > len(body):
        notes.append(f"showing {len(body):,} of {total_rows:,} rows")
    if len(columns) > width:
        notes.append(f"{width} of {len(columns):,} columns")
    return Table(
        columns=tuple(_table_value(c) for c in shown_columns),
        rows=tuple(body),
        align=tuple("right" if n and rows else "left" for n in numeric),
        note=", ".join(notes),
    )


def _table_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return format_number(value)
    if not isinstance(value, str):
        value = _json_text(value, indent=None)
    return clean_text(truncate(value, CELL_CHARS))


# -- run details ----------------------------------------------------------------


def _gates_table(verdict: Verdict | None) -> Table | None:
    if verdict is None or not verdict.results:
        return None

    def row(result: Any) -> tuple[Cell, ...]:
        outcome = Cell("passed", "better") if result.passed else Cell("failed", "worse")
        return (outcome, Cell(_name(result.rule)), Cell(clean_text(truncate(result.reason, 500))))

    failed = tuple(row(r) for r in verdict.results if not r.passed)
    passed = tuple(row(r) for r in verdict.results if r.passed)
    return Table(
        ("Result", "Rule", "Reason"),
        failed,
        ("left", "left", "left"),
        folded=passed,
        folded_label=_count(len(passed), "gate") + " passed" if passed else "",
    )


def _jobs_table(run: Run, anchors: Mapping[str, str]) -> Table:
    with_params = any(nb.parameters for nb in run.notebooks)
    rows = tuple(
        (
            _job_cell(nb.id, nb.status, anchors),
            Cell(_name(nb.path)),
            *((Cell(_parameters_text(nb.parameters)),) if with_params else ()),
            Cell(STATUS_LABEL.get(nb.status, nb.status), "plain" if nb.ok else "worse"),
            Cell("cached" if nb.cached else "ran", "muted" if nb.cached else "plain"),
            Cell(format_duration(nb.duration_s)),
        )
        for nb in run.notebooks
    )
    columns = ("Notebook", "Path", *(("Parameters",) if with_params else ()), "Status", "Cache")
    return Table(
        (*columns, "Time"),
        rows,
        (*(("left",) * len(columns)), "right"),  # type: ignore[arg-type]
    )


def _details(run: Run, comparison: Comparison | None) -> tuple[tuple[str, str], ...]:
    git = run.git
    commit = git.sha[:12] if git.sha else "unknown"
    if git.dirty:
        commit += " (with uncommitted changes)"
    details = [
        ("Commit", commit),
        ("Branch", git.branch or "unknown"),
        ("Created", run.created),
        ("Notebooks", f"{len(run.notebooks)} ({run.cached_count} from cache)"),
        ("Total notebook time", format_duration(run.duration_s)),
    ]
    kernels = sorted({nb.kernel for nb in run.notebooks if nb.kernel})
    if kernels:
        details.append(("Kernel" if len(kernels) == 1 else "Kernels", ", ".join(kernels)))
    if comparison:
        details.append(("Baseline", comparison.baseline_label))
    if run.shard:
        details.append(("Shard", run.shard))
    env = run.environment
    if env.python:
        details.append(("Python", env.python))
    if env.platform:
        details.append(("Platform", env.platform))
    if run.nbci_version:
        details.append(("nbci", run.nbci_version))
    return tuple((label, clean_text(truncate(value, 500))) for label, value in details)


def _packages_table(run: Run) -> Table | None:
    packages = run.environment.packages
    if not packages:
        return None
    rows = tuple((Cell(_name(k)), Cell(_name(v))) for k, v in sorted(packages.items()))
    return Table(("Package", "Version"), rows, ("left", "left"))


# -- small helpers ----------------------------------------------------------------


def _job_cell(job_id: str, status: Status | None, anchors: Mapping[str, str]) -> Cell:
    return Cell(_name(job_id), status=status, anchor=anchors.get(job_id))


def _anchors(ids: Iterable[str]) -> dict[str, str]:
    """HTML ids for notebook sections: `nb-<n>` (ids are untrusted, so not used verbatim)."""
    return {job_id: f"nb-{i}" for i, job_id in enumerate(dict.fromkeys(ids), start=1)}


def _ordered_union(mappings: Iterable[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for m in mappings for name in m))


def _name(text: object) -> str:
    """A short one-line label for an untrusted name; never blank."""
    name = clean_text(truncate(text if isinstance(text, str) else str(text), NAME_CHARS))
    return name if name.strip() else "(blank)"


def _names(texts: Iterable[object]) -> tuple[str, ...]:
    return tuple(_name(t) for t in texts)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else _json_text(value, indent=None)
    return clean_text(truncate(text, PARAM_CHARS))


def _parameters_text(parameters: Mapping[str, Any]) -> str:
    return ", ".join(f"{_name(k)}={_param_value(v)}" for k, v in parameters.items())


def _json_text(value: Any, *, indent: int | None = 2) -> str:
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False, default=repr, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _cut(text: str, limit: int) -> tuple[str, int]:
    if len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def _omitted_note(omitted: int) -> str:
    return f"{omitted:,} more characters not shown" if omitted else ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
