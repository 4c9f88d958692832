"""What a run of jobs is given (`ExecuteOptions`) and what each worker is sent once."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from nbci.model import Job, NotebookResult
from nbci.progress import OnEvent

if TYPE_CHECKING:  # pragma: no cover
    from nbci.execute.fork_client import BaseTemplate

DEFAULT_KERNEL = "python3"


class AfterNotebook(Protocol):
    """What a worker does with a notebook that ran and was saved, before it answers.

    Given the job's result, the executed notebook, the output folder and where its
    HTML goes (relative to `out_dir`); returns the result to send. The pipeline
    passes the collect stage's `nbci.notebook_outputs.collect_outputs`: this work
    stays in the workers, off the parent's critical path, and the executor imports
    no later stage. Workers are spawned, so it must be a module-level function
    (pickled by reference).
    """

    def __call__(
        self, result: NotebookResult, job: Job, *, notebook: Path, out_dir: Path, html: str
    ) -> NotebookResult: ...


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
    preload: bool = True
    """Fork Python kernels from a template that pre-imported what the notebooks import."""
    preload_modules: tuple[str, ...] = ()
    """Modules to pre-import on top of the notebooks' own top-level imports."""
    on_event: OnEvent | None = None
    """Called in the parent with what running jobs tell (`nbci.progress`)."""
    stream_output: bool = False
    """Also send each notebook's stdout/stderr to `on_event` as it is produced."""
    hidden_variables: tuple[str, ...] = ()
    """Environment variables kernels do not get, besides `kernels.SECRET_VARIABLES`."""
    after_notebook: AfterNotebook | None = None
    """Called in the worker for each executed notebook; None: its result as it ran."""
    warm_up: Callable[[], None] | None = None
    """Called once in each worker while it waits for its first kernel's template (never
    without templates), in a thread at the lowest CPU priority: what `after_notebook`
    does only once per process (imports, compiled templates). The first `after_notebook`
    waits for it; a failure is logged at debug level and ignored. A module-level
    function, as `after_notebook` is."""


@dataclass(frozen=True)
class WorkerSettings:
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
    preload: tuple[str, ...] | None = None
    """Configured modules to pre-import on top of each notebook's own first imports
    (`preload.modules_for`); None: no templates, kernels start normally."""
    notebook_folders: tuple[Path, ...] = ()
    """The planned notebooks' folders: modules there are the project's."""
    template: BaseTemplate | None = None
    """The run's base template, started by the parent (`template_keeper.start_template`);
    None: kernels start normally."""
    kernel_environment: Mapping[str, str] | None = None
    """With a template: the environment it was started with, which every kernel gets (a
    worker's own may differ: it inherits what the parent's C library was told, such as a
    COLUMNS set by `setenv` that `os.environ` never saw). None: each worker's own
    (`kernels.kernel_environment`)."""
    stream_output: bool = False
    hidden_variables: tuple[str, ...] = ()
    after_notebook: AfterNotebook | None = None
    warm_up: Callable[[], None] | None = None

    @classmethod
    def make(
        cls,
        options: ExecuteOptions,
        first_job: Job,
        scratch: Path,
        preload: tuple[str, ...] | None = None,
        notebook_folders: tuple[Path, ...] = (),
    ) -> WorkerSettings:
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
            preload=preload,
            notebook_folders=notebook_folders,
            stream_output=options.stream_output,
            hidden_variables=options.hidden_variables,
            after_notebook=options.after_notebook,
            warm_up=options.warm_up,
        )


def output_paths(job_id: str) -> tuple[str, str]:
    """The executed notebook and its HTML, relative to the output directory."""
    from nbci._files import safe_name

    name = safe_name(job_id)
    return f"notebooks/{name}.ipynb", f"notebooks/{name}.html"
