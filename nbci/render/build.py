"""Build the view of a report from a `Run` (+ comparison, verdict).

Sizes are capped for the HTML report (which has no hard limit but should stay
sane); the markdown renderer trims further to fit a PR comment.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from nbci.headline import Headline, Leads
from nbci.history import MIN_RUNS
from nbci.model import (
    Comparison,
    GateResult,
    JobChange,
    ParameterChange,
    Run,
    Verdict,
    passed,
)
from nbci.render.escape import clean_text, truncate
from nbci.render.labels import anchors, job_cell, name, parameters_text
from nbci.render.metric_tables import comparison_table, metric_tables
from nbci.render.notebook_view import notebook_view
from nbci.render.sweeps import find_sweeps, sweep_view
from nbci.render.trends import trend_deltas, trend_path
from nbci.render.view import (
    Align,
    Cell,
    DiffView,
    FigureView,
    Notice,
    ReportView,
    Table,
    VerdictView,
)
from nbci.render.visuals import Visuals
from nbci.vocabulary import (
    change_counts,
    count,
    format_duration,
    gates_summary,
    status_label,
    verdict_facts,
)

PARAMETER_JOBS = 10
"""A notice lists the parameter changes of at most this many notebooks."""


def build_view(
    run: Run,
    *,
    comparison: Comparison | None = None,
    verdict: Verdict | None = None,
    base_figures: Collection[str] = (),
    visuals: Mapping[str, Visuals] | None = None,
    title: str = "nbci",
    headline: Headline | None = None,
) -> ReportView:
    """The report's content for `run`; `base_figures`: figure paths the baseline also has;
    `visuals`: each job's charts and figure comparison (`nbci.render.visuals`);
    `headline`: which metrics lead (`nbci.headline`)."""
    links = anchors(nb.id for nb in run.notebooks)
    job_changes = _job_changes(comparison)
    leads = Leads.of(run, headline, verdict)
    sweeps = find_sweeps(run, leads)
    in_sweeps = frozenset(nb.id for sweep in sweeps for nb in sweep.notebooks)
    metrics, in_tables = metric_tables(run, comparison, links, leads, elsewhere=in_sweeps)
    notebooks = tuple(
        notebook_view(
            nb,
            anchor=links[nb.id],
            comparison=comparison,
            base_figures=base_figures,
            change=job_changes.get(nb.id, ""),
            metrics_elsewhere=nb.id in in_tables,
            visuals=(visuals or {}).get(nb.id),
            leads=leads,
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
        jobs=_jobs_table(run, links),
        details=_details(run, comparison),
        packages=_packages_table(run),
        baseline_label=comparison.baseline_label if comparison else None,
        removed_jobs=comparison.removed_jobs if comparison else (),
        trends=tuple(
            FigureView(name(f"{d.job_id}: {d.metric}"), trend_path(d))
            for d in trend_deltas(comparison, verdict, leads)
        ),
        sweeps=tuple(sweep_view(sweep, comparison, links) for sweep in sweeps),
    )


# -- verdict and notices -------------------------------------------------------


def _verdict(run: Run, comparison: Comparison | None, verdict: Verdict | None) -> VerdictView:
    counts = run.counts
    total = len(run.notebooks)
    not_ok = total - counts["ok"]
    gates_failed = len(verdict.failures) if verdict else 0
    run_passed = passed(run, verdict)
    noun = "notebook" if total == 1 else "notebooks"
    if total == 0:
        headline = "No notebooks ran"
    elif not_ok:
        headline = f"{not_ok} of {total} {noun} did not pass"
        if not_ok == counts["failed"]:
            headline = f"{not_ok} of {total} {noun} failed"
    elif gates_failed:
        headline = f"All {total} {noun} ran, {count(gates_failed, 'gate')} failed"
    else:
        headline = "The notebook passed" if total == 1 else f"All {total} notebooks passed"
    if run.interrupted:
        headline = f"Interrupted: {headline[0].lower()}{headline[1:]}"

    facts = verdict_facts(run, comparison, verdict, passed_count=bool(not_ok))
    gates = gates_summary(verdict) if verdict and verdict.results else ""
    return VerdictView(passed=run_passed, headline=headline, facts=tuple(facts), gates=gates)


def _notices(
    run: Run, comparison: Comparison | None, verdict: Verdict | None
) -> tuple[Notice, ...]:
    notices: list[Notice] = []
    if run.interrupted:
        unfinished = run.counts["interrupted"]
        notices.append(
            Notice("warn", f"The run was interrupted; {count(unfinished, 'notebook')} unfinished.")
        )
    return (*_bounded(notices), *judgement_notices(comparison, verdict))


def judgement_notices(comparison: Comparison | None, verdict: Verdict | None) -> tuple[Notice, ...]:
    """What the comparison and the gates say needs attention (reports and `nbci diff`)."""
    notices: list[Notice] = []
    if verdict:
        notices += [Notice("fail", f"Gate failed: {r.reason}") for r in verdict.failures]
    if comparison:
        notices += _job_notices(comparison.jobs)
        if comparison.added_jobs:
            notices.append(
                Notice("info", "New, not in the baseline: " + ", ".join(comparison.added_jobs))
            )
        if comparison.removed_jobs:
            notices.append(
                Notice("warn", "Not in this run any more: " + ", ".join(comparison.removed_jobs))
            )
        if comparison.parameters:
            notices.append(Notice("info", parameters_notice(comparison.parameters)))
    return _bounded(notices)


def _job_notices(jobs: Sequence[JobChange]) -> list[Notice]:
    """Newly failing first, then fixed, then other changes of status."""
    notices = [
        Notice("fail", f"{j.job_id} {status_label(j.status)} now (passed on the baseline)")
        for j in jobs
        if j.newly_failing
    ]
    notices += [Notice("pass", f"{j.job_id} passes again") for j in jobs if j.fixed]
    notices += [
        Notice(
            "warn",
            f"{j.job_id} {status_label(j.status)} now "
            f"({status_label(j.baseline_status)} on the baseline)",
        )
        for j in jobs
        if None not in (j.status, j.baseline_status) and not (j.newly_failing or j.fixed)
    ]
    return notices


def _bounded(notices: Sequence[Notice]) -> tuple[Notice, ...]:
    return tuple(Notice(n.kind, clean_text(truncate(n.text, 2_000))) for n in notices)


def parameters_notice(changes: Sequence[ParameterChange]) -> str:
    """`Parameters differ from the baseline: train: model "logreg" (default) → "forest"
    (default), C 1.0 (default) → 0.5 (-p)`."""
    by_job: dict[str, list[str]] = {}
    for change in changes:
        was = _parameter_side(change.baseline, change.baseline_origin)
        now = _parameter_side(change.value, change.origin)
        by_job.setdefault(change.job_id, []).append(f"{change.name} {was} → {now}")
    jobs = [f"{job}: {', '.join(moves)}" for job, moves in by_job.items()]
    shown = "; ".join(jobs[:PARAMETER_JOBS])
    if len(jobs) > PARAMETER_JOBS:
        shown += f"; and {count(len(jobs) - PARAMETER_JOBS, 'more notebook')}"
    return f"Parameters differ from the baseline: {shown}"


def _parameter_side(value: str | None, origin: str | None) -> str:
    """`0.5 (-p)`, `(default)` for a default its run did not record, `(unset)` for none."""
    if value is None:
        return f"({origin})" if origin else "(unset)"
    return f"{value} ({origin})" if origin else value


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


def build_diff_view(comparison: Comparison, verdict: Verdict | None = None) -> DiffView:
    """What `nbci diff` shows: the report's notices, comparison table and gates."""
    return DiffView(
        baseline_label=clean_text(truncate(comparison.baseline_label, 500)),
        notices=judgement_notices(comparison, verdict),
        counts=change_counts(comparison.deltas),
        metrics=comparison_table(comparison.deltas, {}, with_job=True),
        gates=_gates_table(verdict),
        gates_summary=gates_summary(verdict) if verdict is not None else "",
    )


# -- gates and run details -----------------------------------------------------


def _gates_table(verdict: Verdict | None) -> Table | None:
    if verdict is None or not verdict.results:
        return None

    def row(result: GateResult) -> tuple[Cell, ...]:
        outcome = Cell("passed", "better") if result.passed else Cell("failed", "worse")
        return (outcome, Cell(name(result.rule)), Cell(clean_text(truncate(result.reason, 500))))

    failed = tuple(row(r) for r in verdict.results if not r.passed)
    passed = tuple(row(r) for r in verdict.results if r.passed)
    return Table(
        ("Result", "Rule", "Reason"),
        failed,
        ("left", "left", "left"),
        folded=passed,
        folded_label=count(len(passed), "gate") + " passed" if passed else "",
    )


def _jobs_table(run: Run, anchors: Mapping[str, str]) -> Table:
    with_params = any(nb.parameters for nb in run.notebooks)
    rows = tuple(
        (
            job_cell(nb.id, nb.status, anchors),
            Cell(name(nb.path)),
            *((Cell(parameters_text(nb.parameters)),) if with_params else ()),
            Cell(status_label(nb.status), "plain" if nb.ok else "worse"),
            Cell("cached" if nb.cached else "ran", "muted" if nb.cached else "plain"),
            Cell(format_duration(nb.ran_for)),
        )
        for nb in run.notebooks
    )
    columns = ("Notebook", "Path", *(("Parameters",) if with_params else ()), "Status", "Cache")
    align: list[Align] = ["left"] * len(columns)
    return Table((*columns, "Time"), rows, (*align, "right"))


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
        if comparison.history_runs:
            runs = count(comparison.history_runs, "run")
            details.append(("History", f"{runs} of the base branch (ranges need {MIN_RUNS})"))
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
    rows = tuple((Cell(name(k)), Cell(name(v))) for k, v in sorted(packages.items()))
    return Table(("Package", "Version"), rows, ("left", "left"))
