"""What a job tells while it runs: it started, which cell it is in, what it printed.

A worker sends these to the parent as they happen; `nbci run` shows them in the
log (a start line, heartbeats, and with `--log-output` the notebook's output).
They are never stored: results say how a job ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class JobStarted:
    """The job's kernel answered and its first cell is about to run."""

    job_id: str
    cells: int
    """Code cells to run (papermill's injected-parameters cell included)."""


@dataclass(frozen=True)
class CellStarted:
    job_id: str
    cell: int
    """1-based among the code cells, as `JobStarted.cells` counts them."""
    cells: int


@dataclass(frozen=True)
class Output:
    """Text the notebook wrote to stdout or stderr (any number of lines, maybe partial)."""

    job_id: str
    stream: Literal["stdout", "stderr"]
    text: str


JobEvent = JobStarted | CellStarted | Output
OnEvent = Callable[[JobEvent], None]
