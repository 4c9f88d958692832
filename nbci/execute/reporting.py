"""What a running job tells the parent on the way: it started, its cells, its output.

Sent over the worker's pipe as `Progress` messages; the parent hands them to
`ExecuteOptions.on_event` (`nbci run` prints start lines, heartbeats and, with
`--log-output`, the notebook's output).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from nbci.execute.protocol import Progress
from nbci.progress import CellStarted, JobStarted, Output

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from nbci.execute.running import RunningJob


def code_cells_to_run(notebook: Any) -> int:
    """The cells nbclient executes: code cells with some source."""
    return sum(1 for c in notebook.cells if c.cell_type == "code" and c.source.strip())


def announce_start(running: RunningJob) -> None:
    cells = code_cells_to_run(running.notebook)
    running.worker.sender.send(Progress(JobStarted(running.job.id, cells)))


def cell_hook(running: RunningJob) -> Callable[..., None]:
    """nbclient's `on_cell_execute`: called as each code cell starts."""
    total = code_cells_to_run(running.notebook)
    count = 0

    def cell_started(**_: Any) -> None:
        nonlocal count
        count += 1
        running.worker.sender.send(Progress(CellStarted(running.job.id, count, total)))

    return cell_started


class OutputStream:
    """A file papermill writes a notebook's stdout or stderr to (`stdout_file`)."""

    def __init__(self, running: RunningJob, stream: Literal["stdout", "stderr"]) -> None:
        self._running = running
        self._stream: Literal["stdout", "stderr"] = stream

    def write(self, text: str) -> int:
        event = Output(self._running.job.id, self._stream, str(text))
        self._running.worker.sender.send(Progress(event))
        return len(text)

    def flush(self) -> None:
        """Every write is sent at once."""
