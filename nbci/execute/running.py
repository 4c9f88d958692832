"""The job a worker is running: what it is, where its files go, its clock."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbci.execute.settings import WorkerSettings, output_paths
from nbci.model import Job

if TYPE_CHECKING:  # pragma: no cover
    from nbformat import NotebookNode

    from nbci.execute.kernels import Kernels
    from nbci.execute.protocol import Sender


@dataclass(frozen=True)
class WorkerContext:
    """What a worker runs every job with."""

    settings: WorkerSettings
    kernels: Kernels
    sender: Sender


@dataclass
class Clock:
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


@dataclass(frozen=True)
class RunningJob:
    """A job being run: its notebook (parameters injected), kernel, paths and clock."""

    job: Job
    worker: WorkerContext
    clock: Clock
    notebook: NotebookNode
    """Read with papermill, parameters injected; executed in place."""
    kernel_name: str
    notes: tuple[str, ...] = ()
    """Said about the job before it ran (e.g. where the parameters went)."""

    @property
    def settings(self) -> WorkerSettings:
        return self.worker.settings

    @property
    def source_dir(self) -> Path:
        """The notebook's folder: the kernel's working directory."""
        return (self.settings.root / self.job.path).parent

    @property
    def notebook_rel(self) -> str:
        """The executed notebook, relative to the output directory."""
        return output_paths(self.job.id)[0]

    @property
    def html_rel(self) -> str:
        return output_paths(self.job.id)[1]

    @property
    def output(self) -> Path:
        """Where the executed notebook is saved as it runs."""
        return self.settings.out_dir / self.notebook_rel
