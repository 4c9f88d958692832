"""A worker's kernels: each job gets one nobody used before, started ahead when possible.

While a job runs, its worker already starts the kernel for its next job (and
one at start-up, while idle), so a job rarely waits for a kernel to boot. A
warm kernel of the wrong kind is shut down. A warm kernel is launched in the
previous job's folder; a silent prologue moves it to its own job's folder
(`sys.path` holds `''`, so imports beside the notebook work the same). A kernel
launched in its job's folder needs no prologue.

Kernels are launched in a session of their own; after each job what is left
of that session is killed (`process_tree`). The parent is told every kernel
started and stopped, so that it can kill them when the worker itself dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbci._files import safe_name
from nbci.execute.process_tree import become_subreaper, kill_session, kill_strays
from nbci.execute.protocol import EXIT_TERMINATED, KernelEvent, Sender
from nbci.execute.text import strip_ansi

if TYPE_CHECKING:  # pragma: no cover
    from jupyter_client.manager import AsyncKernelManager

    from nbci.execute.settings import WorkerSettings
    from nbci.execute.template_keeper import TemplateKeeper

logger = logging.getLogger(__name__)

SHUTDOWN_WAIT_S = 2.0
"""How long a kernel gets to exit after a shutdown request before it is killed."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Set for each kernel (unless the user set them) so parallel kernels share the cores
instead of each starting a BLAS thread per core: oversubscribed, a small fit ran 70x slower."""
SECRET_VARIABLES = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GITLAB_TOKEN",
    "CI_JOB_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "BITBUCKET_TOKEN",
)
"""Forge and CI job tokens: `nbci publish` needs them, notebook code never does."""
_KERNEL_LOG_TAIL_BYTES = 4000
_KERNEL_LOG_NOISE = re.compile(r"Kernel is running over TCP without encryption")
"""ipykernel's start-up warning, in every kernel's log; says nothing about why it died."""


@dataclass(eq=False)
class Kernel:
    name: str
    km: AsyncKernelManager
    pid: int
    """Also the kernel's process group and session id (it is launched with a session of its own)."""
    log: Path
    """The kernel process's own stdout and stderr (not the notebook's outputs)."""
    modules: tuple[str, ...] = ()
    """The modules it was to be forked with (`preload.modules_for`)."""
    fresh_because: str | None = None
    """Why it started fresh although its notebook's modules were to be pre-imported."""
    cwd: Path | None = None
    """The folder it was launched in (forked: `ORIGINAL_DIR` too, `fresh_process_state`)."""
    forked: bool = False
    """Forked from a template: its nanny reaps it and kills what it left, not this worker."""

    def exit_code(self) -> int | None:
        process = getattr(self.km.provisioner, "process", None)
        return process.poll() if process is not None else None

    def wait_for_exit(self, timeout: float) -> None:
        """Wait up to `timeout` for the kernel to exit, as jupyter_client's `finish_shutdown`
        does (half of it, then SIGTERM, then the other half), but woken by the exit itself
        instead of looking every 0.1 s: at the end of a run nothing else is left to do."""
        import subprocess

        from jupyter_core.utils import run_sync

        provisioner = self.km.provisioner
        process = getattr(provisioner, "process", None)
        if provisioner is None or process is None:
            return
        for last in (False, True):
            try:
                process.wait(timeout / 2)
                return
            except subprocess.TimeoutExpired:
                if not last:
                    logger.debug("kernel %s is taking too long to exit: SIGTERM", self.pid)
                    with _logged_failure("terminating kernel %s", self.pid):
                        run_sync(provisioner.terminate)()

    def request_shutdown(self) -> None:
        from jupyter_core.utils import run_sync

        try:
            run_sync(self.km.request_shutdown)()
        except Exception:
            logger.debug("shutdown request to kernel %s failed", self.pid, exc_info=True)

    def log_tail(self) -> str | None:
        try:
            with self.log.open("rb") as f:
                f.seek(max(0, self.log.stat().st_size - _KERNEL_LOG_TAIL_BYTES))
                text = strip_ansi(f.read().decode("utf-8", "replace"))
        except OSError:
            return None
        lines = [line for line in text.splitlines() if not _KERNEL_LOG_NOISE.search(line)]
        return "\n".join(lines).strip() or None


class Kernels:
    """A worker's kernels: the one running a job and at most one warm one waiting.

    Every kernel's pid is reported to the parent (`KernelEvent`) and kept in
    `live`, which the SIGTERM handler reads to kill them all.
    """

    def __init__(self, settings: WorkerSettings, sender: Sender) -> None:
        self._settings = settings
        self._sender = sender
        self._warm: Kernel | None = None
        self._dying: list[tuple[Kernel, float]] = []
        """Kernels asked to exit, with the time after which they are killed."""
        self._spec_manager: Any = None
        self._spec_cache: dict[str, Any] = {}
        self._installed: list[str] | None = None
        self.live: set[int] = set()
        self._subreaper = become_subreaper()
        self.start_ahead = settings.warm_kernels
        """Whether `prestart` starts a kernel (the parent says so with each job)."""
        self._starting = False
        self._terminate_when_started = False
        self._templates = self._template_keeper()
        self._forking_specs: dict[str, Any] = {}
        self.on_first_wait: Callable[[], None] | None = None
        """Called once, as `take` first starts a kernel and waits for it (forked: for its
        template, the run's start-up): the worker has nothing else to do until it answers."""

    @property
    def preloading(self) -> bool:
        """Whether a template process is importing for the kernels to come."""
        return self._templates is not None

    def _template_keeper(self) -> TemplateKeeper | None:
        """The run's templates (started by the parent), unless preloading is off or impossible."""
        if self._settings.template is None or self._settings.preload is None:
            return None
        from nbci.execute.provisioner import register
        from nbci.execute.template_keeper import TemplateKeeper

        register()
        return TemplateKeeper(self._settings.template)

    def modules_for(self, notebook: Path) -> tuple[str, ...]:
        """The modules `notebook`'s kernel is forked with (none without templates)."""
        if self._templates is None or self._settings.preload is None:
            return ()
        from nbci.execute.preload import modules_for

        return modules_for(notebook, self._settings.notebook_folders, self._settings.preload)

    def _specs_for_start(self, modules: tuple[str, ...]) -> tuple[Any, str | None]:
        """Kernelspecs that fork from the template of `modules` when it is ready, else the
        plain ones, with why this kernel starts fresh (None: no template for anyone)."""
        if self._templates is None:
            return self._specs(), None
        socket, why = self._templates.socket(modules, self._settings.start_timeout)
        if socket is None:
            return self._specs(), why
        if socket not in self._forking_specs:
            from nbci.execute.provisioner import ForkingKernelSpecManager

            self._forking_specs[socket] = ForkingKernelSpecManager(
                socket, kernel_dirs=kernel_dirs()
            )
        return self._forking_specs[socket], None

    def spec(self, name: str) -> Any:
        """The kernelspec called `name`; raises jupyter_client's NoSuchKernel.

        Read once per worker, as `installed` is: a kernelspec installed or changed
        while nbci runs is not looked for (jupyter_client rescans the kernelspec
        folders on every call).
        """
        if name not in self._spec_cache:
            self._spec_cache[name] = self._specs().get_kernel_spec(name)
        return self._spec_cache[name]

    def installed(self) -> list[str]:
        if self._installed is None:
            self._installed = list(self._specs().find_kernel_specs())
        return list(self._installed)

    def _specs(self) -> Any:
        if self._spec_manager is None:
            from jupyter_client.kernelspec import KernelSpecManager

            self._spec_manager = KernelSpecManager(kernel_dirs=kernel_dirs())
        return self._spec_manager

    def warm_up(self, name: str, cwd: Path, modules: tuple[str, ...] = ()) -> None:
        from jupyter_core.utils import run_sync

        run_sync(self.prestart)(name, cwd, modules)

    async def prestart(self, name: str, cwd: Path, modules: tuple[str, ...] = ()) -> None:
        """Start the next job's kernel ahead of need; a failure only means a cold start later.

        Forked, it is a guess that the next notebook imports the same modules.
        """
        if not (self._settings.warm_kernels and self.start_ahead) or self._warm is not None:
            return
        try:
            self._warm = await self._start(name, cwd, modules)
        except Exception:
            logger.debug("could not start a %r kernel ahead of need", name, exc_info=True)

    def take(self, name: str, cwd: Path, modules: tuple[str, ...] = ()) -> Kernel:
        """A kernel nobody has used: the warm one if it fits and lives, else a new one."""
        from jupyter_core.utils import run_sync

        self.reap(wait=False)
        kernel, self._warm = self._warm, None
        if (
            kernel is None
            or (kernel.name, kernel.modules) != (name, modules)
            or kernel.exit_code() is not None
        ):
            if kernel is not None:
                logger.debug("discarding a warm %r kernel: another is needed", kernel.name)
                self.release(kernel, graceful=False)
            self._first_wait()
            kernel = run_sync(self._start)(name, cwd, modules)
        if self._templates is not None:  # a fork is quick: the next kernel boots meanwhile
            self.warm_up(name, cwd, modules)
        return kernel

    def _first_wait(self) -> None:
        hook, self.on_first_wait = self.on_first_wait, None
        if hook is not None:
            with _logged_failure("calling %s", hook):
                hook()

    def release(self, kernel: Kernel, *, graceful: bool) -> None:
        """Stop `kernel` and kill whatever it started. Never raises.

        A kernel asked to shut down (`graceful`) takes most of a second to exit:
        it is left to do so while the worker goes on, and finished by `reap`.
        """
        if graceful:
            self._dying.append((kernel, time.monotonic() + SHUTDOWN_WAIT_S))
            self.reap(wait=False)
        else:
            self._finish(kernel)

    def reap(self, *, wait: bool) -> None:
        """Finish the kernels asked to exit that have exited or whose time is up.

        With `wait`, finish them all, waiting for each until its time is up.
        """
        dying, self._dying = self._dying, []
        for kernel, deadline in dying:
            left = deadline - time.monotonic()
            if wait and left > 0 and kernel.exit_code() is None:
                with _logged_failure("waiting for kernel %s to exit", kernel.pid):
                    kernel.wait_for_exit(left)
            if wait or left <= 0 or kernel.exit_code() is not None:
                self._finish(kernel)
            else:
                self._dying.append((kernel, deadline))

    def _finish(self, kernel: Kernel) -> None:
        """Kill the kernel and what it left, reap it, close its sockets.

        What a forked kernel started is below its nanny, never below this
        worker: the nanny kills it, and the two scans of the process table
        that find a fresh kernel's leftovers are skipped.
        """
        from jupyter_core.utils import run_sync

        nannied = self._subreaper and kernel.forked
        if not nannied:
            kill_session(kernel.pid, descendants_only=self._subreaper)
        with _logged_failure("cleaning up kernel %s", kernel.pid):
            run_sync(kernel.km.shutdown_kernel)(now=True)  # reaps it, closes its sockets
        self.live.discard(kernel.pid)
        if self._subreaper and not nannied:
            kill_strays(keep=self.live)
        kernel.log.unlink(missing_ok=True)
        with _logged_failure("reporting kernel %s", kernel.pid):
            self._sender.send(KernelEvent(kernel.pid, alive=False))

    def close(self) -> None:
        if self._warm is not None:
            self.release(self._warm, graceful=False)
            self._warm = None
        self.reap(wait=True)
        if self._subreaper:
            kill_strays(keep=())

    def kill_all(self) -> None:
        """Kill every kernel and what it started (from a signal handler or the parent watch)."""
        for pid in list(self.live):
            kill_session(pid)
        if self._subreaper:
            kill_strays(keep=())

    def terminate(self) -> None:
        """The worker's SIGTERM handler: kill every kernel, then exit.

        A kernel being launched is registered first (signal handlers run in
        the main thread, between two steps of `_start`), so none is missed.
        """
        if self._starting:
            self._terminate_when_started = True
            return
        self.kill_all()
        os._exit(EXIT_TERMINATED)

    async def _start(self, name: str, cwd: Path, modules: tuple[str, ...] = ()) -> Kernel:
        from jupyter_client.manager import AsyncKernelManager

        from nbci.execute.fork_client import ForkedProcess

        specs, fresh_because = self._specs_for_start(modules)
        scratch = self._settings.scratch  # removed by the parent, even if this worker is killed
        fd, log = tempfile.mkstemp(prefix=f"{safe_name(name)}-", suffix=".log", dir=scratch)
        km = AsyncKernelManager(
            kernel_name=name,
            kernel_spec_manager=specs,
            client_class="nbci.execute.kernel_client.ReadyKernelClient",
            connection_file=str(Path(log).with_suffix(".json")),
            shutdown_wait_time=SHUTDOWN_WAIT_S,
        )
        self._starting = True
        try:
            with os.fdopen(fd, "wb") as out:
                await km.start_kernel(
                    cwd=str(cwd),
                    env=dict(
                        self._settings.kernel_environment
                        or kernel_environment(
                            self._settings.kernel_threads, self._settings.hidden_variables
                        )
                    ),
                    stdout=out,
                    stderr=out,
                    extra_arguments=["--HistoryManager.hist_file=:memory:"],
                )
        except BaseException:
            if pid := _provisioner_pid(km):
                kill_session(pid)
            raise
        else:
            pid = _provisioner_pid(km)
            if pid is None:
                raise RuntimeError(f"the {name!r} kernel started without a process id")
            self.live.add(pid)
        finally:
            self._starting = False
            if self._terminate_when_started:
                self.terminate()
        self._sender.send(KernelEvent(pid, alive=True))
        logger.debug("started a %r kernel, pid %s", name, pid)
        forked = isinstance(getattr(km.provisioner, "process", None), ForkedProcess)
        return Kernel(name, km, pid, Path(log), modules, fresh_because, cwd, forked)


def kernel_dirs() -> list[str]:
    """Where jupyter_client's KernelSpecManager looks for kernelspecs: Jupyter's `kernels`
    folders, then IPython's (`$IPYTHONDIR` or `~/.ipython`). Found by jupyter_client
    itself, IPython's folder costs importing IPython, 0.3 s of CPU per worker that
    nothing else there needs."""
    from jupyter_core.paths import jupyter_path

    ipython = os.environ.get("IPYTHONDIR") or os.path.join("~", ".ipython")
    return [*jupyter_path("kernels"), os.path.join(os.path.expanduser(ipython), "kernels")]


def kernel_environment(threads: int, hidden: Iterable[str] = ()) -> dict[str, str]:
    """The kernel's environment: ours without the forge and CI tokens (`SECRET_VARIABLES`)
    and the `hidden` ones, with the thread counts set unless the user set them.

    Fresh kernels, the template and (through it) every forked kernel get this one.
    """
    left_out = {*SECRET_VARIABLES, *hidden}
    environment = {k: v for k, v in os.environ.items() if k not in left_out}
    for name in THREAD_VARIABLES:
        environment.setdefault(name, str(threads))
    return environment


def _provisioner_pid(km: AsyncKernelManager) -> int | None:
    """The kernel process's pid (jupyter_client's local provisioner has one)."""
    pid = getattr(km.provisioner, "pid", None)
    return pid if isinstance(pid, int) else None


@contextlib.contextmanager
def _logged_failure(what: str, *args: object) -> Iterator[None]:
    try:
        yield
    except Exception:
        logger.debug(what + " failed", *args, exc_info=True)
