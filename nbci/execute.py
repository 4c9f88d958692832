"""Execute: run jobs in worker processes, each notebook in a fresh kernel of its own.

How it fits together:

- The parent (`execute_jobs`) keeps a pool of long-lived worker processes
  (multiprocessing, `spawn`: no forked threads or zmq sockets). It hands one
  job at a time to an idle worker over a pipe and yields each result as it
  arrives. Workers import papermill and nbclient once, not once per job.
- A worker runs a job with papermill's pieces (parameters injected, papermill
  metadata and error markers, the notebook saved as it runs), then collects
  its scraps and renders its HTML (`nbci.collect`) before answering, so that
  work stays off the parent's critical path.
- Warm kernels: while a job runs, its worker already starts the kernel for its
  next job (and one at start-up, while idle), so a job rarely waits for a
  kernel to boot. Every job still gets a kernel nobody used before; a warm
  kernel of the wrong kind is shut down. A warm kernel is launched in the
  previous job's folder; a silent prologue moves it to its own job's folder
  (`sys.path` holds `''`, so imports beside the notebook work the same).
- Kernels are launched in a session of their own. After each job the worker
  kills what is left of that session (the kernel and anything it forked) and,
  being a child subreaper on Linux, whatever escaped into a session of its
  own. It tells the parent every kernel it starts and stops, so that the
  parent can kill them when the worker itself dies (its job is then `died`).
- SIGINT/SIGTERM in the parent: the workers get SIGTERM and kill their
  kernels (the parent kills those of a worker that does not answer), and
  `execute_jobs` raises `Interrupted` after yielding what had finished.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbci._files import safe_name
from nbci.errors import Interrupted, NbciError
from nbci.model import ErrorInfo, Job, NotebookResult, Status

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Awaitable, Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from jupyter_client.manager import AsyncKernelManager
    from nbformat import NotebookNode

    _OnReady = Callable[[Any], Awaitable[None]]
    """Called with the kernel client once the kernel answers, before the first cell."""

logger = logging.getLogger(__name__)

DEFAULT_KERNEL = "python3"
HARD_TIMEOUT_GRACE_S = 30.0
"""Seconds past a job's timeout before the parent kills a worker that does not answer."""
SHUTDOWN_WAIT_S = 2.0
KERNEL_START_ATTEMPTS = 2
"""A kernel that dies before it answers is replaced once (nothing of the notebook ran)."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Set for each kernel (unless the user set them) so parallel kernels share the cores
instead of each starting a BLAS thread per core: oversubscribed, a small fit ran 70x slower."""
"""How long a kernel gets to exit after a shutdown request before it is killed."""
WORKER_STOP_WAIT_S = 15.0
"""How long finished workers get to shut their warm kernels down and exit."""
WORKER_KILL_WAIT_S = 5.0
_EXIT_TERMINATED = 128 + signal.SIGTERM
"""A worker's exit code after SIGTERM (it kills its kernels first)."""
_KERNEL_LOG_TAIL_BYTES = 4000
_KERNEL_LOG_NOISE = re.compile(r"Kernel is running over TCP without encryption")
"""ipykernel's start-up warning, in every kernel's log; says nothing about why it died."""
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


@dataclass(frozen=True)
class ExecuteOptions:
    """How `execute_jobs` runs jobs (the timeouts are per job, in `Job`)."""

    root: Path
    """Project root; `Job.path` is relative to it."""
    out_dir: Path
    """Executed notebooks go to `out_dir/notebooks/<job-id>.ipynb` (and `.html`)."""
    workers: int = 1
    """Parallel worker processes."""
    warm_kernels: bool = True
    """Start each worker's next kernel ahead of need."""
    start_timeout: float = 60.0
    """Seconds a kernel may take to boot."""


def execute_jobs(jobs: Sequence[Job], options: ExecuteOptions) -> Iterator[NotebookResult]:
    """Run every job; yield each one's result as it finishes (in any order).

    A job's failure never stops the others. On SIGINT or SIGTERM (while this
    generator is active, in the main thread) the workers and their kernels are
    stopped and `Interrupted` is raised after the results that had finished
    were yielded; the caller knows which jobs are missing.
    """
    pending = deque(jobs)
    if not pending:
        return
    (options.out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    size = max(1, min(options.workers, len(pending)))
    with (
        tempfile.TemporaryDirectory(prefix="nbci-kernels-") as scratch,
        _StopSignals() as stop,
        _Pool(_WorkerSettings.make(options, pending[0], Path(scratch)), size) as pool,
    ):

        def interrupted() -> bool:
            return stop.signum is not None or pool.terminated_from_outside

        pool.dispatch(pending)
        while pool.busy and not interrupted():
            results = pool.poll(stop.fd)
            if not interrupted():
                pool.dispatch(pending)
            yield from results
        if interrupted():
            reason = signal.Signals(stop.signum).name if stop.signum else "SIGTERM to its workers"
            logger.info("interrupted by %s: stopping the workers and their kernels", reason)
            yield from pool.arrived()
            pool.close(force=True)
            raise Interrupted(f"the run was interrupted by {reason}")


# -- the parent: a pool of worker processes -----------------------------------


@dataclass(frozen=True)
class _WorkerSettings:
    """What every worker needs to know, sent once when it is spawned."""

    root: Path
    out_dir: Path
    warm_kernels: bool
    start_timeout: float
    kernel_hint: str
    """The kernel a worker warms up before its first job arrives."""
    log_level: int
    parent_pid: int
    kernel_threads: int
    """BLAS/OpenMP threads per kernel: the cores shared among the workers."""
    scratch: Path
    """A temporary folder for kernel logs, removed by the parent (also after a worker dies)."""

    @classmethod
    def make(cls, options: ExecuteOptions, first_job: Job, scratch: Path) -> _WorkerSettings:
        return cls(
            root=options.root.resolve(),
            out_dir=options.out_dir.resolve(),
            warm_kernels=options.warm_kernels,
            start_timeout=options.start_timeout,
            kernel_hint=first_job.kernel or DEFAULT_KERNEL,
            log_level=logging.getLogger("nbci").getEffectiveLevel(),
            parent_pid=os.getpid(),
            kernel_threads=max(1, (os.cpu_count() or 1) // max(1, options.workers)),
            scratch=scratch,
        )


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    job: Job | None = None
    deadline: float = math.inf
    kernels: set[int] = field(default_factory=set)
    """Kernel pids (= process group and session ids) the worker reported alive."""
    retired: bool = False
    ready: bool = False
    """The worker has sent something, so it got past start-up."""


class _Pool:
    def __init__(self, settings: _WorkerSettings, size: int) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._settings = settings
        self._size = size
        self._workers: list[_Worker] = []
        self.terminated_from_outside = False
        """A worker was stopped by a SIGTERM the parent did not send."""
        self._any_ready = False

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(force=exc_type is not None or self.busy)

    @property
    def busy(self) -> bool:
        return any(w.job is not None for w in self._workers)

    def dispatch(self, pending: deque[Job]) -> None:
        """Give a job to every idle worker, spawning workers up to the pool size."""
        for worker in self._workers:
            if pending and worker.job is None and not worker.retired:
                self._assign(worker, pending)
        while pending and len(self._workers) < self._size:
            self._assign(self._spawn(), pending)
        if not pending:
            for worker in self._workers:
                if worker.job is None and not worker.retired:
                    self._retire(worker)

    def poll(self, wake_fd: int | None) -> list[NotebookResult]:
        """Wait until something happens; return the results that arrived."""
        from multiprocessing.connection import wait

        waitables: list[Any] = [w.conn for w in self._workers]
        waitables += [w.process.sentinel for w in self._workers]
        if wake_fd is not None:
            waitables.append(wake_fd)
        next_deadline = min((w.deadline for w in self._workers), default=math.inf)
        timeout = None if next_deadline == math.inf else max(0.0, next_deadline - time.monotonic())
        wait(waitables, timeout)
        results: list[NotebookResult] = []
        for worker in list(self._workers):
            results += self._receive(worker)
            if not worker.process.is_alive():
                results += self._bury(worker)
            elif worker.deadline <= time.monotonic():
                results += self._expire(worker)
        return results

    def arrived(self) -> list[NotebookResult]:
        """The results already sent, without waiting."""
        return [result for worker in self._workers for result in self._receive(worker)]

    def close(self, *, force: bool) -> None:
        """Stop every worker; kill every kernel they reported. Never raises."""
        for worker in self._workers:
            if force:
                _signal_process(worker.process, signal.SIGTERM)
            else:
                self._retire(worker)
        stop_by = time.monotonic() + (WORKER_KILL_WAIT_S if force else WORKER_STOP_WAIT_S)
        for worker in self._workers:
            worker.process.join(max(0.0, stop_by - time.monotonic()))
            if worker.process.is_alive():
                logger.warning("worker %s did not stop; killing it", worker.process.pid)
                _signal_process(worker.process, signal.SIGKILL)
                worker.process.join(WORKER_KILL_WAIT_S)
            self._receive(worker)
            self._kill_kernels(worker)
            worker.conn.close()
        self._workers.clear()

    # -- one worker

    def _spawn(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child_end, self._settings), name="nbci-worker", daemon=True
        )
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        self._workers.append(worker)
        logger.debug("started worker %s", process.pid)
        return worker

    def _assign(self, worker: _Worker, pending: deque[Job]) -> None:
        """Send the next job to `worker`.

        The worker is also told whether to start a kernel ahead for a job after
        this one: only while there are more jobs left than the other workers
        (each holding one warm kernel) will take, so that no kernel is booted
        for nothing at the end of a run.
        """
        job = pending.popleft()
        worker.job = job
        worker.deadline = _hard_deadline(job, self._settings.start_timeout)  # see `_handle`
        with contextlib.suppress(OSError):  # a dead worker is buried by the next poll
            worker.conn.send((job, len(pending) >= self._size))

    def _retire(self, worker: _Worker) -> None:
        if not worker.retired:
            worker.retired = True
            with contextlib.suppress(OSError):
                worker.conn.send(None)

    def _receive(self, worker: _Worker) -> list[NotebookResult]:
        results = []
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                result = self._handle(worker, message)
                if result is not None:
                    results.append(result)
        except (EOFError, OSError):
            pass  # the worker is gone; its sentinel tells the rest
        return results

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> NotebookResult | None:
        kind = message[0]
        worker.ready = self._any_ready = True
        if kind == "result":
            worker.job = None
            worker.deadline = math.inf
            return message[1]
        elif kind == "started" and worker.job is not None:  # its kernel answered: the clock runs
            worker.deadline = _hard_deadline(worker.job, 0.0)
        elif kind == "kernel":
            _, pid, alive = message
            (worker.kernels.add if alive else worker.kernels.discard)(pid)
        elif kind == "log":
            record: logging.LogRecord = message[1]
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)
        return None

    def _bury(self, worker: _Worker) -> list[NotebookResult]:
        """A worker process ended: kill its kernels; its job, if any, `died`."""
        self._workers.remove(worker)
        self._kill_kernels(worker)
        worker.conn.close()
        code = worker.process.exitcode
        if not worker.ready and not self._any_ready:
            raise NbciError(
                f"the worker processes cannot start ({_describe_exit(code)}); a script that "
                "calls nbci must guard its code with `if __name__ == '__main__':` "
                "(multiprocessing 'spawn' imports the main module again)"
            )
        if worker.job is None:
            return []
        if code == _EXIT_TERMINATED:
            self.terminated_from_outside = True
            return []
        logger.warning(
            "worker %s died (exit code %s) running %s", worker.process.pid, code, worker.job.id
        )
        message = f"the worker process running this notebook died ({_describe_exit(code)})"
        return [_parent_side_result(worker.job, self._settings.out_dir, "died", message)]

    def _expire(self, worker: _Worker) -> list[NotebookResult]:
        """A worker overran its job's timeout by far: kill it with its kernels."""
        assert worker.job is not None
        logger.warning(
            "worker %s stopped responding on %s; killing it", worker.process.pid, worker.job.id
        )
        _signal_process(worker.process, signal.SIGKILL)
        worker.process.join(WORKER_KILL_WAIT_S)
        job = worker.job
        worker.job = None
        self._bury(worker)
        message = (
            f"the notebook ran longer than its timeout ({_seconds(job.timeout)}) and was killed"
        )
        return [_parent_side_result(job, self._settings.out_dir, "timeout", message)]

    def _kill_kernels(self, worker: _Worker) -> None:
        """Kill the kernels a worker left behind (one that handled SIGTERM killed its own)."""
        if worker.process.exitcode != _EXIT_TERMINATED:
            for pid in worker.kernels:
                _kill_session(pid)
        worker.kernels.clear()


def _hard_deadline(job: Job, start_up: float) -> float:
    """When the parent gives up on a worker that does not answer (no limit without a timeout)."""
    if job.timeout <= 0:
        return math.inf
    return time.monotonic() + start_up + job.timeout + HARD_TIMEOUT_GRACE_S


def _parent_side_result(job: Job, out_dir: Path, status: Status, message: str) -> NotebookResult:
    notebook = _output_paths(job.id)[0]
    return replace(
        NotebookResult.of(job, status, message),
        output=notebook if (out_dir / notebook).is_file() else None,
        notes=("results were not collected: the worker process ended abnormally",),
    )


def _signal_process(process: BaseProcess, signum: int) -> None:
    if process.pid is not None and process.is_alive():
        with contextlib.suppress(OSError):
            os.kill(process.pid, signum)


class _StopSignals:
    """While active, SIGINT and SIGTERM only record themselves and wake the pool.

    Raising from the handler would surface wherever the main thread happens to
    be, possibly in the caller's code between two yields; a flag plus a
    self-pipe makes the pool notice at once instead. Outside the main thread
    nothing is installed (signals cannot be handled there).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.fd: int | None = None
        self._write_fd: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self._write_fd, False)
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        for fd in (self.fd, self._write_fd):
            if fd is not None:
                os.close(fd)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = self.signum or signum
        if self._write_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._write_fd, b"!")


# -- a worker process -----------------------------------------------------------


def _worker_main(conn: Connection, settings: _WorkerSettings) -> None:
    """Entry point of a worker: run the jobs the parent sends until it sends None."""
    # Ctrl-C reaches the whole process group; the parent decides what happens. A handler
    # that does nothing, not SIG_IGN: an ignored signal would be inherited by the kernels.
    signal.signal(signal.SIGINT, _do_nothing)
    sender = _Sender(conn)
    sender.send(("ready",))
    _forward_logs(sender, settings.log_level)
    kernels = _Kernels(settings, sender)

    signal.signal(signal.SIGTERM, lambda _signum, _frame: kernels.terminate())
    _watch_parent(settings.parent_pid, kernels)
    try:
        kernels.warm_up(settings.kernel_hint, settings.root)
        _import_papermill()  # while the warm kernel boots
        while (message := _receive(conn)) is not None:
            job, kernels.start_ahead = message
            sender.send(("result", _run_job_safely(job, settings, kernels, sender)))
            kernels.reap(wait=False)
    finally:
        kernels.close()


def _do_nothing(_signum: int, _frame: object) -> None:
    pass


def _receive(conn: Connection) -> tuple[Job, bool] | None:
    """The next job, and whether to start a kernel ahead for the one after; None: stop."""
    try:
        return conn.recv()
    except EOFError:  # the parent is gone
        return None


def _import_papermill() -> None:
    import papermill.execute  # noqa: F401


class _Sender:
    """The worker's end of the pipe, shared by the job loop and log records from any thread."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._conn.send(message)


class _ForwardHandler(logging.Handler):
    """Sends log records to the parent, which hands them to its own loggers.

    Records of other libraries (papermill, nbclient, traitlets) are demoted to
    DEBUG: their errors ("Timeout waiting for execute reply") are statuses here.
    """

    def __init__(self, sender: _Sender) -> None:
        super().__init__()
        self._sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record) if record.exc_info else record.getMessage()
            portable = logging.makeLogRecord(
                {
                    **record.__dict__,
                    "msg": message,
                    "args": None,
                    "exc_info": None,
                    "exc_text": None,
                }
            )
            if not record.name.startswith("nbci"):
                portable.levelno, portable.levelname = logging.DEBUG, "DEBUG"
            self._sender.send(("log", portable))
        except Exception:  # logging must never break a job
            pass


def _forward_logs(sender: _Sender, level: int) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_ForwardHandler(sender)]
    root.setLevel(level)
    logging.captureWarnings(True)


def _watch_parent(parent_pid: int, kernels: _Kernels) -> None:
    """If the parent disappears (killed hard), kill the kernels and leave."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        kernels.kill_all()
        os._exit(1)

    threading.Thread(target=watch, name="nbci-parent-watch", daemon=True).start()


# -- one job ----------------------------------------------------------------------


class _Invalid(Exception):
    """The job cannot run: its message is one line for the reader."""


@dataclass(frozen=True)
class _Outcome:
    status: Status
    error: ErrorInfo | None = None


@dataclass
class _Clock:
    """Per-cell time limits that also enforce the whole-notebook timeout.

    nbclient asks `cell_limit` for each code cell as it starts, which also
    tells us which cell is running (for timeout and died messages). The
    notebook's time runs from `start()`, once its kernel answers: how long a
    kernel takes to boot (bounded by the start-up timeout) depends on the
    machine and on warm kernels, not on the notebook.
    """

    cell_timeout: float
    timeout: float
    began: float = field(default_factory=time.monotonic)
    """When the job began (reading the notebook, waiting for the kernel): for `duration_s`."""
    started: float = field(default_factory=time.monotonic)
    cell: Any = None
    notebook_bound: bool = False
    """Whether the running cell's limit is what is left of the notebook's timeout."""
    kernel_ready: bool = False
    """Whether the kernel answered (before that, nothing of the notebook ran)."""

    def start(self) -> None:
        self.started = time.monotonic()
        self.kernel_ready = True

    def elapsed(self) -> float:
        return round(time.monotonic() - self.began, 3)

    def cell_limit(self, cell: Any) -> float | None:
        self.cell = cell
        per_cell = self.cell_timeout if self.cell_timeout > 0 else math.inf
        left = self.started + self.timeout - time.monotonic() if self.timeout > 0 else math.inf
        self.notebook_bound = left < per_cell
        limit = min(per_cell, left)
        return None if limit == math.inf else max(limit, 0.001)


def _run_job_safely(
    job: Job, settings: _WorkerSettings, kernels: _Kernels, sender: _Sender
) -> NotebookResult:
    """`_run_job`, with a bug of ours reported as the job's error instead of ending the worker."""
    try:
        return _run_job(job, settings, kernels, sender)
    except Exception as error:
        logger.exception("%s: internal error", job.id)
        message = f"nbci failed running this notebook: {type(error).__name__}: {_one_line(error)}"
        return NotebookResult.of(job, "died", message)


def _run_job(
    job: Job, settings: _WorkerSettings, kernels: _Kernels, sender: _Sender
) -> NotebookResult:
    """Execute one job and collect what it glued. Never raises for the job's own problems.

    `duration_s` covers reading, waiting for the kernel and running the cells,
    not collecting and rendering afterwards.
    """
    notebook_rel, html_rel = _output_paths(job.id)
    notebook_path = settings.out_dir / notebook_rel
    for stale in (notebook_path, settings.out_dir / html_rel):  # from an earlier run
        stale.unlink(missing_ok=True)
    clock = _Clock(job.cell_timeout, job.timeout)
    result = NotebookResult.of(job)
    logger.debug("running %s", job.id)
    try:
        nb, kernel_name, notes = _prepare(job, settings, kernels, notebook_path)
    except _Invalid as invalid:
        return replace(
            result,
            status="invalid",
            duration_s=clock.elapsed(),
            error=ErrorInfo(message=str(invalid)),
        )
    source_dir = (settings.root / job.path).parent
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            kernel = kernels.take(kernel_name, source_dir)
        except Exception as error:
            logger.warning("%s: cannot start a %r kernel", job.id, kernel_name, exc_info=True)
            message = f"the {kernel_name!r} kernel could not be started: {_one_line(error)}"
            return replace(
                result, status="died", duration_s=clock.elapsed(), error=ErrorInfo(message=message)
            )
        last = attempt == KERNEL_START_ATTEMPTS
        ran, retry = _run_in_kernel(
            result, job, nb, kernel, kernels, clock, settings, sender, notes, may_retry=not last
        )
        if not retry:
            result = ran
            break
        logger.warning("%s: the kernel died before it answered; starting another", job.id)
    logger.debug("%s: %s in %.1f s", job.id, result.status, result.duration_s)
    return result


def _run_in_kernel(
    result: NotebookResult,
    job: Job,
    nb: NotebookNode,
    kernel: _Kernel,
    kernels: _Kernels,
    clock: _Clock,
    settings: _WorkerSettings,
    sender: _Sender,
    notes: tuple[str, ...],
    *,
    may_retry: bool,
) -> tuple[NotebookResult, bool]:
    """Run the notebook in `kernel`, collect what it glued, then release the kernel.

    Also says whether to try again in a new kernel (when `may_retry`): when
    this one died before it ever answered (two kernels starting at once can
    race for the same free port), nothing of the notebook ran, so running it
    again changes nothing.
    """
    notebook_rel, html_rel = _output_paths(result.id)
    notebook_path = settings.out_dir / notebook_rel
    source_dir = (settings.root / result.path).parent
    kernel_name = kernel.name

    async def on_ready(kc: Any) -> None:
        """The kernel answers: move it to the notebook's folder, tell the parent, warm the next."""
        await _change_directory(kc, source_dir, settings.start_timeout)
        clock.start()
        sender.send(("started",))
        await kernels.prestart(kernel_name, source_dir)

    graceful = False
    try:
        outcome = _execute(nb, kernel, notebook_path, clock, settings.start_timeout, on_ready)
        if may_retry and outcome.status == "died" and not clock.kernel_ready:
            return result, True
        graceful = outcome.status in ("ok", "failed")  # the kernel is idle and can exit cleanly
        if graceful:
            kernel.request_shutdown()  # it exits while we collect
        result = replace(
            result,
            status=outcome.status,
            error=outcome.error,
            duration_s=clock.elapsed(),
            output=notebook_rel if notebook_path.is_file() else None,
            notes=notes,
        )
        if result.output is not None:
            result = _collect(result, job, settings.out_dir, html_rel)
        return result, False
    finally:
        kernels.release(kernel, graceful=graceful)


def _output_paths(job_id: str) -> tuple[str, str]:
    """The executed notebook and its HTML, relative to the output directory."""
    name = safe_name(job_id)
    return f"notebooks/{name}.ipynb", f"notebooks/{name}.html"


def _prepare(
    job: Job, settings: _WorkerSettings, kernels: _Kernels, output: Path
) -> tuple[NotebookNode, str, tuple[str, ...]]:
    """Read the notebook, resolve its kernel, inject the parameters (papermill's way)."""
    from papermill.execute import prepare_notebook_metadata, remove_error_markers
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from papermill.utils import find_first_tagged_cell_index

    source = settings.root / job.path
    if not source.is_file():
        raise _Invalid(f"{job.path}: no such notebook")
    try:
        nb = load_notebook_node(str(source))
        nb = remove_error_markers(prepare_notebook_metadata(nb, str(source), str(output)))
    except Exception as error:  # nbformat raises many kinds for a bad file
        raise _Invalid(f"{job.path}: not a readable notebook: {_one_line(error)}") from error
    kernel_name, language = _resolve_kernel(job, nb, kernels)
    if not job.parameters:
        return nb, kernel_name, ()
    notes: tuple[str, ...] = ()
    if find_first_tagged_cell_index(nb, "parameters") < 0:
        notes = ("no cell is tagged 'parameters': the parameters were injected at the top",)
    try:
        nb = parameterize_notebook(
            nb, dict(job.parameters), kernel_name=kernel_name, language=language
        )
    except Exception as error:  # papermill's translators raise for values they cannot write
        raise _Invalid(f"{job.path}: cannot inject the parameters: {_one_line(error)}") from error
    return nb, kernel_name, notes


def _resolve_kernel(job: Job, nb: NotebookNode, kernels: _Kernels) -> tuple[str, str]:
    """The kernel name and language for a job; `_Invalid` when there is no such kernel."""
    from jupyter_client.kernelspec import NoSuchKernel

    kernelspec = nb.metadata.get("kernelspec")
    own = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    name = job.kernel or own
    if not name or not isinstance(name, str):
        raise _Invalid(
            f"{job.path}: names no kernel (no metadata.kernelspec) and none is configured"
        )
    try:
        spec = kernels.spec(name)
    except NoSuchKernel as error:
        installed = ", ".join(sorted(kernels.installed())) or "none"
        raise _Invalid(f"{job.path}: unknown kernel {name!r} (installed: {installed})") from error
    if job.kernel and job.kernel != own:
        nb.metadata["kernelspec"] = {
            "name": name,
            "display_name": spec.display_name,
            "language": spec.language,
        }
    return name, spec.language


def _execute(
    nb: NotebookNode,
    kernel: _Kernel,
    output: Path,
    clock: _Clock,
    start_timeout: float,
    on_ready: _OnReady,
) -> _Outcome:
    """Run the cells in `kernel`, save the notebook to `output`, map the outcome to a status."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors

    ran: list[Any] = []
    try:
        executed = _run_cells(nb, kernel, output, clock, start_timeout, on_ready)
        ran = list(executed.cells)  # papermill's error banners shift the indices below
        raise_for_execution_errors(executed, str(output))
    except PapermillExecutionError as error:
        failing = ran[error.cell_index] if error.cell_index < len(ran) else None
        return _Outcome("failed", _failure(error, _code_index(nb, failing)))
    except CellTimeoutError as error:
        message = _timeout_message(nb, clock, waiting_for_output="IOPub" in str(error))
        return _Outcome("timeout", ErrorInfo(cell=_code_index(nb, clock.cell), message=message))
    except DeadKernelError:
        cell = _code_index(nb, clock.cell)
        message = (
            f"the kernel died ({_describe_exit(kernel.exit_code())}) while running cell {cell}"
        )
        return _Outcome("died", ErrorInfo(cell=cell, message=message, traceback=kernel.log_tail()))
    except Exception as error:  # a kernel that never came up, or a broken connection
        logger.warning("%s: execution failed", output.name, exc_info=True)
        message = f"the kernel failed: {type(error).__name__}: {_one_line(error)}"
        return _Outcome("died", ErrorInfo(message=message, traceback=kernel.log_tail()))
    return _Outcome("ok")


def _run_cells(
    nb: NotebookNode,
    kernel: _Kernel,
    output: Path,
    clock: _Clock,
    start_timeout: float,
    on_ready: _OnReady,
) -> NotebookNode:
    """papermill's engine loop (`Engine.execute_notebook`) with our pre-started kernel.

    The notebook is saved to `output` as cells finish and at the end, also
    when an exception escapes.
    """
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NotebookExecutionManager

    manager = NotebookExecutionManager(nb, output_path=str(output), progress_bar=False)
    client = PapermillNotebookClient(
        manager,
        km=kernel.km,
        kernel_name=kernel.name,
        timeout_func=clock.cell_limit,
        startup_timeout=math.ceil(start_timeout),
        log=logging.getLogger("papermill"),
        on_notebook_start=lambda notebook: on_ready(client.kc),
    )
    manager.notebook_start()
    try:
        return client.execute()
    finally:
        manager.cleanup_pbar()
        manager.notebook_complete()
        if client.kc is not None:
            client.kc.stop_channels()


async def _change_directory(kc: Any, cwd: Path, timeout: float) -> None:
    """Move the kernel into the notebook's folder without touching its namespace or history."""
    code = f"__import__('os').chdir({str(cwd)!r})"
    reply = await kc.execute_interactive(code, silent=True, store_history=False, timeout=timeout)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cannot change the kernel's directory to {cwd}")


def _failure(error: Any, cell: int | None) -> ErrorInfo:
    """A `failed` job's error from papermill's PapermillExecutionError."""
    traceback = error.traceback if isinstance(error.traceback, list) else [str(error.traceback)]
    return ErrorInfo(
        cell=cell,
        ename=str(error.ename),
        evalue=strip_ansi(str(error.evalue)),
        traceback=strip_ansi("\n".join(map(str, traceback))),
    )


def _code_index(nb: NotebookNode, cell: Any) -> int | None:
    """0-based index of `cell` among the code cells of the executed notebook.

    The executed notebook is the one in `out_dir/notebooks/`: papermill's
    `injected-parameters` cell counts; its markdown error banners do not.
    """
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    return next((i for i, c in enumerate(code_cells) if c is cell), None)


def _timeout_message(nb: NotebookNode, clock: _Clock, *, waiting_for_output: bool) -> str:
    cell = _code_index(nb, clock.cell)
    if waiting_for_output:  # nbclient's iopub_timeout: the reply came, its outputs did not
        return f"cell {cell} finished but its output did not arrive in time"
    if clock.notebook_bound:
        return (
            f"the notebook ran longer than its timeout ({_seconds(clock.timeout)}), in cell {cell}"
        )
    return f"cell {cell} ran longer than the cell timeout ({_seconds(clock.cell_timeout)})"


def _collect(result: NotebookResult, job: Job, out_dir: Path, html_rel: str) -> NotebookResult:
    """Add scraps, metrics, figures and the HTML; a problem here is a note, never a crash."""
    notes = list(result.notes)
    notebook = out_dir / str(result.output)
    try:
        from nbci.collect import collect_notebook, render_notebook_html

        collected = collect_notebook(notebook, job, out_dir)
        result = replace(
            result,
            metrics=collected.metrics,
            scraps=collected.scraps,
            figures=collected.figures,
            series=collected.series,
        )
        notes += collected.notes
    except Exception as error:
        logger.warning("%s: cannot collect results", job.id, exc_info=True)
        notes.append(f"results could not be collected: {_one_line(error)}")
        return replace(result, notes=tuple(notes))
    try:
        render_notebook_html(notebook, out_dir / html_rel)
        result = replace(result, html=html_rel)
    except Exception as error:
        logger.warning("%s: cannot render HTML", job.id, exc_info=True)
        notes.append(f"the notebook could not be rendered as HTML: {_one_line(error)}")
    return replace(result, notes=tuple(notes))


# -- kernels ------------------------------------------------------------------------


@dataclass(eq=False)
class _Kernel:
    name: str
    km: AsyncKernelManager
    pid: int
    """Also the kernel's process group and session id (it is launched with a session of its own)."""
    log: Path
    """The kernel process's own stdout and stderr (not the notebook's outputs)."""

    def exit_code(self) -> int | None:
        process = getattr(self.km.provisioner, "process", None)
        return process.poll() if process is not None else None

    def request_shutdown(self) -> None:
        from jupyter_core.utils import run_sync

        try:
            run_sync(self.km.request_shutdown)()
        except Exception:
            logger.debug("shutdown request to kernel %s failed", self.pid, exc_info=True)

    def log_tail(self) -> str | None:
        try:
            with self.log.open("rb") as f:
                f.seek(max(0, self.log.stat().st_size - _KERNEL_LOG_TAIL_BYTES))
                text = strip_ansi(f.read().decode("utf-8", "replace"))
        except OSError:
            return None
        lines = [line for line in text.splitlines() if not _KERNEL_LOG_NOISE.search(line)]
        return "\n".join(lines).strip() or None


class _Kernels:
    """A worker's kernels: the one running a job and at most one warm one waiting.

    Every kernel's pid is reported to the parent (`("kernel", pid, alive)`)
    and kept in `live`, which the SIGTERM handler reads to kill them all.
    """

    def __init__(self, settings: _WorkerSettings, sender: _Sender) -> None:
        self._settings = settings
        self._sender = sender
        self._warm: _Kernel | None = None
        self._dying: list[tuple[_Kernel, float]] = []
        """Kernels asked to exit, with the time after which they are killed."""
        self._spec_manager: Any = None
        self.live: set[int] = set()
        self._subreaper = _become_subreaper()
        self.start_ahead = settings.warm_kernels
        """Whether `prestart` starts a kernel (the parent says so with each job)."""
        self._starting = False
        self._terminate_when_started = False

    def spec(self, name: str) -> Any:
        """The kernelspec called `name`; raises jupyter_client's NoSuchKernel."""
        return self._specs().get_kernel_spec(name)

    def installed(self) -> list[str]:
        return list(self._specs().find_kernel_specs())

    def _specs(self) -> Any:
        if self._spec_manager is None:
            from jupyter_client.kernelspec import KernelSpecManager

            self._spec_manager = KernelSpecManager()
        return self._spec_manager

    def warm_up(self, name: str, cwd: Path) -> None:
        from jupyter_core.utils import run_sync

        run_sync(self.prestart)(name, cwd)

    async def prestart(self, name: str, cwd: Path) -> None:
        """Start the next job's kernel ahead of need; a failure only means a cold start later."""
        if not (self._settings.warm_kernels and self.start_ahead) or self._warm is not None:
            return
        try:
            self._warm = await self._start(name, cwd)
        except Exception:
            logger.debug("could not start a %r kernel ahead of need", name, exc_info=True)

    def take(self, name: str, cwd: Path) -> _Kernel:
        """A kernel nobody has used: the warm one if it fits and lives, else a new one."""
        from jupyter_core.utils import run_sync

        self.reap(wait=False)
        kernel, self._warm = self._warm, None
        if kernel is not None and kernel.name == name and kernel.exit_code() is None:
            return kernel
        if kernel is not None:
            logger.debug("discarding a warm %r kernel: %r is needed", kernel.name, name)
            self.release(kernel, graceful=False)
        return run_sync(self._start)(name, cwd)

    def release(self, kernel: _Kernel, *, graceful: bool) -> None:
        """Stop `kernel` and kill whatever it started. Never raises.

        A kernel asked to shut down (`graceful`) takes most of a second to exit:
        it is left to do so while the worker goes on, and finished by `reap`.
        """
        if graceful:
            self._dying.append((kernel, time.monotonic() + SHUTDOWN_WAIT_S))
            self.reap(wait=False)
        else:
            self._finish(kernel)

    def reap(self, *, wait: bool) -> None:
        """Finish the kernels asked to exit that have exited or whose time is up.

        With `wait`, finish them all, waiting for each until its time is up.
        """
        from jupyter_core.utils import run_sync

        dying, self._dying = self._dying, []
        for kernel, deadline in dying:
            left = deadline - time.monotonic()
            if wait and left > 0 and kernel.exit_code() is None:
                with _logged_failure("waiting for kernel %s to exit", kernel.pid):
                    run_sync(kernel.km.finish_shutdown)(waittime=left)
            if wait or left <= 0 or kernel.exit_code() is not None:
                self._finish(kernel)
            else:
                self._dying.append((kernel, deadline))

    def _finish(self, kernel: _Kernel) -> None:
        from jupyter_core.utils import run_sync

        _kill_session(kernel.pid)
        with _logged_failure("cleaning up kernel %s", kernel.pid):
            run_sync(kernel.km.shutdown_kernel)(now=True)  # reaps it, closes its sockets
        self.live.discard(kernel.pid)
        if self._subreaper:
            _kill_strays(keep=self.live)
        kernel.log.unlink(missing_ok=True)
        with _logged_failure("reporting kernel %s", kernel.pid):
            self._sender.send(("kernel", kernel.pid, False))

    def close(self) -> None:
        self.reap(wait=True)
        if self._warm is not None:
            self.release(self._warm, graceful=False)
            self._warm = None

    def kill_all(self) -> None:
        """Kill every kernel and what it started (from a signal handler or the parent watch)."""
        for pid in list(self.live):
            _kill_session(pid)
        if self._subreaper:
            _kill_strays(keep=())

    def terminate(self) -> None:
        """The worker's SIGTERM handler: kill every kernel, then exit.

        A kernel being launched is registered first (signal handlers run in
        the main thread, between two steps of `_start`), so none is missed.
        """
        if self._starting:
            self._terminate_when_started = True
            return
        self.kill_all()
        os._exit(_EXIT_TERMINATED)

    async def _start(self, name: str, cwd: Path) -> _Kernel:
        from jupyter_client.manager import AsyncKernelManager

        scratch = self._settings.scratch  # removed by the parent, even if this worker is killed
        fd, log = tempfile.mkstemp(prefix=f"{safe_name(name)}-", suffix=".log", dir=scratch)
        km = AsyncKernelManager(
            kernel_name=name,
            kernel_spec_manager=self._specs(),
            connection_file=str(Path(log).with_suffix(".json")),
            shutdown_wait_time=SHUTDOWN_WAIT_S,
        )
        self._starting = True
        try:
            with os.fdopen(fd, "wb") as out:
                await km.start_kernel(
                    cwd=str(cwd),
                    env=_kernel_environment(self._settings.kernel_threads),
                    stdout=out,
                    stderr=out,
                    extra_arguments=["--HistoryManager.hist_file=:memory:"],
                )
        except BaseException:
            if pid := getattr(km.provisioner, "pid", None):
                _kill_session(pid)
            raise
        else:
            pid = km.provisioner.pid
            self.live.add(pid)
        finally:
            self._starting = False
            if self._terminate_when_started:
                self.terminate()
        self._sender.send(("kernel", pid, True))
        logger.debug("started a %r kernel, pid %s", name, pid)
        return _Kernel(name=name, km=km, pid=pid, log=Path(log))


def _kernel_environment(threads: int) -> dict[str, str]:
    environment = dict(os.environ)
    for name in THREAD_VARIABLES:
        environment.setdefault(name, str(threads))
    return environment


@contextlib.contextmanager
def _logged_failure(what: str, *args: object) -> Iterator[None]:
    try:
        yield
    except Exception:
        logger.debug(what + " failed", *args, exc_info=True)


def _kill_session(sid: int) -> None:
    """SIGKILL the process group `sid` and every process in session `sid`.

    A kernel is launched as the leader of its own session, so this takes the
    kernel and whatever it forked, also children that moved to a process group
    of their own; `_kill_strays` finds those that started a session of their
    own. The session scan needs Linux's /proc; elsewhere only the group is killed.
    """
    with contextlib.suppress(OSError):
        os.killpg(sid, signal.SIGKILL)
    for process in _process_table():
        if process.session == sid:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGKILL)


def _become_subreaper() -> bool:
    """Make orphaned descendants of this process its children again, not init's (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_child_subreaper = 36
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _kill_strays(keep: Collection[int]) -> None:
    """SIGKILL and reap every descendant of this process outside the kernels in `keep`.

    For a worker that is a child subreaper: whatever a kernel started, even in
    a session of its own, stays below the worker when its parent dies.
    """
    me = os.getpid()
    for _ in range(100):  # each round reaps one generation of orphans
        children: dict[int, list[_Process]] = {}
        for process in _process_table():
            children.setdefault(process.ppid, []).append(process)
        strays, below = [], [p for p in children.get(me, []) if p.pid not in keep]
        while below:
            process = below.pop()
            strays.append(process)
            below += children.get(process.pid, [])
        if not strays:
            return
        for process in strays:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGKILL)
        for process in strays:
            if process.ppid == me:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(process.pid, 0)


@dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    session: int


def _process_table() -> list[_Process]:
    """Every process /proc shows (none where there is no /proc)."""
    table = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()  # state ppid pgrp session ...
            if len(fields) > 3:
                table.append(_Process(int(entry.name), int(fields[1]), int(fields[3])))
    return table


# -- small helpers --------------------------------------------------------------------


def strip_ansi(text: str) -> str:
    """Remove ANSI colour and cursor codes (tracebacks from IPython are coloured)."""
    return _ANSI.sub("", text)


def _one_line(error: BaseException) -> str:
    text = strip_ansi(str(error)).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first[:300]


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"
