"""A worker process: run the jobs the parent sends, one at a time, until it sends None."""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from nbci.execute.job import run_job_safely
from nbci.execute.kernels import Kernels
from nbci.execute.protocol import Finished, Log, Ready, Sender, receive_assignment
from nbci.execute.running import WorkerContext

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from pathlib import Path

    from nbci.execute.settings import WorkerSettings
    from nbci.model import Job, NotebookResult

logger = logging.getLogger(__name__)

LOWEST_PRIORITY = 19
"""The nice value of the thread that warms a worker up."""


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """Entry point of a worker (spawned by the pool)."""
    # Ctrl-C reaches the whole process group; the parent decides what happens. A handler
    # that does nothing, not SIG_IGN: an ignored signal would be inherited by the kernels.
    signal.signal(signal.SIGINT, _do_nothing)
    sender = Sender(conn)
    sender.send(Ready())
    _forward_logs(sender, settings.log_level)
    kernels = Kernels(settings, sender)

    signal.signal(signal.SIGTERM, lambda _signum, _frame: kernels.terminate())
    _watch_parent(settings.parent_pid, kernels)
    context = WorkerContext(settings, kernels, sender)
    try:
        if kernels.preloading:
            _import_papermill()  # while the template imports (a kernel is forked per notebook)
            context = replace(context, settings=_warm_up_aside(settings, kernels))
        else:
            kernels.warm_up(settings.kernel_hint, settings.root)
            _import_papermill()  # while the warm kernel boots
        while (assignment := receive_assignment(conn)) is not None:
            kernels.start_ahead = assignment.start_ahead
            sender.send(Finished(run_job_safely(assignment.job, context)))
            kernels.reap(wait=False)
    finally:
        kernels.close()
    _leave()


def _leave() -> None:
    """End the worker without tearing down its interpreter.

    Its results and logs are sent and its kernels are gone; unloading every
    module papermill and nbconvert loaded took 0.2 s at the end of each run.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _warm_up_aside(settings: WorkerSettings, kernels: Kernels) -> WorkerSettings:
    """Have `settings.warm_up` run when the worker first waits for a kernel (it is about
    to ask for its template), in a thread at the lowest CPU priority; the settings whose
    `after_notebook` first waits for it (both load the same things).

    Started any earlier, it would share the interpreter (its lock) with the first job's
    reading and parameterizing, and the worker would ask for its template later.
    """
    warm_up, after = settings.warm_up, settings.after_notebook
    if warm_up is None:
        return settings
    thread = threading.Thread(target=_warm_up, args=(warm_up,), name="nbci-warm-up", daemon=True)
    kernels.on_first_wait = thread.start
    if after is None:
        return settings

    def after_warm_up(
        result: NotebookResult, job: Job, *, notebook: Path, out_dir: Path, html: str
    ) -> NotebookResult:
        if thread.ident is not None:  # started
            thread.join()
        return after(result, job, notebook=notebook, out_dir=out_dir, html=html)

    return replace(settings, after_notebook=after_warm_up)


def _warm_up(warm_up: Callable[[], None]) -> None:
    """Run `warm_up` in this thread at nice 19 (Linux lowers this thread only); where this
    thread's priority cannot be lowered, not at all. Never raises."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
        warm_up()
    except Exception:
        logger.debug("warming up the worker failed", exc_info=True)


def _do_nothing(_signum: int, _frame: object) -> None:
    pass


PAPERMILL_REMOTE_STORES = (
    "papermill.s3",
    "papermill.adl",
    "papermill.abs",
    "gcsfs",
    "pyarrow.fs",
    "github",
)
"""Clients papermill imports for the remote stores it supports (S3, Azure, GCS, HDFS,
GitHub) whenever they are installed: 0.2 s of each worker's start here. A worker
reads and writes local files only."""


def _import_papermill() -> None:
    """Import papermill without its remote stores' clients, and jsonschema (which nbformat
    imports) without the libraries that check `format`s: nothing here checks one, and they
    took 1.1 s of each worker's start (`schemas.import_jsonschema`). All stay importable."""
    from nbci.schemas import import_jsonschema

    import_jsonschema()
    blocked = [name for name in PAPERMILL_REMOTE_STORES if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import` raises ImportError
    try:
        import papermill.execute  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


class _ForwardHandler(logging.handlers.QueueHandler):
    """Sends log records to the parent, which hands them to its own loggers.

    logging's own queue handler prepares each record (message formatted with its
    traceback, arguments dropped, so it pickles), and a record that cannot be sent
    goes to `handleError`: a "--- Logging error ---" on stderr, never a broken job
    and never silence. Records of other libraries (papermill, nbclient, traitlets)
    are demoted to DEBUG: their errors ("Timeout waiting for execute reply") are
    statuses here.
    """

    def __init__(self, sender: Sender) -> None:
        super().__init__(queue=None)  # type: ignore[arg-type]  # `enqueue` sends instead
        self._sender = sender

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        portable: logging.LogRecord = super().prepare(record)
        if not record.name.startswith("nbci"):
            portable.levelno, portable.levelname = logging.DEBUG, "DEBUG"
        return portable

    def enqueue(self, record: logging.LogRecord) -> None:
        self._sender.send(Log(record))


def _forward_logs(sender: Sender, level: int) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_ForwardHandler(sender)]
    root.setLevel(level)
    logging.captureWarnings(True)


def _watch_parent(parent_pid: int, kernels: Kernels) -> None:
    """If the parent disappears (killed hard), kill the kernels and leave."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        kernels.kill_all()
        os._exit(1)

    threading.Thread(target=watch, name="nbci-parent-watch", daemon=True).start()
