"""Running one job in a worker: read and parameterize the notebook, run it, hand it on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nbci.execute.engine import change_directory, execute
from nbci.execute.protocol import Started
from nbci.execute.reporting import announce_start
from nbci.execute.running import Clock, RunningJob, WorkerContext
from nbci.execute.settings import output_paths
from nbci.execute.text import one_line
from nbci.model import ErrorInfo, Job, NotebookResult

if TYPE_CHECKING:  # pragma: no cover
    from nbformat import NotebookNode

    from nbci.execute.kernels import Kernel, Kernels

logger = logging.getLogger(__name__)

KERNEL_START_ATTEMPTS = 2
"""A kernel that dies before it answers is replaced once (nothing of the notebook ran)."""
KERNEL_ALIASES = {"python": "python3"}
"""Names jupyter_client's KernelManager (and so papermill) runs as another kernel."""


class _Invalid(Exception):
    """The job cannot run: its message is one line for the reader."""


def run_job_safely(job: Job, worker: WorkerContext) -> NotebookResult:
    """`run_job`, with a bug of ours reported as the job's error instead of ending the worker."""
    try:
        return run_job(job, worker)
    except Exception as error:
        logger.exception("%s: internal error", job.id)
        message = f"nbci failed running this notebook: {type(error).__name__}: {one_line(error)}"
        return NotebookResult.of(job, "died", message)


def run_job(job: Job, worker: WorkerContext) -> NotebookResult:
    """Execute one job and hand it to `after_notebook`. Never raises for the job's own problems.

    `duration_s` covers reading, waiting for the kernel and running the cells,
    not what `after_notebook` does afterwards (collecting and rendering).
    """
    out_dir = worker.settings.out_dir
    for stale in output_paths(job.id):  # from an earlier run
        (out_dir / stale).unlink(missing_ok=True)
    clock = Clock(job.cell_timeout, job.timeout)
    logger.debug("running %s", job.id)
    try:
        running = _prepare(job, worker, clock)
    except _Invalid as invalid:
        return replace(
            NotebookResult.of(job),
            status="invalid",
            duration_s=clock.elapsed(),
            error=ErrorInfo(message=str(invalid)),
        )
    modules = worker.kernels.modules_for(worker.settings.root / job.path)
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            kernel = worker.kernels.take(running.kernel_name, running.source_dir, modules)
        except Exception as error:
            name = running.kernel_name
            logger.warning("%s: cannot start a %r kernel", job.id, name, exc_info=True)
            message = f"the {name!r} kernel could not be started: {one_line(error)}"
            return replace(
                NotebookResult.of(job),
                status="died",
                duration_s=clock.elapsed(),
                error=ErrorInfo(message=message),
            )
        result = _run_in_kernel(running, kernel, may_retry=attempt < KERNEL_START_ATTEMPTS)
        if result is not None:
            break
        logger.warning("%s: the kernel died before it answered; starting another", job.id)
    assert result is not None
    logger.debug("%s: %s in %.1f s", job.id, result.status, result.duration_s)
    return result


def _run_in_kernel(
    running: RunningJob, kernel: Kernel, *, may_retry: bool
) -> NotebookResult | None:
    """Run the notebook in `kernel`, hand it to `after_notebook`, then release the kernel.

    None says to try again in a new kernel (only when `may_retry`): this one
    died before it ever answered (two kernels starting at once can race for
    the same free port), so nothing of the notebook ran.
    """
    worker, clock = running.worker, running.clock

    async def on_ready(kc: Any) -> None:
        """The kernel answers: move it to the notebook's folder, tell the parent, warm the next.

        A kernel launched there already has its working directory, `sys.path` and (forked)
        `multiprocessing`'s `ORIGINAL_DIR` as a notebook started there would: no round trip.
        """
        if kernel.cwd != running.source_dir:
            await change_directory(kc, running.source_dir, running.settings.start_timeout)
        clock.start()
        worker.sender.send(Started())
        logger.debug("%s: the kernel answered after %.2f s", running.job.id, clock.elapsed())
        announce_start(running)
        await worker.kernels.prestart(kernel.name, running.source_dir, kernel.modules)
        logger.debug("%s: the next kernel started after %.2f s", running.job.id, clock.elapsed())

    graceful = False
    try:
        outcome = execute(running, kernel, on_ready)
        if may_retry and outcome.status == "died" and not clock.kernel_ready:
            return None
        graceful = outcome.status in ("ok", "failed")  # the kernel is idle and can exit cleanly
        if graceful:
            kernel.request_shutdown()  # it exits while `after_notebook` runs
        result = replace(
            NotebookResult.of(running.job),
            status=outcome.status,
            error=outcome.error,
            duration_s=clock.elapsed(),
            output=running.notebook_rel if running.output.is_file() else None,
            notes=running.notes + _fresh_note(running.job, kernel),
            kernel=running.kernel_name,
        )
        after = running.settings.after_notebook
        if after is not None and result.output is not None:
            result = after(
                result,
                running.job,
                notebook=running.output,
                out_dir=running.settings.out_dir,
                html=running.html_rel,
            )
        return result
    finally:
        worker.kernels.release(kernel, graceful=graceful)


def _unreadable(error: BaseException) -> str:
    """Why a notebook could not be read; for broken JSON, where (nbformat's message has not)."""
    import json

    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, json.JSONDecodeError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return one_line(error)
    return f"invalid JSON at line {cause.lineno}, column {cause.colno}: {cause.msg}"


def _fresh_note(job: Job, kernel: Kernel) -> tuple[str, ...]:
    """Why this notebook's kernel started fresh although it was to be forked (said, and noted)."""
    if kernel.fresh_because is None:
        return ()
    note = f"its kernel started fresh, without pre-imported modules: {kernel.fresh_because}"
    logger.warning("%s: %s", job.id, note)
    return (note,)


def _prepare(job: Job, worker: WorkerContext, clock: Clock) -> RunningJob:
    """Read the notebook, resolve its kernel, inject the parameters (papermill's way)."""
    from papermill.execute import prepare_notebook_metadata, remove_error_markers
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from papermill.utils import find_first_tagged_cell_index

    source = worker.settings.root / job.path
    output = worker.settings.out_dir / output_paths(job.id)[0]
    if not source.is_file():
        raise _Invalid(f"{job.path}: no such notebook")
    try:
        nb = load_notebook_node(str(source))
        nb = remove_error_markers(prepare_notebook_metadata(nb, str(source), str(output)))
    except Exception as error:  # nbformat raises many kinds for a bad file
        raise _Invalid(f"{job.path}: not a readable notebook: {_unreadable(error)}") from error
    kernel_name, language = _resolve_kernel(job, nb, worker.kernels)
    running = RunningJob(job, worker, clock, notebook=nb, kernel_name=kernel_name)
    if not job.parameters:
        return running
    notes: tuple[str, ...] = ()
    if find_first_tagged_cell_index(nb, "parameters") < 0:
        notes = ("no cell is tagged 'parameters': the parameters were injected at the top",)
    try:
        nb = parameterize_notebook(
            nb, dict(job.parameters), kernel_name=kernel_name, language=language
        )
    except Exception as error:  # papermill's translators raise for values they cannot write
        raise _Invalid(f"{job.path}: cannot inject the parameters: {one_line(error)}") from error
    return replace(running, notebook=nb, notes=notes)


def _resolve_kernel(job: Job, nb: NotebookNode, kernels: Kernels) -> tuple[str, str]:
    """The kernel name and language for a job; `_Invalid` when there is no such kernel."""
    from jupyter_client.kernelspec import NoSuchKernel

    kernelspec = nb.metadata.get("kernelspec")
    own = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    asked = job.kernel or own
    if not asked or not isinstance(asked, str):
        raise _Invalid(
            f"{job.path}: names no kernel (no metadata.kernelspec) and none is configured"
        )
    name = installed_kernel_name(asked, kernels.installed())
    try:
        spec = kernels.spec(name)
    except NoSuchKernel as error:
        installed = ", ".join(sorted(kernels.installed())) or "none"
        raise _Invalid(f"{job.path}: unknown kernel {asked!r} (installed: {installed})") from error
    if job.kernel and job.kernel != own:
        nb.metadata["kernelspec"] = {
            "name": name,
            "display_name": spec.display_name,
            "language": spec.language,
        }
    return name, spec.language


def installed_kernel_name(name: str, installed: Sequence[str]) -> str:
    """The installed kernel a notebook's kernel name means, as jupyter_client finds it.

    `python` is `python3` (KernelManager's alias), and kernelspec folders are
    matched without regard to case. A name that matches nothing is returned as
    given, for the caller to report.
    """
    name = KERNEL_ALIASES.get(name, name)
    return next((kernel for kernel in installed if kernel.lower() == name.lower()), name)
