"""The papermill adapter: run a notebook's cells in our kernel, map the outcome to a status.

papermill's engine loop is reproduced here with a kernel the worker started
(warm kernels), per-cell limits that also enforce the notebook's timeout, and
nbclient's and papermill's exceptions translated into statuses and `ErrorInfo`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any

from nbci.execute.reporting import OutputStream, cell_hook
from nbci.execute.text import describe_exit, one_line, seconds, strip_ansi
from nbci.model import ErrorInfo, Status

if TYPE_CHECKING:  # pragma: no cover
    from nbformat import NotebookNode

    from nbci.execute.kernels import Kernel
    from nbci.execute.running import Clock, RunningJob

logger = logging.getLogger(__name__)

_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.*)$")
"""The last line of an error printed to stderr: `UsageError: Line magic function ...`."""

OnReady = Callable[[Any], Awaitable[None]]
"""Called with the kernel client once the kernel answers, before the first cell."""


@dataclass(frozen=True)
class Outcome:
    status: Status
    error: ErrorInfo | None = None


def execute(running: RunningJob, kernel: Kernel, on_ready: OnReady) -> Outcome:
    """Run the cells in `kernel`, save the notebook as it runs, map the outcome to a status."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors

    nb, clock = running.notebook, running.clock
    ran: list[Any] = []
    try:
        executed = _run_cells(running, kernel, on_ready)
        ran = list(executed.cells)  # papermill's error banners shift the indices below
        raise_for_execution_errors(executed, str(running.output))
    except PapermillExecutionError as error:
        failing = ran[error.cell_index] if error.cell_index < len(ran) else None
        return Outcome("failed", _failure(error, failing, cell_number(nb, failing)))
    except CellTimeoutError as error:
        message = _timeout_message(nb, clock, waiting_for_output="IOPub" in str(error))
        return Outcome("timeout", ErrorInfo(cell=cell_number(nb, clock.cell), message=message))
    except DeadKernelError:
        cell = cell_number(nb, clock.cell)
        message = f"the kernel died ({describe_exit(kernel.exit_code())}) while running cell {cell}"
        return Outcome("died", ErrorInfo(cell=cell, message=message, traceback=kernel.log_tail()))
    except Exception as error:  # a kernel that never came up, or a broken connection
        logger.warning("%s: execution failed", running.output.name, exc_info=True)
        message = f"the kernel failed: {type(error).__name__}: {one_line(error)}"
        return Outcome("died", ErrorInfo(message=message, traceback=kernel.log_tail()))
    return Outcome("ok")


def _run_cells(running: RunningJob, kernel: Kernel, on_ready: OnReady) -> NotebookNode:
    """papermill's engine loop (`Engine.execute_notebook`) with our pre-started kernel.

    The notebook is saved as it runs (`_manager_class`) and at the end, also
    when an exception escapes.
    """
    from nbclient.exceptions import CellTimeoutError
    from papermill.clientwrap import PapermillNotebookClient

    manager = _manager_class()(
        running.notebook, output_path=str(running.output), progress_bar=False
    )
    client: Any = None

    def notebook_started(notebook: object) -> Awaitable[None]:  # nbclient passes it by name
        return on_ready(client.kc)

    streams: dict[str, Any] = {}
    if running.settings.stream_output:
        streams = {"stdout_file": OutputStream(running, "stdout")}
        streams["stderr_file"] = OutputStream(running, "stderr")
    client = PapermillNotebookClient(
        manager,
        km=kernel.km,
        kernel_name=kernel.name,
        timeout_func=running.clock.cell_limit,
        startup_timeout=math.ceil(running.settings.start_timeout),
        log=logging.getLogger("papermill"),
        on_notebook_start=notebook_started,
        on_cell_execute=cell_hook(running),
        **streams,
    )
    manager.notebook_start()
    try:
        executed: NotebookNode = client.execute()
        return executed
    except CellTimeoutError:
        _keep_what_the_interrupt_sends(client, kernel, running.clock.cell)
        raise
    finally:
        manager.cleanup_pbar()
        manager.notebook_complete()
        if client.kc is not None:
            client.kc.stop_channels()


SAVE_EVERY_S = 1.0
"""How often, at most, a cell's start or end saves the executed notebook as it runs."""


@lru_cache(maxsize=1)
def _manager_class() -> Any:
    """papermill's NotebookExecutionManager, saving less often.

    papermill saves the whole notebook (JSON encoding, atomic write) when it starts, at
    each cell's start and end, every 30 s while a cell sends output, and at the end: its
    encoding was a visible share of a worker's time. Here a cell's start or end saves
    only `SAVE_EVERY_S` after the last save; the rest still save. A failing notebook
    is saved at the end with its error as before (`_run_cells` ends it in a `finally`);
    a worker killed mid-run leaves what was saved last.
    """
    from papermill.engines import NotebookExecutionManager

    base: Any = NotebookExecutionManager

    class Manager(base):  # type: ignore[misc]
        throttled = False
        saved_at = -math.inf

        def save(self, **kwargs: Any) -> None:
            if self.throttled and time.monotonic() - self.saved_at < SAVE_EVERY_S:
                return
            super().save(**kwargs)
            self.saved_at = time.monotonic()

        def cell_start(self, *args: Any, **kwargs: Any) -> None:
            self._throttled(super().cell_start, *args, **kwargs)

        def cell_complete(self, *args: Any, **kwargs: Any) -> None:
            self._throttled(super().cell_complete, *args, **kwargs)

        def _throttled(self, step: Callable[..., None], *args: Any, **kwargs: Any) -> None:
            self.throttled = True
            try:
                step(*args, **kwargs)
            finally:
                self.throttled = False

    return Manager


INTERRUPT_GRACE_S = 2.0
"""How long a cell stopped by a timeout has, once interrupted, to send the rest of its output."""


def _keep_what_the_interrupt_sends(client: Any, kernel: Kernel, cell: Any) -> None:
    """Interrupt the cell nbclient gave up on and keep what the kernel sends for it.

    nbclient stops listening at the timeout, so the executed notebook showed nothing of
    how the cell ended; interrupted, the kernel sends its `KeyboardInterrupt` traceback
    (what papermill's notebook shows), with any output not read yet. A kernel that does
    not answer within `INTERRUPT_GRACE_S` is left to the usual kill.
    """
    from jupyter_core.utils import run_sync
    from nbclient.exceptions import CellExecutionComplete

    index = next((i for i, c in enumerate(client.nb.cells) if c is cell), None)
    if index is None or client.kc is None:
        return

    async def listen() -> None:
        await kernel.km.interrupt_kernel()
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await client.kc.iopub_channel.get_msg(timeout=left)
            except Empty:
                return
            if message["parent_header"].get("msg_type") != "execute_request":
                continue
            try:
                client.process_message(message, cell, index)
            except CellExecutionComplete:
                return

    try:
        run_sync(listen)()
    except Exception:  # the timeout stands whatever happens here
        logger.debug("%s: no output kept after the interrupt", kernel.name, exc_info=True)


async def change_directory(kc: Any, cwd: Path, timeout: float) -> None:
    """Move the kernel into the notebook's folder without touching its namespace or history.

    `multiprocessing`, when already imported (pre-imported in a forked
    kernel), gets the folder as its `ORIGINAL_DIR`, as if the notebook had
    imported it there: `spawn` workers put that folder on their `sys.path`.
    """
    code = (
        f"__import__('os').chdir({str(cwd)!r})\n"
        "if 'multiprocessing.process' in __import__('sys').modules:\n"
        "    __import__('sys').modules['multiprocessing.process'].ORIGINAL_DIR = "
        "__import__('os').getcwd()"
    )
    reply = await kc.execute_interactive(code, silent=True, store_history=False, timeout=timeout)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cannot change the kernel's directory to {cwd}")


def _failure(error: Any, failing: Any, cell: int | None) -> ErrorInfo:
    """A `failed` job's error from papermill's PapermillExecutionError.

    An error that left no error output (a missing line magic: IPython's
    UsageError goes to stderr) comes from papermill as an empty
    CellExecutionError; the message the user saw in the cell's stderr is
    used instead.
    """
    traceback = error.traceback if isinstance(error.traceback, list) else [str(error.traceback)]
    ename, evalue = str(error.ename), strip_ansi(str(error.evalue))
    text = strip_ansi("\n".join(map(str, traceback)))
    if ename == "CellExecutionError" and not evalue.strip():
        stderr = _stderr_of(failing)
        if stderr:
            ename, evalue = _last_error_line(stderr)
            text = stderr
    return ErrorInfo(cell=cell, ename=ename, evalue=evalue, traceback=text)


def _stderr_of(cell: Any) -> str:
    outputs = cell.get("outputs", []) if cell is not None else []
    texts = [
        "".join(o.get("text", "")) if isinstance(o.get("text"), list) else str(o.get("text", ""))
        for o in outputs
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
    ]
    return strip_ansi("".join(texts)).strip()


def _last_error_line(stderr: str) -> tuple[str, str]:
    """`UsageError: Line magic function ... not found.` → its name and message."""
    last = stderr.splitlines()[-1].strip()
    match = _ERROR_LINE.match(last)
    if match:
        return match.group(1), match.group(2)
    return "CellExecutionError", last


def cell_number(nb: NotebookNode, cell: Any) -> int | None:
    """The cell's number as Jupyter shows it: `In [N]`, `Cell In[N]` in tracebacks.

    That is its execution count; a cell that has none yet gets the count it
    would have: 1 + the code cells with source before it in the executed
    notebook (papermill's `injected-parameters` cell included; nbclient skips
    empty cells and so does the count).
    """
    if cell is None:
        return None
    count = cell.get("execution_count")
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        return count
    before = 0
    for other in nb.cells:
        if other is cell:
            return before + 1
        if other.cell_type == "code" and other.source.strip():
            before += 1
    return None


def _timeout_message(nb: NotebookNode, clock: Clock, *, waiting_for_output: bool) -> str:
    cell = cell_number(nb, clock.cell)
    if waiting_for_output:  # nbclient's iopub_timeout: the reply came, its outputs did not
        return f"cell {cell} finished but its output did not arrive in time"
    if clock.notebook_bound:
        limit = seconds(clock.timeout)
        return f"the notebook ran longer than its timeout ({limit}), in cell {cell}"
    return f"cell {cell} ran longer than the cell timeout ({seconds(clock.cell_timeout)})"
