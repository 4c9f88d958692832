"""The parent's pool of worker processes: hand out jobs, receive results, bury the dead."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from nbci.errors import RunError
from nbci.execute.process_tree import kill_session
from nbci.execute.protocol import (
    EXIT_TERMINATED,
    Assignment,
    Finished,
    KernelEvent,
    Log,
    Progress,
    Started,
    WorkerMessage,
)
from nbci.execute.settings import WorkerSettings, output_paths
from nbci.execute.text import describe_exit, seconds
from nbci.model import Job, NotebookResult, Status

if TYPE_CHECKING:  # pragma: no cover
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from pathlib import Path

    from nbci.execute.fork_client import Template
    from nbci.progress import OnEvent

logger = logging.getLogger(__name__)

HARD_TIMEOUT_GRACE_S = 30.0
"""Seconds past a job's timeout before the parent kills a worker that does not answer."""
WORKER_STOP_WAIT_S = 15.0
"""How long finished workers get to shut their warm kernels down and exit."""
WORKER_KILL_WAIT_S = 5.0


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


class Pool:
    """Worker processes (multiprocessing, `spawn`), one job each at a time."""

    def __init__(
        self, settings: WorkerSettings, size: int, on_event: OnEvent | None = None
    ) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._settings = settings
        self._size = size
        self._on_event = on_event
        self._workers: list[_Worker] = []
        self.terminated_from_outside = False
        """A worker was stopped by a signal the parent did not send: a SIGTERM, or a Ctrl-C
        that reached the process group while a worker was starting (before its handler)."""
        self._any_ready = False
        self._said: set[str] = set()
        """Messages logged once per run (the same from every worker)."""
        self._template: Template | None = None
        self._template_tried = False

    def __enter__(self) -> Pool:
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

    def close(self, *, force: bool, wake_fd: int | None = None) -> None:
        """Stop every worker; kill every kernel they reported. Never raises.

        Without `force` the workers finish their kernels first; `wake_fd`
        turning readable (a signal) makes it `force` from then on.
        """
        for worker in self._workers:
            if force:
                _signal_process(worker.process, signal.SIGTERM)
            else:
                self._retire(worker)
        stop_by = time.monotonic() + (WORKER_KILL_WAIT_S if force else WORKER_STOP_WAIT_S)
        if not force and wake_fd is not None and self._woken_while_stopping(wake_fd, stop_by):
            for worker in self._workers:
                _signal_process(worker.process, signal.SIGTERM)
            stop_by = time.monotonic() + WORKER_KILL_WAIT_S
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
        if self._template is not None:
            self._template.stop()
            self._template = None

    def _woken_while_stopping(self, wake_fd: int, stop_by: float) -> bool:
        """Wait until every worker has ended or `stop_by`; True if `wake_fd` woke it first."""
        from multiprocessing.connection import wait

        while (left := stop_by - time.monotonic()) > 0:
            sentinels = [w.process.sentinel for w in self._workers if w.process.is_alive()]
            if not sentinels:
                return False
            if wake_fd in wait([*sentinels, wake_fd], left):
                return True
        return False

    # -- the run's template

    def _start_template(self) -> None:
        """Start the base template once, before the first worker: the workers share it (one
        import of the kernel machinery and of each set of modules per run, not per worker)."""
        if self._template_tried:
            return
        self._template_tried = True
        from nbci.execute.template_keeper import start_template

        started = start_template(self._settings)
        if started is not None:
            self._template, self._settings = started

    # -- one worker

    def _spawn(self) -> _Worker:
        from nbci.execute.worker import worker_main

        self._start_template()
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main, args=(child_end, self._settings), name="nbci-worker", daemon=True
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
            worker.conn.send(Assignment(job, start_ahead=len(pending) >= self._size))

    def _retire(self, worker: _Worker) -> None:
        if not worker.retired:
            worker.retired = True
            with contextlib.suppress(OSError):
                worker.conn.send(None)

    def _receive(self, worker: _Worker) -> list[NotebookResult]:
        results = []
        try:
            while worker.conn.poll():
                result = self._handle(worker, worker.conn.recv())
                if result is not None:
                    results.append(result)
        except (EOFError, OSError):
            pass  # the worker is gone; its sentinel tells the rest
        return results

    def _handle(self, worker: _Worker, message: WorkerMessage) -> NotebookResult | None:
        worker.ready = self._any_ready = True
        match message:
            case Finished(result):
                worker.job = None
                worker.deadline = math.inf
                return result
            case Started() if worker.job is not None:  # its kernel answered: the clock runs
                worker.deadline = _hard_deadline(worker.job, 0.0)
            case KernelEvent(pid, alive):
                (worker.kernels.add if alive else worker.kernels.discard)(pid)
            case Progress(event) if self._on_event is not None:
                self._on_event(event)
            case Log(record):
                once = getattr(record, "nbci_once", False)
                if once and record.getMessage() in self._said:
                    return None
                target = logging.getLogger(record.name)
                if target.isEnabledFor(record.levelno):
                    target.handle(record)
                    if once:
                        self._said.add(record.getMessage())
        return None

    def _bury(self, worker: _Worker) -> list[NotebookResult]:
        """A worker process ended: kill its kernels; its job, if any, `died`."""
        self._workers.remove(worker)
        self._kill_kernels(worker)
        worker.conn.close()
        code = worker.process.exitcode
        if code == -signal.SIGINT and not worker.ready:  # Ctrl-C, not a broken start
            self.terminated_from_outside = True
            return []
        if not worker.ready and not self._any_ready:
            raise RunError(
                f"the worker processes cannot start ({describe_exit(code)}); a script that "
                "calls nbci must guard its code with `if __name__ == '__main__':` "
                "(multiprocessing 'spawn' imports the main module again)"
            )
        if worker.job is None:
            return []
        if code == EXIT_TERMINATED:
            self.terminated_from_outside = True
            return []
        logger.warning(
            "worker %s died (exit code %s) running %s", worker.process.pid, code, worker.job.id
        )
        message = f"the worker process running this notebook died ({describe_exit(code)})"
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
        limit = seconds(job.timeout)
        message = f"the notebook ran longer than its timeout ({limit}) and was killed"
        return [_parent_side_result(job, self._settings.out_dir, "timeout", message)]

    def _kill_kernels(self, worker: _Worker) -> None:
        """Kill the kernels a worker left behind (one that handled SIGTERM killed its own)."""
        if worker.process.exitcode != EXIT_TERMINATED:
            for pid in worker.kernels:
                kill_session(pid)
        worker.kernels.clear()


def _hard_deadline(job: Job, start_up: float) -> float:
    """When the parent gives up on a worker that does not answer (no limit without a timeout)."""
    if job.timeout <= 0:
        return math.inf
    return time.monotonic() + start_up + job.timeout + HARD_TIMEOUT_GRACE_S


def _parent_side_result(job: Job, out_dir: Path, status: Status, message: str) -> NotebookResult:
    notebook = output_paths(job.id)[0]
    return replace(
        NotebookResult.of(job, status, message),
        output=notebook if (out_dir / notebook).is_file() else None,
        notes=("results were not collected: the worker process ended abnormally",),
    )


def _signal_process(process: BaseProcess, signum: int) -> None:
    if process.pid is not None and process.is_alive():
        with contextlib.suppress(OSError):
            os.kill(process.pid, signum)
