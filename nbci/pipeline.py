"""The orchestrator: plan → (cache | execute) → results → compare → gates → reports.

A run is built in a hidden staging folder beside the output directory and
moved into place at the end, so the output directory always holds either the
previous complete run or the new one (complete, or partial and marked
`interrupted`), never a mix. A lock file beside it (`.NAME.lock`) keeps a second
run (or report) from writing the same output directory at the same time.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nbci._files import FOLDER_MODE
from nbci.config import Config
from nbci.errors import Interrupted, RunError, UsageError
from nbci.model import Comparison, Job, NotebookResult, Run, Verdict, passed
from nbci.plan import Plan, plan
from nbci.progress import OnEvent
from nbci.results import RESULTS_FILE, new_run, read_run, write_run

log = logging.getLogger(__name__)

ResultCallback = Callable[[NotebookResult], None]
_PID_FILE = ".nbci-pid"
"""In a staging folder: the process building it, `PID START-TIME` (psutil's create time)."""


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
    baseline = read_run(request.baseline) if request.baseline else None
    jobs = _select_shard(planned.jobs, request.shard, baseline)
    with _staging(out_dir) as staging:
        results, interrupted = _execute(
            config, request, planned, jobs, staging, on_result, on_event
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

    runs = [read_run(d) for d in shard_dirs]
    out_dir = out.resolve()
    check_output_dir(out_dir, config.root)
    with output_lock(out_dir), _staging(out_dir) as staging:
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
    from nbci.judge import Criteria, judge, run_label
    from nbci.junit import write_junit
    from nbci.render import write_reports

    label = run_label(baseline, str(baseline_dir)) if baseline is not None else ""
    criteria = Criteria.of(config)
    judged = judge(the_run, baseline, label=label, criteria=criteria, history=history)
    if write_results:
        write_run(the_run, out_dir)
    reports = write_reports(
        the_run,
        out_dir,
        comparison=judged.comparison,
        verdict=judged.verdict,
        baseline_dir=baseline_dir,
        baseline=baseline,
        templates=config.root / config.templates if config.templates else None,
    )
    reports = [*reports, write_junit(the_run, judged.verdict, out_dir)]
    return RunOutcome(the_run, out_dir, judged.comparison, judged.verdict, tuple(reports))


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
    on_result: ResultCallback | None,
    on_event: OnEvent | None,
) -> tuple[list[NotebookResult], bool]:
    """Every job's result in plan order, and whether the run was interrupted."""
    from nbci import cache

    settings = cache.CacheSettings(
        directory=config.root / config.cache_dir,
        max_bytes=int(config.cache_max_mb * 1024 * 1024),
        max_age_days=config.cache_max_age_days,
        enabled=request.use_cache,
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
    fingerprint = cache.environment_fingerprint(config.root) if request.use_cache else ""
    to_run: list[Job] = []
    keys: dict[str, str | None] = {}
    for job in jobs:
        if job.id in problems:
            finished(NotebookResult.of(job, "invalid", problems[job.id]))
            continue
        key = cache.cache_key(job, config.root, environment_fingerprint=fingerprint)
        keys[job.id] = key
        restored = cache.restore(settings, key, job, out_dir) if key and settings.enabled else None
        if restored is not None:
            finished(restored)
        else:
            to_run.append(job)

    interrupted = False
    try:
        for result in _executed(config, request, to_run, out_dir, on_event):
            key = keys.get(result.id)
            result = replace(result, cache_key=key)
            if key and settings.enabled and result.ok:
                cache.store(settings, key, result, out_dir)
            finished(result)
    except Interrupted:
        interrupted = True
    ordered = [done.get(job.id) or _interrupted(job) for job in jobs]
    return ordered, interrupted


def _executed(
    config: Config,
    request: RunRequest,
    jobs: Sequence[Job],
    out_dir: Path,
    on_event: OnEvent | None,
) -> Iterator[NotebookResult]:
    """The jobs' results as they finish (the executor is not even imported when all were
    restored from the cache)."""
    if not jobs:
        return
    from nbci.execute import ExecuteOptions, execute_jobs

    options = ExecuteOptions(
        root=config.root,
        out_dir=out_dir,
        workers=request.workers or config.jobs,
        preload=config.preload is not None,
        preload_modules=config.preload or (),
        on_event=on_event,
        stream_output=request.log_output,
    )
    yield from execute_jobs(jobs, options)


def _interrupted(job: Job) -> NotebookResult:
    return NotebookResult.of(
        job, "interrupted", "the run was stopped before this notebook finished"
    )


# -- the output directory ----------------------------------------------------


def check_output_dir(out_dir: Path, root: Path) -> None:
    """Refuse an output directory that replacing would destroy something else.

    A run replaces the whole output directory, so it must be an earlier run's
    (it holds results.json), empty, or absent; and never the project itself
    or a folder around it.
    """
    out_dir, root = out_dir.resolve(), root.resolve()
    if out_dir == root or out_dir in root.parents:
        raise UsageError(
            f"output directory {out_dir}: it holds the project at {root}, and nbci replaces "
            "its output directory on every run; choose a folder of its own (--out or `out`)"
        )
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"output directory {out_dir}: exists and is not a folder")
    if (out_dir / RESULTS_FILE).is_file() or not any(out_dir.iterdir()):
        return
    raise UsageError(
        f"output directory {out_dir}: exists and is not an nbci output directory (no "
        f"{RESULTS_FILE}); nbci replaces its output directory on every run, so choose another "
        "(--out or `out`) or remove this one"
    )


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold `.NAME.lock` beside `out_dir` for the block; refuse in one line when another
    nbci process holds it (a second run into the same folder would swap over the first's)."""
    from filelock import FileLock, Timeout

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(
            f"output directory {out_dir}: another nbci run is writing it (it holds {lock_path}); "
            "wait for it to finish, or choose another folder (--out)"
        ) from None
    except OSError as error:
        raise RunError(f"output directory {out_dir}: cannot lock {lock_path}: {error}") from None
    try:
        yield
    finally:
        lock.release()


class _staging:
    """A hidden folder beside `out_dir` that replaces it on success.

    Old staging folders left by killed runs are removed first. On an exception
    the staging folder is removed and `out_dir` is left as it was.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path: Path | None = None

    def __enter__(self) -> Path:
        parent = self.out_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        for stale in _stale_siblings(self.out_dir):
            _recover(stale, self.out_dir)
            shutil.rmtree(stale, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.staging-", dir=parent))
        os.chmod(self.path, FOLDER_MODE)  # mkdtemp's 0700 would hide the run from others
        (self.path / _PID_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}")
        return self.path

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.path is not None
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        (self.path / _PID_FILE).unlink(missing_ok=True)
        try:
            _swap_into_place(self.path, self.out_dir)
        except OSError as error:
            raise RunError(
                f"output directory {self.out_dir}: the new run could not be put in place "
                f"({error.strerror or error}); it is kept in {self.path}"
            ) from None


def _stale_siblings(out_dir: Path) -> Iterator[Path]:
    for prefix in (".staging-", ".old-"):
        for path in out_dir.parent.glob(f".{out_dir.name}{prefix}*"):
            if not _owned_by_live_process(path):
                yield path


def _recover(stale: Path, out_dir: Path) -> None:
    """Put back the previous run a killed swap left aside (a `.old-` folder, no output dir)."""
    previous = stale / "run"
    if ".old-" in stale.name and not out_dir.exists() and (previous / RESULTS_FILE).is_file():
        log.warning("restoring the previous run from %s", stale)
        os.replace(previous, out_dir)


def _owned_by_live_process(path: Path) -> bool:
    """Staging folders of a run still going (another `nbci run`, maybe another user's) are
    left alone. The process is known by its id and start time: an id the system gave to
    another process since does not keep a dead run's folder."""
    try:
        stamp = (path / _PID_FILE).read_text().split()
        pid = int(stamp[0])
    except (OSError, ValueError, IndexError):
        return False
    started = _start_time(pid)
    if started is None:
        return False
    return len(stamp) < 2 or started == _UNKNOWN or started == stamp[1]


_UNKNOWN = "?"


def _start_time(pid: int) -> str | None:
    """When process `pid` started (psutil's create time, as text); None when no such process
    runs; `_UNKNOWN` when it cannot be inspected (another user's, on a hardened system)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return repr(process.create_time())
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return _UNKNOWN


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    old = None
    with _signals_held():  # between the two renames there is no output directory at all
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "run")
        os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("wrote %s", out_dir)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, not lost) until the block is done."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
