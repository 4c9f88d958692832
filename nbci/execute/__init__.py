"""Execute: run jobs in worker processes, each notebook in a fresh kernel of its own.

How it fits together (one module per concern):

- `pool` — the parent keeps a pool of long-lived worker processes
  (multiprocessing, `spawn`: no forked threads or zmq sockets), hands one job
  at a time to an idle worker and yields each result as it arrives;
  `stop_signals` turns SIGINT/SIGTERM into a flag and a wake-up.
- `worker` and `protocol` — a worker's loop, the messages on its pipe, its log
  records forwarded to the parent. Workers import papermill once, not per job.
- `job` and `running` — one job: read the notebook, inject parameters
  (papermill's way), run it, with the job described by one `RunningJob`.
- `engine` — the papermill adapter: cells run with papermill's pieces in our
  own kernel; nbclient's errors become statuses.
- `settings` — what a run is given (`ExecuteOptions`) and each worker is sent
  once; its `after_notebook` is called in the worker for each executed notebook
  before it answers (the pipeline passes collect and render, off the parent's
  critical path: the executor imports no later stage), and its `warm_up` once per
  worker while it waits for its template (what collecting costs only once).
- `kernels` — a fresh kernel per job, started ahead of need (warm kernels).
- `preload`, `template_keeper`, `fork_client`, `fork_server`, `provisioner` —
  Python kernels forked from a template process that already imported the
  kernel machinery and the notebook's own first third-party imports (a
  jupyter_client kernel provisioner), one base template per run started by
  the parent and shared by the workers; anything else starts normally.
- `process_tree` — a kernel and everything it started is killed after its job
  (sessions, a child subreaper on Linux, psutil's process table); the parent
  kills the kernels of a worker that died (its job is then `died`).

SIGINT/SIGTERM in the parent: the workers get SIGTERM and kill their kernels
(the parent kills those of a worker that does not answer), and `execute_jobs`
raises `Interrupted` after yielding what had finished. Once every result is
in, the workers' last kernels may take a while to exit: the caller writes its
reports meanwhile and waits for them at the end (`execute_jobs`'s `ending`).
"""

from __future__ import annotations

import logging
import signal
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from nbci.errors import Interrupted
from nbci.execute.pool import Pool
from nbci.execute.settings import AfterNotebook, ExecuteOptions, WorkerSettings
from nbci.execute.stop_signals import StopSignals
from nbci.execute.text import strip_ansi
from nbci.model import Job, NotebookResult

__all__ = ["AfterNotebook", "ExecuteOptions", "execute_jobs", "strip_ansi"]

logger = logging.getLogger(__name__)


def execute_jobs(
    jobs: Sequence[Job], options: ExecuteOptions, ending: ExitStack | None = None
) -> Iterator[NotebookResult]:
    """Run every job; yield each one's result as it finishes (in any order).

    A job's failure never stops the others. On SIGINT or SIGTERM (while this
    generator is active, in the main thread) the workers and their kernels are
    stopped and `Interrupted` is raised after the results that had finished
    were yielded; the caller knows which jobs are missing.

    With `ending`, the end of the run is left to it: once every result is in,
    the workers finish their kernels (a kernel takes a while to exit) while the
    caller goes on, and `ending` waits for them when it closes. Until then a
    signal stops the workers and kernels at once, and then does what it does
    without nbci (SIGINT: KeyboardInterrupt; SIGTERM: the process ends).
    """
    pending = deque(jobs)
    if not pending:
        return
    (options.out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    size = max(1, min(options.workers, len(pending)))
    preload = options.preload_modules if options.preload else None
    folders = tuple(sorted({(options.root / job.path).parent.resolve() for job in jobs}))
    with ExitStack() as own:
        all_in = False

        def signal_again(*_: object) -> None:
            """A signal that came after the last result, once the workers are stopped."""
            if all_in and stop.signum is not None:
                signal.raise_signal(stop.signum)

        own.push(signal_again)
        scratch = own.enter_context(tempfile.TemporaryDirectory(prefix="nbci-kernels-"))
        stop = own.enter_context(StopSignals())
        pool = Pool(
            WorkerSettings.make(options, pending[0], Path(scratch), preload, folders),
            size,
            options.on_event,
        )

        def close(exc_type: object, *_: object) -> None:
            stop.act_at_once(None)  # from here the wait below watches for signals
            force = pool.busy or (exc_type is not None and not all_in)
            pool.close(force=force, wake_fd=stop.fd)

        own.push(close)

        def interrupted() -> bool:
            return stop.signum is not None or pool.terminated_from_outside

        pool.dispatch(pending)
        while pool.busy and not interrupted():
            results = pool.poll(stop.fd)
            if not interrupted():
                pool.dispatch(pending)
            yield from results
        if interrupted():
            reason = signal.Signals(stop.signum).name if stop.signum else "a signal to its workers"
            logger.info("interrupted by %s: stopping the workers and their kernels", reason)
            yield from pool.arrived()
            pool.close(force=True)
            raise Interrupted(f"the run was interrupted by {reason}")
        all_in = True
        if ending is not None:
            left, ended = own.pop_all(), False

            def end(*exc_info: Any) -> None:
                """Once, from `ending` or from a signal's handler, whichever comes first."""
                nonlocal ended
                if not ended:
                    ended = True
                    left.__exit__(*exc_info)

            ending.push(end)
            stop.act_at_once(lambda _signum: end(None, None, None))
