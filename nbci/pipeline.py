"""The orchestrator: plan → (cache | execute) → results → compare → gates → reports.

A run is built in a hidden staging folder beside the output directory and
moved into place at the end (`nbci.staging`), so the output directory always holds
either the previous complete run or the new one (complete, or partial and marked
`interrupted`), never a mix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nbci.config import Config
from nbci.errors import Interrupted, TemplateError
from nbci.model import Comparison, Job, NotebookResult, Run, Verdict, passed
from nbci.plan import Plan, plan
from nbci.progress import JobEvent, JobStarted, OnEvent
from nbci.results import new_run, read_run, write_run
from nbci.staging import Staging, check_output_dir, output_lock

log = logging.getLogger(__name__)

ResultCallback = Callable[[NotebookResult], None]


@dataclass(frozen=True)
class RunRequest:
    """What `nbci run` was asked for, on top of the configuration."""

    paths: tuple[Path, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    out: Path | None = None
    workers: int | None = None
    timeout: float | None = None
    cell_timeout: float | None = None
    use_cache: bool = True
    """Restore unchanged jobs from the cache; False runs them all (and still stores them)."""
    shard: tuple[int, int] | None = None
    baseline: Path | None = None
    log_output: bool = False
    """Send each notebook's stdout/stderr to `on_event` as it is produced."""


@dataclass(frozen=True)
class RunOutcome:
    run: Run
    out_dir: Path
    comparison: Comparison | None
    verdict: Verdict
    reports: tuple[Path, ...]
    template_error: str | None = None
    """A user's report template failed while rendering (the reports used the built-in ones)."""

    @property
    def passed(self) -> bool:
        return passed(self.run, self.verdict)


def output_dir(config: Config, out: Path | None = None) -> Path:
    return (config.root / (out or config.out)).resolve()


def run(
    config: Config,
    request: RunRequest,
    *,
    on_result: ResultCallback | None = None,
    on_event: OnEvent | None = None,
) -> RunOutcome:
    """Run the planned jobs and write the output directory. Raises only for bad input.

    `on_result` gets each job's result as it finishes; `on_event` what running
    jobs tell on the way (`nbci.progress`).
    """
    out_dir = output_dir(config, request.out)
    check_output_dir(out_dir, config.root)
    with output_lock(out_dir):
        return _run(config, request, out_dir, on_result, on_event)


def _run(
    config: Config,
    request: RunRequest,
    out_dir: Path,
    on_result: ResultCallback | None,
    on_event: OnEvent | None,
) -> RunOutcome:
    planned = plan(config, request.paths, request.overrides, out_dir=out_dir)
    planned = _apply_request(planned, request)
    _check_templates(config)  # a broken report template stops the run before any notebook
    baseline = read_run(request.baseline) if request.baseline else None
    jobs = _select_shard(planned.jobs, request.shard, baseline)
    # the workers' last kernels exit while the results and reports are written
    with ExitStack() as ending, Staging(out_dir) as staging:
        results, interrupted = _execute(
            config, request, planned, jobs, staging, ending, on_result, on_event
        )
        shard = f"{request.shard[0]}/{request.shard[1]}" if request.shard else None
        the_run = new_run(
            results,
            config.root,
            interrupted=interrupted,
            shard=shard,
            planned=[job.id for job in planned.jobs] if shard else (),
        )
        outcome = _finish(config, the_run, baseline, request.baseline, staging)
    return _moved(outcome, out_dir)


def report(
    config: Config,
    out_dir: Path,
    baseline_dir: Path | None = None,
    history_dirs: Sequence[Path] = (),
) -> RunOutcome:
    """Re-render both reports of an existing run directory.

    `history_dirs`: earlier runs of the base branch, oldest first (`nbci.history`).
    """
    from nbci.history import read_history

    _check_templates(config)
    the_run = read_run(out_dir)
    baseline = read_run(baseline_dir) if baseline_dir else None
    history = read_history(history_dirs)
    with output_lock(out_dir.resolve()):
        return _finish(
            config, the_run, baseline, baseline_dir, out_dir, write_results=False, history=history
        )


def merge(config: Config, shard_dirs: Sequence[Path], out: Path) -> RunOutcome:
    """One run, with both reports, from the output directories of shard runs."""
    from nbci.shards import merge_runs

    _check_templates(config)
    runs = [read_run(d) for d in shard_dirs]
    out_dir = out.resolve()
    check_output_dir(out_dir, config.root)
    with output_lock(out_dir), Staging(out_dir) as staging:
        merged = merge_runs(runs, shard_dirs, staging)
        outcome = _finish(config, merged, None, None, staging)
    return _moved(outcome, out_dir)


def _moved(outcome: RunOutcome, out_dir: Path) -> RunOutcome:
    """The outcome built in the staging folder, with its paths where the swap put them."""
    return replace(
        outcome, out_dir=out_dir, reports=tuple(out_dir / p.name for p in outcome.reports)
    )


def _finish(
    config: Config,
    the_run: Run,
    baseline: Run | None,
    baseline_dir: Path | None,
    out_dir: Path,
    *,
    write_results: bool = True,
    history: Sequence[Run] = (),
) -> RunOutcome:
    from nbci.cache import CHARTS
    from nbci.headline import Headline
    from nbci.judge import Criteria, judge, run_label
    from nbci.junit import write_junit
    from nbci.render import write_reports

    label = run_label(baseline, str(baseline_dir)) if baseline is not None else ""
    criteria = Criteria.of(config)
    judged = judge(the_run, baseline, label=label, criteria=criteria, history=history)
    if write_results:
        write_run(the_run, out_dir)

    def reports_with(templates: Path | None) -> list[Path]:
        return write_reports(
            the_run,
            out_dir,
            comparison=judged.comparison,
            verdict=judged.verdict,
            baseline_dir=baseline_dir,
            baseline=baseline,
            templates=templates,
            headline=Headline.of(config),
            chart_store=config.root / config.cache_dir / CHARTS,
        )

    template_error = None
    try:
        reports = reports_with(config.root / config.templates if config.templates else None)
    except TemplateError as error:  # the run is kept, reported with the built-in templates
        template_error = f"{error}; the reports were written with nbci's own templates"
        reports = reports_with(None)
    reports = [*reports, write_junit(the_run, judged.verdict, out_dir)]
    return RunOutcome(
        the_run, out_dir, judged.comparison, judged.verdict, tuple(reports), template_error
    )


def _check_templates(config: Config) -> None:
    """Compile the user's report templates (`ConfigError` if they do not)."""
    from nbci.render.templating import check_templates

    templates = config.root / config.templates if config.templates else None
    check_templates(templates, where=config.source)


def _apply_request(planned: Plan, request: RunRequest) -> Plan:
    """Command-line timeouts override the configured ones for every job."""
    changes: dict[str, Any] = {}
    if request.timeout is not None:
        changes["timeout"] = request.timeout
    if request.cell_timeout is not None:
        changes["cell_timeout"] = request.cell_timeout
    if not changes:
        return planned
    return Plan(
        jobs=tuple(replace(job, **changes) for job in planned.jobs),
        problems=tuple(replace(p, job=replace(p.job, **changes)) for p in planned.problems),
        notes=tuple(replace(n, job=replace(n.job, **changes)) for n in planned.notes),
    )


def _select_shard(
    jobs: Sequence[Job], shard: tuple[int, int] | None, baseline: Run | None
) -> tuple[Job, ...]:
    if shard is None:
        return tuple(jobs)
    from nbci.shards import known_durations, select_shard

    return tuple(select_shard(jobs, *shard, durations=known_durations(baseline)))


# -- executing ---------------------------------------------------------------


def _execute(
    config: Config,
    request: RunRequest,
    planned: Plan,
    jobs: Sequence[Job],
    out_dir: Path,
    ending: ExitStack,
    on_result: ResultCallback | None,
    on_event: OnEvent | None,
) -> tuple[list[NotebookResult], bool]:
    """Every job's result in plan order, and whether the run was interrupted; `ending` waits
    for the workers to finish their kernels (`execute_jobs`)."""
    from nbci import cache

    settings = cache.CacheSettings(
        directory=config.root / config.cache_dir,
        max_bytes=int(config.cache_max_mb * 1024 * 1024),
        max_age_days=config.cache_max_age_days,
    )
    done: dict[str, NotebookResult] = {}

    plan_notes: dict[str, tuple[str, ...]] = {}
    for note in planned.notes:
        plan_notes[note.job.id] = (*plan_notes.get(note.job.id, ()), note.message)

    def finished(result: NotebookResult) -> None:
        if result.id in plan_notes:
            result = replace(result, notes=(*plan_notes[result.id], *result.notes))
        done[result.id] = result
        if on_result:
            on_result(result)

    problems = {p.job.id: p.message for p in planned.problems}
    fingerprint = cache.environment_fingerprint(config.root)
    to_run: list[Job] = []
    keys: dict[str, str | None] = {}
    for job in jobs:
        if job.id in problems:
            finished(NotebookResult.of(job, "invalid", problems[job.id]))
            continue
        key = cache.cache_key(job, config.root, environment_fingerprint=fingerprint)
        keys[job.id] = key
        # --no-cache runs every job but still stores the results for the next run
        restored = cache.restore(settings, key, job, out_dir) if key and request.use_cache else None
        if restored is not None:
            finished(restored)
        else:
            to_run.append(job)

    interrupted = False
    started = _StartTimes()
    stored = False
    running, workers = len(to_run), min(request.workers or config.jobs, len(to_run))
    try:
        watching = started.watching(on_event)
        for result in _executed(config, request, to_run, out_dir, ending, watching):
            key = keys.get(result.id)
            result = replace(result, cache_key=key)
            if key and result.ok:
                cache.store(settings, key, result, out_dir, then_prune=False)
                stored = True
            finished(result)
            running -= 1
            if running == workers - 1:  # a worker has no more jobs: its core is free
                _get_ready_to_finish(config)
    except Interrupted:
        interrupted = True
    finally:
        if stored:  # once, not after each job: pruning reads every entry of the cache
            cache.prune_quietly(settings)
    ordered = [done.get(job.id) or _interrupted(job, started.elapsed(job.id)) for job in jobs]
    return ordered, interrupted


def _executed(
    config: Config,
    request: RunRequest,
    jobs: Sequence[Job],
    out_dir: Path,
    ending: ExitStack,
    on_event: OnEvent | None,
) -> Iterator[NotebookResult]:
    """The jobs' results as they finish (the executor is not even imported when all were
    restored from the cache)."""
    if not jobs:
        return
    from nbci.execute import ExecuteOptions, execute_jobs
    from nbci.notebook_outputs import collect_outputs, warm_up_outputs

    options = ExecuteOptions(
        root=config.root,
        out_dir=out_dir,
        workers=request.workers or config.jobs,
        preload=config.preload is not None,
        preload_modules=config.preload or (),
        on_event=on_event,
        stream_output=request.log_output,
        hidden_variables=(config.token_env,) if config.token_env else (),
        after_notebook=collect_outputs,  # in the workers, off the parent's critical path
        warm_up=warm_up_outputs,  # in the workers, while they wait for their templates
    )
    yield from execute_jobs(jobs, options, ending)


def _get_ready_to_finish(config: Config) -> None:
    """Import what the end of a run needs and compile the report templates while the last
    notebooks still run (their results arrive meanwhile; none is dispatched any more): about
    0.1 s of CPU taken off the run's end, where it kept the other cores idle. A user's
    template that fails to compile here fails again, and is reported, when it renders."""
    from nbci.judge import judge  # noqa: F401
    from nbci.junit import write_junit  # noqa: F401
    from nbci.render import write_reports  # noqa: F401
    from nbci.render.html import html_chunks  # noqa: F401
    from nbci.render.templating import load_templates

    try:
        load_templates(config.root / config.templates if config.templates else None)
    except Exception as error:  # a broken user template: the end reports it, in one line
        log.debug("report templates not compiled ahead of the run's end: %s", error)


def _interrupted(job: Job, ran_for: float) -> NotebookResult:
    result = NotebookResult.of(
        job, "interrupted", "the run was stopped before this notebook finished"
    )
    return replace(result, duration_s=ran_for)


class _StartTimes:
    """When each job's kernel answered (`JobStarted`), for how long an interrupted job ran."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def watching(self, on_event: OnEvent | None) -> OnEvent:
        def seen(event: JobEvent) -> None:
            if isinstance(event, JobStarted):
                self._started[event.job_id] = time.monotonic()
            if on_event is not None:
                on_event(event)

        return seen

    def elapsed(self, job_id: str) -> float:
        """Seconds since the job started; 0 for one that never did."""
        began = self._started.get(job_id)
        return round(time.monotonic() - began, 3) if began is not None else 0.0
