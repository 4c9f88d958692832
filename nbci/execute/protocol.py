"""The pipe between the parent and a worker: what each side sends.

Parent → worker: an `Assignment` per job, then `None` (no more jobs).
Worker → parent: `Ready` once, `KernelEvent` for every kernel it starts or
stops, `Started` when a job's kernel answers (the job's clock runs), `Log`
records, and `Finished` with each job's result.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbci.model import Job, NotebookResult

if TYPE_CHECKING:  # pragma: no cover
    from multiprocessing.connection import Connection

EXIT_TERMINATED = 128 + signal.SIGTERM
"""A worker's exit code after SIGTERM (it kills its kernels first)."""


@dataclass(frozen=True)
class Assignment:
    job: Job
    start_ahead: bool
    """Whether to start a kernel ahead of need for a job after this one."""


@dataclass(frozen=True)
class Ready:
    """The worker got past start-up."""


@dataclass(frozen=True)
class KernelEvent:
    pid: int
    """The kernel's pid, also its process group and session id."""
    alive: bool


@dataclass(frozen=True)
class Started:
    """The running job's kernel answered: from now on its timeout counts."""


@dataclass(frozen=True)
class Log:
    record: logging.LogRecord


@dataclass(frozen=True)
class Finished:
    result: NotebookResult


WorkerMessage = Ready | KernelEvent | Started | Log | Finished


class Sender:
    """The worker's end of the pipe, shared by the job loop and log records from any thread."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: WorkerMessage) -> None:
        with self._lock:
            self._conn.send(message)


def receive_assignment(conn: Connection) -> Assignment | None:
    """The worker's next job; None: stop."""
    try:
        message: Assignment | None = conn.recv()
    except EOFError:  # the parent is gone
        return None
    return message
