"""The template processes: pre-imported kernel machinery and modules, forked once per kernel.

The *base* template runs in an interpreter of its own, started once per run
by the parent and shared by every worker (`fork_client`):

1. reads its settings (one JSON line on stdin), listens on its Unix socket,
   imports ipykernel's pieces without creating a ZMQ context, an event loop
   or a thread;
2. serves requests on the socket, one JSON line each (never on stdout or
   stderr: those are its log, shared with the code it imports):
   - `report`: what it imported;
   - `fork`: a kernel, given its argv, env and cwd, with its stdout, stderr
     and stdin as file descriptors, below a *nanny* (`_nanny`) that answers
     on the request's connection, which the worker keeps open for the
     kernel's lifetime: the kernel's pid at once, its exit status once it has
     ended and everything it left is killed;
   - `template` (the base only): the socket of a *set template*, forked from
     the base, that imports one notebook's modules in the notebook's order
     and then serves `report` and `fork` on a socket of its own. Each
     notebook's kernel is forked from the template of its own imports, so it
     carries nothing another notebook imported (memory, warnings filters,
     what process pool workers import). Set templates are shared by the
     workers: a set already imported is answered at once (`_set_template`);
3. ends when its stdin closes (the run is over or its parent died) or its
   parent dies.

The forked child becomes an ordinary ipykernel (`_become_kernel`): everything
a fresh `python -m ipykernel_launcher` gets from the operating system and the
interpreter (environment, cwd, session, stdin, `sys.argv`, `sys.path`,
`__main__`, random generators, `multiprocessing`'s per-process state) is set
as it would be before ipykernel's own start-up runs; ipykernel then creates
its sockets, threads and event loop after the fork. What the modules printed
or warned while the template imported them is shown when the notebook's own
`import` statement runs.

Only the standard library (and `nbci._exit`, which imports only it) is
imported at module level: this module runs before anything is preloaded.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import gc
import itertools
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

from nbci._exit import exit_without_teardown

KERNEL_MACHINERY = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.comm",
    "ipykernel.debugger",  # debugpy: two thirds of what a kernel imports while it starts
    "IPython.core.completer",
    "jupyter_client.session",
    "tornado.queues",
    "psutil",
    "tornado.platform.asyncio",  # IOLoop's default: after the others, as in a kernel's start
    "IPython.core.completerlib",
)
"""What every ipykernel imports while it starts (measured: the modules `IPKernelApp.initialize`
imports), pre-imported by the base template in the order a kernel imports them (their `atexit`
handlers run in that order)."""
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""ipykernel sets MPLBACKEND to this before any cell runs; set while a set template imports."""
SHELL_FACTS = frozenset({"kernel"})
"""What a module may ask of the shell while it is pre-imported: the answer is the same in
every ipykernel (pandas asks whether `get_ipython()` has a `kernel` to choose its display
width). Anything else it asks makes it unsafe to pre-import."""
_MAX_REQUEST_BYTES = 4 * 1024 * 1024
_REQUEST_WAIT_S = 10.0
"""How long one connection may take to send its request (a client that hangs is dropped)."""
_SET_IN_THE_CHILD = {"JPY_PARENT_PID", "JPY_SESSION_NAME"}
"""Variables the child applies where the kernel machinery read them on import."""
_PR_SET_PDEATHSIG = 1
_SETTLED_S = 3.0
"""How much older than the base template a folder's modification time must be for a kernel to
trust the template's listing of it: more than the coarsest file times of common filesystems
(FAT: 2 s) and the lag of the kernel's coarse clock that stamps them."""
_CONTROL_FINISH_S = 0.5
"""How long a kernel that was asked to shut down waits for its control thread to finish
answering (`_let_the_shutdown_request_finish`); it takes milliseconds."""
_IMPORTED_HERE = "<nbci pre-import>"
"""The file name of the template's import statements: warnings that name it are shown as
raised by the notebook's own import statement."""
_Reply = dict[str, Any]


class _BecomeKernel(BaseException):
    """Raised in a forked child: unwinds the server's loop, then the child becomes a kernel."""

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__()
        self.request = request


class _BecomeTemplate(BaseException):
    """Raised in a forked child: unwinds the base's loop, then the child imports a set."""

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__()
        self.request = request


@dataclass
class _State:
    """What a template knows; a forked child inherits it."""

    initial_path: list[str]
    environment: dict[str, str]
    """The environment it was started with (= every kernel's, checked per request)."""
    project: Path
    folders: list[Path]
    """The planned notebooks' folders: a module found there is the project's."""
    started: float = 0.0
    """When the base started: every folder listing the import system caches here is younger."""
    report: dict[str, Any] = field(default_factory=dict)
    said: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    """Module → what importing it printed or warned, shown when the notebook imports it."""
    set_by_imports: dict[str, str] = field(default_factory=dict)
    """Environment variables the pre-imported modules set (KMP_INIT_AT_FORK, ...)."""
    entropy_seeded: weakref.WeakSet[random.Random] = field(default_factory=weakref.WeakSet)
    """`random.Random` instances the imported modules seeded from entropy."""
    helpers: list[Any] = field(default_factory=list)
    """The resource trackers and fork servers of the imported modules (`_helper_processes`)."""
    socket: str = ""
    """The base's socket; its set templates' sockets are named after it."""
    is_base: bool = True
    sets: dict[tuple[str, ...], tuple[int, str]] = field(default_factory=dict)
    """The base's live set templates: modules → pid and socket."""
    wanted_by: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Client (worker) pid → the set it asked for last: the set templates the base keeps."""
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    own_modules: tuple[str, ...] = ()
    """The names of nbci's modules here (`_own_modules`)."""
    own_code: list[Any] = field(default_factory=list)
    """In a kernel: those modules, out of `sys.modules` but never freed."""
    machinery: dict[str, Any] = field(default_factory=dict)
    """The base's modules but nbci's, what a fresh kernel has loaded when ipykernel lists them
    (`_machinery_files`)."""
    loaded_at_fork: int = 0
    """In a kernel: the size of `sys.modules` once nbci's modules left it."""


def main() -> None:
    """Entry point of the base template (argv: the socket's path)."""
    started = time.time()
    sys.path_importer_cache.clear()  # (listings made before `started`)
    _die_with_parent()
    settings = json.loads(sys.stdin.readline())
    state = _State(
        started=started,
        initial_path=list(sys.path),
        environment=dict(os.environ),
        project=Path(settings["project"]),
        folders=[Path(folder) for folder in settings.get("folders", [])],
        socket=sys.argv[1],
    )
    listener = _listen(sys.argv[1])
    state.report = _import_machinery()
    state.helpers = _helper_processes()
    state.own_modules = _own_modules()
    state.machinery = _machinery_files(state.own_modules)
    _settle_import_caches(state)
    _freeze_heap()
    kernel: dict[str, Any] | None = None
    while kernel is None:
        try:
            _serve(listener, state)
            return
        except _BecomeTemplate as become:
            state.is_base, state.sets, state.wanted_by = False, {}, {}
            listener = _listen(become.request["socket"])
            _preload_set(state, become.request["modules"])
            state.helpers = _helper_processes()
            state.own_modules = _own_modules()  # (a notebook may import nbci too)
            _settle_import_caches(state)
            _freeze_heap()
        except _BecomeKernel as become:
            kernel = become.request
    # outside the handler: the kernel's exceptions must not chain to it
    _become_kernel(kernel, state)


def _listen(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    return listener


def _freeze_heap() -> None:
    """Keep what was imported out of every kernel's garbage collections.

    A full collection walks every tracked object: with the usual stack
    imported, about 0.15 s, and each one that IPython runs (one at exit) or
    that allocation triggers pays it again, writing into every page of the
    heap the kernel shares with the template. Frozen objects are never
    collected nor listed by `gc.get_objects()` (CPython's advice for a
    process that forks without exec).
    """
    gc.collect()
    gc.freeze()


def _own_modules() -> tuple[str, ...]:
    """nbci's modules in the template, every nanny's `process_tree` with them: named here
    once, so that a kernel looks them up instead of reading every name in `sys.modules`."""
    import nbci.execute.process_tree  # noqa: F401

    return tuple(name for name in sys.modules if name.partition(".")[0] == "nbci")


def _machinery_files(own_modules: tuple[str, ...]) -> dict[str, Any]:
    """The base's modules, nbci's left out, each as a stand-in that holds a copy of its file
    name: what `IPythonKernel.__init__` reads of them (`_SysWhileTheKernelStarts`). Made
    together here, they share a few pages that a kernel copies, instead of the 5,000 its
    reading every module object and file name copied (15 ms of CPU per kernel)."""
    own = set(own_modules)
    stand_ins = {}
    for name, module in list(sys.modules.items()):
        with contextlib.suppress(TypeError):  # (no `__dict__`: not a module)
            if name not in own and isinstance(file := vars(module).get("__file__"), str) and file:
                stand_ins[name] = SimpleNamespace(__file__=file.encode().decode())
    return stand_ins


def _settle_import_caches(state: _State) -> None:
    """Keep only the folder listings of the import system that every kernel may trust.

    A `FileFinder` lists its folder once and lists it again when the folder's
    modification time differs from the one it saw: a module created later is
    found, unless it was created within the same tick of the file clock as
    the listing. A listing is kept if the folder's time is older than the
    base's start by `_SETTLED_S`: every listing was made after that start,
    so whatever changes the folder later gives it another time. Not kept:
    the project's folders (a pull request changes them; they are listed again
    by each kernel, as a fresh one does), relative entries (the kernel runs
    elsewhere), folders that had no finder (they may appear) and other kinds
    of finders. Dropped here once, instead of in every kernel, where clearing
    the caches freed the template's objects (8 ms of CPU and 2,300 copied
    pages per kernel) and every folder was listed again.
    """
    from importlib.machinery import FileFinder

    trusted_until = state.started - _SETTLED_S
    project = [Path(_real_folder(str(p))) for p in (state.project, *state.folders)]
    for path, finder in list(sys.path_importer_cache.items()):
        seen = getattr(finder, "_path_mtime", None)
        if (
            type(finder) is not FileFinder
            or not isinstance(seen, int | float)
            or seen >= trusted_until
            or not os.path.isabs(path)
            or any(_resolved(path).is_relative_to(folder) for folder in project)
        ):
            del sys.path_importer_cache[path]


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux; its children do not inherit it)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# -- preloading ---------------------------------------------------------------------


def _empty_report() -> dict[str, Any]:
    return {"imported": [], "skipped": {}, "unsafe": None, "why": None}


def _import_machinery() -> dict[str, Any]:
    """The base template: ipykernel's pieces, and no thread running after them."""
    report = _empty_report()
    for name in KERNEL_MACHINERY:
        reason = _try_import(name)
        if reason is None:
            report["imported"].append(name)
        else:
            report["skipped"][name] = reason
    kernel_app = KERNEL_MACHINERY[0]
    if kernel_app in report["skipped"]:
        return {**report, "unsafe": kernel_app, "why": report["skipped"][kernel_app]}
    if threading.active_count() > 1:
        return {**report, "unsafe": kernel_app, "why": "a thread is running after its import"}
    return report


def _preload_set(state: _State, modules: list[str]) -> None:
    """A set template: import a notebook's modules in its order, as its kernel would.

    Stops at the first module that cannot be pre-imported: one that is not
    installed or fails to import (`skipped`; the notebook imports it and what
    follows itself), or one that must not be imported before the kernel
    exists (`unsafe`, with `why`; the worker then starts a template of the
    modules before it): a module after whose import a Python thread runs, one
    that asks IPython's shell anything but `SHELL_FACTS` while importing (it
    would find none, and would behave differently in the kernel, like
    matplotlib_inline or tqdm.auto), or one that loaded a module of the
    project (which a pull request may change).
    """
    report = state.report = _empty_report()
    _real_folder.cache_clear()
    before = dict(os.environ)
    own_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = own_backend or INLINE_BACKEND
    with _ShellQuestions() as asked, _EntropySeeds(state.entropy_seeded):
        for name in modules:
            asked.clear()
            loaded = set(sys.modules)
            reason = _not_installed(name)
            if reason is None:
                with _captured(state.said.setdefault(name, [])):
                    reason = _try_import(name, as_main=True)
            if reason is not None:
                report["skipped"][name] = reason
                break
            report["imported"].append(name)
            why = _why_unsafe(asked, set(sys.modules) - loaded, state)
            if why is not None:
                report.update(unsafe=name, why=why)
                break
    if own_backend is None:
        del os.environ["MPLBACKEND"]
    state.said = {name: said for name, said in state.said.items() if said}
    state.set_by_imports = {k: v for k, v in os.environ.items() if before.get(k) != v}


def _why_unsafe(asked: _ShellQuestions, new: set[str], state: _State) -> str | None:
    if threading.active_count() > 1:
        return "a thread is running after its import"
    if asked:
        return f"it asks IPython's shell for {asked[0]} while it is imported"
    if asked.kept():
        return "it asks IPython for its shell while it is imported"
    for name in sorted(new):
        place = _project_place(sys.modules.get(name), state)
        if place is not None:
            return f"it loads {name}, a module of the project ({place})"
    return None


def _project_place(module: Any, state: _State) -> str | None:
    """Where `module` lies in the project (or beside a notebook, shadowing it), or None."""
    name = getattr(module, "__name__", "")
    top = name.partition(".")[0] if isinstance(name, str) else ""
    for folder in state.folders:
        for shadow in (folder / f"{top}.py", folder / top):
            if top and shadow.exists():
                return str(shadow)
    places: list[Any] = [getattr(module, "__file__", None)]
    with contextlib.suppress(Exception):  # modules put odd things in `sys.modules`
        places += list(getattr(module, "__path__", None) or [])
    for place in places:
        with contextlib.suppress(OSError, ValueError, TypeError):
            if isinstance(place, str) and _resolved(place).is_relative_to(state.project):
                return place
    return None


def _resolved(place: str) -> Path:
    """`Path(place).resolve()`, each folder resolved once: the usual stack's 2,600 modules lie
    in a few hundred folders, and resolving each of their paths took 0.2 s of CPU per template."""
    folder, name = os.path.split(place)
    if not name or name in (os.curdir, os.pardir) or os.path.islink(place):
        return Path(place).resolve()
    return Path(_real_folder(folder), name)


@functools.cache
def _real_folder(folder: str) -> str:
    """(Emptied as a set template starts importing: links may change during a run.)"""
    return os.path.realpath(folder)


class _ShellQuestions(list[str]):
    """While active: stand-in shells for `get_ipython()` that record what is asked of them.

    In a kernel, a module imported by a cell finds the kernel's shell (the
    builtin `get_ipython`, `IPython.get_ipython()`); in the template there is
    none, so a module that looks would decide differently. A stand-in answers
    `SHELL_FACTS` as every kernel would; any other question, or a stand-in
    still referenced after the import (the module kept it for later), makes
    the module unsafe to pre-import.
    """

    def __enter__(self) -> _ShellQuestions:
        import IPython
        import IPython.core.getipython as where

        questions = self

        class ZMQInteractiveShell:  # `type(get_ipython()).__name__` is the kernel's
            def __getattribute__(self, name: str) -> Any:
                if name in SHELL_FACTS:
                    return object()
                questions.append(f"its {name}")
                raise AttributeError(name)

        self._active = True
        self._original: Callable[[], Any] = where.get_ipython
        self._given: list[weakref.ref[Any]] = []

        def get_ipython() -> Any:  # modules that imported it keep it: it must stay harmless
            if not self._active:
                return self._original()
            stand_in = ZMQInteractiveShell()
            self._given.append(weakref.ref(stand_in))
            return stand_in

        self._places = [IPython, where]
        for place in self._places:
            place.get_ipython = get_ipython  # type: ignore[attr-defined]
        builtins.get_ipython = get_ipython  # type: ignore[attr-defined]
        builtins.__IPYTHON__ = True  # type: ignore[attr-defined]  # as in every kernel
        return self

    def kept(self) -> bool:
        """Whether a stand-in given out is still referenced."""
        return any(given() is not None for given in self._given)

    def clear(self) -> None:
        super().clear()
        self._given.clear()

    def __exit__(self, *_: object) -> None:
        self._active = False
        for place in self._places:
            place.get_ipython = self._original  # type: ignore[attr-defined]
        del builtins.get_ipython  # type: ignore[attr-defined]
        del builtins.__IPYTHON__  # type: ignore[attr-defined]


class _EntropySeeds:
    """While active: records the `random.Random` instances seeded from entropy (seed None)."""

    def __init__(self, found: weakref.WeakSet[random.Random]) -> None:
        self._found = found

    def __enter__(self) -> None:
        original = self._original = random.Random.seed
        found = self._found

        def seed(self: random.Random, a: Any = None, version: int = 2) -> None:
            (found.add if a is None else found.discard)(self)
            original(self, a, version)

        random.Random.seed = seed  # type: ignore[method-assign]

    def __exit__(self, *_: object) -> None:
        random.Random.seed = self._original  # type: ignore[method-assign]


@contextlib.contextmanager
def _captured(said: list[tuple[str, Any]]) -> Iterator[None]:
    """What an import writes to stdout and stderr (also from C) and the warnings it shows,
    in the order a kernel would show them: stdout, then stderr with the warnings in place."""
    import ctypes

    libc_flush = getattr(ctypes.CDLL(None), "fflush", None)
    files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}  # noqa: SIM115  (closed below)
    saved = {fd: os.dup(fd) for fd in files}
    shown = warnings.showwarning
    warned: list[tuple[int, tuple[Any, ...]]] = []

    def flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if libc_flush is not None:
            libc_flush(None)

    def record(message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
        flush()
        warned.append((os.lseek(2, 0, os.SEEK_CUR), (message, category, filename, lineno)))

    flush()
    for fd, file in files.items():
        os.dup2(file.fileno(), fd)
    warnings.showwarning = record  # type: ignore[assignment]
    try:
        yield
    finally:
        flush()
        if warnings.showwarning is record:
            warnings.showwarning = shown
        texts = {}
        for fd, file in files.items():
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            file.seek(0)
            texts[fd] = file.read()
            file.close()
        said += _in_order(texts[1], texts[2], warned)


def _in_order(
    out: bytes, err: bytes, warned: list[tuple[int, tuple[Any, ...]]]
) -> list[tuple[str, Any]]:
    said: list[tuple[str, Any]] = [("stdout", out.decode("utf-8", "replace"))] if out else []
    start = 0
    for offset, warning in warned:
        if err[start:offset]:
            said.append(("stderr", err[start:offset].decode("utf-8", "replace")))
        said.append(("warning", warning))
        start = offset
    if err[start:]:
        said.append(("stderr", err[start:].decode("utf-8", "replace")))
    return said


def _not_installed(name: str) -> str | None:
    from importlib.util import find_spec

    try:
        if find_spec(name.partition(".")[0]) is None:
            return "not installed"
    except (ImportError, ValueError) as error:
        return f"cannot be found: {error}"
    return None


def _try_import(name: str, *, as_main: bool = False) -> str | None:
    """Import `name`; as a notebook's cell would (from `__main__`) when `as_main`."""
    try:
        if as_main:  # warnings name the importing module: `__main__` in a kernel
            exec(compile(f"import {name}", _IMPORTED_HERE, "exec"), {"__name__": "__main__"})
        else:
            __import__(name)
    except BaseException as error:  # a module may raise anything, even SystemExit
        return f"{type(error).__name__}: {error}"[:200]
    return None


# -- serving requests ---------------------------------------------------------------


def _serve(listener: socket.socket, state: _State) -> None:
    """Answer requests until stdin closes; reap the set templates that ended."""
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        selector.register(sys.stdin, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select(timeout=1.0):
                if key.fileobj is listener:
                    connection, _ = listener.accept()
                    with connection:
                        _answer(connection, listener, state)
                elif not sys.stdin.readline():
                    return  # the run is over (or its parent gone)
            _reap_children(state)


def _reap_children(state: _State) -> None:
    """Reap the set templates and nannies that ended; forget the set templates."""
    ended = set()
    with contextlib.suppress(ChildProcessError):
        while pid := os.waitpid(-1, os.WNOHANG)[0]:
            ended.add(pid)
    for modules, (pid, _) in list(state.sets.items()):
        if pid in ended:
            del state.sets[modules]


def _answer(connection: socket.socket, listener: socket.socket, state: _State) -> None:
    """One request; a malformed one or a client that hangs gets an error, never ends us."""
    fds: list[int] = []
    try:
        connection.settimeout(_REQUEST_WAIT_S)
        request, fds = _receive(connection)
        reply = _reply(request, fds, [connection, listener], state)
        if reply is not None:  # (None: the nanny of a forked kernel answers)
            connection.sendall(json.dumps(reply).encode() + b"\n")
    except (OSError, ValueError, KeyError, TypeError) as error:
        with contextlib.suppress(OSError):
            connection.sendall(json.dumps({"error": f"bad request: {error}"}).encode() + b"\n")
    finally:
        for fd in fds:  # (only the template gets here: a child left by raising)
            with contextlib.suppress(OSError):
                os.close(fd)


def _reply(
    request: dict[str, Any], fds: list[int], sockets: list[socket.socket], state: _State
) -> _Reply | None:
    op = request.get("op")
    if op == "report":
        return state.report
    if op == "template":
        modules = request["modules"]
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise ValueError("a template request names its modules")
        if not state.is_base:
            raise ValueError("only the base template forks set templates")
        return _set_template(tuple(modules), _peer(sockets[0]), sockets, state)
    if op != "fork":
        raise ValueError(f"unknown request {op!r}")
    if len(fds) != 3:
        raise ValueError("a fork request carries stdout, stderr and stdin")
    if differing := _differences(request["env"], state.environment):
        return {"error": f"the kernel's environment differs from the template's: {differing}"}
    try:
        _fork_nanny(request, fds, sockets)
    except OSError as error:
        return {"error": f"cannot fork: {error}"}
    return None


def _set_template(
    modules: tuple[str, ...], client: int, sockets: list[socket.socket], state: _State
) -> _Reply:
    """The set template of `modules` (`new`: forked for this request), shared by the workers.

    The base keeps the set templates some live client asked for last, and
    retires the others (kernels forked from them run on: their nannies are
    not the template's to kill). So a run holds at most one set template per
    worker, and while a notebook runs no other notebook's imports are held
    beside it unless another worker runs that notebook: a run's memory stays
    that of fresh kernels (`bench.py --pss`). A worker asks before every
    kernel it forks, so the one it is about to fork from is never retired
    under it by another worker.
    """
    _reap_children(state)
    state.wanted_by[client] = modules
    for other in [pid for pid in state.wanted_by if pid != client and not _exists(pid)]:
        del state.wanted_by[other]
    known = state.sets.get(modules)
    new = known is None
    if known is None:
        path = f"{state.socket.removesuffix('.sock')}-{next(state.numbers)}.sock"
        request = {"modules": list(modules), "socket": path}
        known = state.sets[modules] = (_fork(lambda: _become_set_template(request, sockets)), path)
    wanted = set(state.wanted_by.values())
    for kept, (pid, old_path) in list(state.sets.items()):
        if kept not in wanted:
            del state.sets[kept]
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)  # reaped by `_reap_children`
            with contextlib.suppress(OSError):
                os.unlink(old_path)
    return {"pid": known[0], "socket": known[1], "new": new}


def _peer(connection: socket.socket) -> int:
    """The pid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid: int = struct.unpack("3i", credentials)[0]
    return pid


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _differences(wanted: dict[str, str], own: dict[str, str]) -> str:
    """Variables the kernel gets that the template did not import with (modules may read
    them on import, e.g. from a kernelspec's `env`), except those set again in the child."""
    names = (wanted.keys() ^ own.keys()) | {
        k for k in wanted.keys() & own.keys() if wanted[k] != own[k]
    }
    return ", ".join(sorted(names - _SET_IN_THE_CHILD))


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: a JSON line, with file descriptors attached (a kernel's stdio)."""
    data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
    while not data.endswith(b"\n"):
        if len(data) > _MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        more = connection.recv(65536)
        if not more:
            break
        data += more
    request = json.loads(data)
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    return request, list(fds)


def _fork(become: Callable[[], None]) -> int:
    """Fork a child that runs `become` (which raises to unwind into `main`)."""
    pid = os.fork()
    if pid == 0:
        try:
            become()
        except (_BecomeKernel, _BecomeTemplate):
            raise
        except BaseException:
            os._exit(70)
        os._exit(0)
    return pid


def _become_set_template(request: dict[str, Any], sockets: list[socket.socket]) -> None:
    _die_with_parent()
    for sock in sockets:
        sock.close()
    raise _BecomeTemplate(request)


def _fork_nanny(request: dict[str, Any], fds: list[int], sockets: list[socket.socket]) -> None:
    """Fork the nanny of a kernel (`_nanny`); it answers on the request's connection."""
    if os.fork() != 0:
        return
    code = 70
    try:
        code = _nanny(request, fds, sockets)
    except _BecomeKernel:  # the kernel, forked by the nanny: unwinds into `main`
        raise
    except BaseException:
        pass
    os._exit(code)  # never return into the template's loop from here


def _nanny(request: dict[str, Any], fds: list[int], sockets: list[socket.socket]) -> int:
    """Fork the kernel, say its pid, wait for it, kill what it left, say how it ended.

    The worker that asked is not the kernel's parent (the template is the
    parent's, shared by every worker), so this small process stands in for
    it: a child subreaper, so whatever the kernel started stays below it even
    in a session of its own, and the kernel's exit status and the killing of
    its strays happen here, then travel to the worker on the connection it
    keeps open for the kernel's lifetime (`fork_client.ForkedProcess`): one
    JSON line with the pid, one with the exit code (`os.waitstatus_to_exitcode`:
    negative for a signal) once nothing of the kernel runs any more. If the
    worker goes (the connection closes), the kernel and what it started are
    killed. The nanny outlives the set template it was forked from (a set
    template is retired while its kernels run): PR_SET_PDEATHSIG is not
    inherited through fork; and it leads a process group of its own, so that
    killing the templates' group at the end of a run (`Template.stop`) does
    not end it while it kills what a kernel left.
    """
    from nbci.execute.process_tree import become_subreaper, kill_strays

    connection, *others = sockets
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setpgid(0, 0)
    become_subreaper()
    kernel = os.fork()
    if kernel == 0:
        try:
            _detach(fds, sockets)
        except BaseException:
            os._exit(70)
        raise _BecomeKernel(request)
    for fd in set(fds):
        os.close(fd)
    for sock in others:
        sock.close()
    code = None
    try:
        connection.settimeout(None)
        connection.sendall(json.dumps({"pid": kernel}).encode() + b"\n")
        code = _watch(kernel, connection)
    finally:
        kill_strays(keep=())  # the kernel too, if the worker went while it ran
    if code is not None:
        connection.sendall(json.dumps({"exit": code}).encode() + b"\n")
    return 0


def _watch(kernel: int, connection: socket.socket) -> int | None:
    """The kernel's exit code once it ends, or None if the connection closes first."""
    try:
        pidfd: int | None = os.pidfd_open(kernel)
    except (OSError, AttributeError):  # Linux before 5.3: look every 50 ms
        pidfd = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(connection, selectors.EVENT_READ)
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ)
            while (code := _reap_kernel(kernel)) is None:
                for key, _ in selector.select(timeout=0.05 if pidfd is None else 1.0):
                    if key.fileobj is connection and not connection.recv(1):
                        return None  # the worker is gone
            return code
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _reap_kernel(kernel: int) -> int | None:
    """Reap the nanny's children that ended (orphans adopted too); the kernel's exit code."""
    try:
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return None
            if pid == kernel:
                return os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        return 255  # (cannot be: the kernel is the nanny's child until reaped here)


def _detach(fds: list[int], sockets: list[socket.socket]) -> None:
    """In the kernel child: own session, own stdio, nothing of the template's connections."""
    os.setsid()
    for sock in sockets:
        sock.close()
    stdout, stderr, stdin = fds
    for source, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(source, target)
    for fd in set(fds):
        os.close(fd)


# -- the child: an ordinary kernel ---------------------------------------------------


def _become_kernel(request: dict[str, Any], state: _State) -> None:
    """Set up what a fresh `python -m ipykernel_launcher` would have, then run it."""
    import runpy

    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.update(state.set_by_imports)
    _reread_kernel_settings()
    sys.stdin = open(0, encoding=sys.stdin.encoding, closefd=False)  # noqa: SIM115  (fd 0: new)
    sys.__stdin__ = sys.stdin  # type: ignore[misc]
    argv: list[str] = request["argv"]
    sys.orig_argv = list(argv)
    sys.argv = ["-m", *argv[3:]]  # runpy sets argv[0] to the launcher's file, as -m does
    sys.path[:] = [os.getcwd(), *state.initial_path[1:]]
    # The template's own code: a notebook may import another nbci. Kept alive, not freed:
    # freeing it would copy the pages the kernel shares with the template.
    state.own_code = [sys.modules.pop(name) for name in state.own_modules if name in sys.modules]
    state.loaded_at_fork = len(sys.modules)
    _SysWhileTheKernelStarts.install(state)
    _invalidate_caches_but_listings()
    _reseed(state)
    fresh_process_state(state.helpers)
    if state.said:
        _show_on_import(state.said)
    try:
        runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        _exit_without_teardown(_exit_code(stop))
    _exit_without_teardown(0)


class _SysWhileTheKernelStarts:
    """`ipykernel.ipkernel`'s `sys` in a forked kernel until `IPythonKernel.__init__` reads
    `sys.modules`, once, to list the files of the modules loaded by then (its debugger's
    "kernel modules", left out of debugging); then `sys` again.

    A fresh kernel lists the kernel machinery's modules. Read in a fork,
    `sys.modules` also held every module the template imported for the
    notebook (the debugger would have left those libraries out, a fresh
    kernel's does not), and reading each copied the pages of 3,000 module
    objects and file names that the kernel shares with its template. So it
    reads the base's modules (`_State.machinery`), those imported since the
    fork, and what `python -m` loads before the launcher: `runpy` (the
    template may not have imported it; IPython 8's magics did, 9's do not)
    and `__main__` (the launcher, as `runpy` runs it). Every other name is
    the real `sys`'s.
    """

    def __init__(self, ipkernel: Any, state: _State) -> None:
        self._ipkernel = ipkernel
        self._state = state

    @classmethod
    def install(cls, state: _State) -> None:
        ipkernel: Any = sys.modules.get("ipykernel.ipkernel")
        if state.machinery and ipkernel is not None:
            ipkernel.sys = cls(ipkernel, state)

    @property
    def modules(self) -> dict[str, Any]:
        self._ipkernel.sys = sys
        added = max(len(sys.modules) - self._state.loaded_at_fork, 0)
        since_fork = [*itertools.islice(reversed(sys.modules), added), "runpy", "__main__"]
        return {**self._state.machinery, **{name: sys.modules[name] for name in since_fork[::-1]}}

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)


def _invalidate_caches_but_listings() -> None:
    """`importlib.invalidate_caches()`, except for the folder listings the template kept
    (`_settle_import_caches`: each is listed again when its folder changes)."""
    import importlib

    listings, sys.path_importer_cache = sys.path_importer_cache, {}
    try:
        importlib.invalidate_caches()
    finally:
        sys.path_importer_cache = listings


def _exit_code(stop: SystemExit) -> int:
    """The exit code the interpreter gives for `stop` (it prints a code that is no number)."""
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    print(stop.code, file=sys.stderr)
    return 1


def _exit_without_teardown(code: int) -> NoReturn:
    """End the kernel as the interpreter would, without tearing down its modules.

    The interpreter's exit waits for non-daemon threads, runs the `atexit`
    handlers (ipykernel closes its sockets there, IPython clears the user's
    namespace, and the notebook's own run) and collects garbage, all done
    here, then tears down every module: that last step writes to every object
    the template imported, copying the pages the kernel shares with it, for
    nothing (0.3 s of CPU per kernel with numpy, pandas and scikit-learn).
    """
    _let_the_shutdown_request_finish()
    exit_without_teardown(code, collect_garbage=True)


def _let_the_shutdown_request_finish() -> None:
    """Wait (at most `_CONTROL_FINISH_S`) for ipykernel's control thread to finish the
    shutdown request that stopped the kernel, before the `atexit` handlers run.

    That thread flushes stdout and stderr through the output thread after it
    has stopped the kernel's loop. ipykernel's own `atexit` handlers stop the
    output thread first, then wait for the control thread: when its flush
    came too late, it waits for the stopped output thread (10 s) and the
    kernel for it, until the worker's SIGTERM a second later (in a third of
    runs, at the end of every run). The handlers run the same, in the same
    order; only the race is gone. Not after any other way out (`exit()` in a
    cell): the control thread then runs on, as it would.
    """
    app = sys.modules.get("ipykernel.kernelapp")
    if app is None or not app.IPKernelApp.initialized():
        return
    instance = app.IPKernelApp.instance()
    control = getattr(instance, "control_thread", None)
    shutting_down = getattr(getattr(instance, "kernel", None), "_shutdown_message", None)
    if control is not None and shutting_down is not None:
        control.join(_CONTROL_FINISH_S)


def _reread_kernel_settings() -> None:
    """What ipykernel read from the environment when the template imported it.

    Its parent handle is the kernel's parent, its nanny, not JPY_PARENT_PID
    (the worker, which asked for it: the variable keeps naming it for the
    notebook): ipykernel's parent poller ends the kernel when its parent
    changes, and the nanny ends when the worker goes; it would ignore a
    handle that is not the kernel's parent.
    """
    from ipykernel.kernelapp import IPKernelApp

    parent = IPKernelApp.class_traits()["parent_handle"]
    parent.default_value = os.getppid()


def _reseed(state: _State) -> None:
    """Draw new seeds for every generator the template's imports seeded from entropy."""
    random.seed()
    for generator in list(state.entropy_seeded):
        generator.seed()
    if numpy := sys.modules.get("numpy"):
        numpy.random.seed()
    if (torch := sys.modules.get("torch")) and hasattr(torch, "seed"):
        torch.seed()  # its default generator is seeded from entropy when torch is imported


def fresh_process_state(helpers: list[Any]) -> None:
    """`multiprocessing`'s per-process state, as a process that imports it now would have it.

    Imported by the template, it holds the template's working directory
    (`ORIGINAL_DIR`, which `spawn` and loky workers put on their `sys.path`
    in place of `''`: a module beside the notebook would not be found), the
    template's authentication key, and its resource trackers and fork server
    (processes of the template's, not the kernel's: `helpers`, found by
    `_helper_processes` in the template). Also run after the kernel moves to
    its notebook's folder.
    """
    process = sys.modules.get("multiprocessing.process")
    if process is None:
        return
    process.ORIGINAL_DIR = os.path.abspath(os.getcwd())  # type: ignore[attr-defined]
    main = process.current_process()
    if main.pid != getattr(main, "_nbci_pid", None):  # only once per process
        main._nbci_pid = main.pid
        main.authkey = os.urandom(32)
        process._process_counter = itertools.count(1)  # type: ignore[attr-defined]
        process._children = set()  # type: ignore[attr-defined]
        _forget_helper_processes(helpers)


_HELPER_STATE = ("_fd", "_pid", "_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid")
"""What a resource tracker or fork server object knows of its process."""


def _helper_processes() -> list[Any]:
    """The resource tracker and fork server objects any imported module holds.

    Looked for once in the template, which the kernels are forked from as it
    is then: scanning every module of the usual stack took 0.06 s per kernel.
    """
    kinds = tuple(
        kind
        for module, name in (
            ("multiprocessing.resource_tracker", "ResourceTracker"),
            ("multiprocessing.forkserver", "ForkServer"),
            ("joblib.externals.loky.backend.resource_tracker", "ResourceTracker"),
            ("loky.backend.resource_tracker", "ResourceTracker"),
        )
        if isinstance(kind := getattr(sys.modules.get(module), name, None), type)
    )
    if not kinds:
        return []
    found: list[Any] = []
    for module in list(sys.modules.values()):
        try:  # `vars`: a module's `__getattr__` may import, or raise anything
            found += [v for v in vars(module).values() if issubclass(type(v), kinds)]
        except TypeError:
            continue
    return found


def _forget_helper_processes(helpers: list[Any]) -> None:
    """A resource tracker or fork server the template started is not the kernel's."""
    for helper in helpers:
        for attribute in _HELPER_STATE:
            if attribute in vars(helper):
                setattr(helper, attribute, None)


def _show_on_import(said: dict[str, list[tuple[str, Any]]]) -> None:
    """Show what importing a module printed or warned when the notebook's code imports it."""
    original = builtins.__import__
    pending = dict(said)

    def importing(
        name: str,
        globals: dict[str, Any] | None = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        module = original(name, globals, locals, fromlist, level)
        if level == 0 and name in pending and (globals or {}).get("__name__") == "__main__":
            caller = sys._getframe(1)
            _replay(pending.pop(name), caller.f_code.co_filename, caller.f_lineno)
            if not pending and builtins.__import__ is importing:
                builtins.__import__ = original
        return module

    builtins.__import__ = importing  # type: ignore[assignment]


def _replay(said: list[tuple[str, Any]], filename: str, lineno: int) -> None:
    for kind, what in said:
        if kind == "stdout":
            sys.stdout.write(what)
        elif kind == "stderr":
            sys.stderr.write(what)
        else:
            message, category, where, line = what
            if where == _IMPORTED_HERE:  # raised "by the importer": the notebook's statement
                where, line = filename, lineno
            warnings.showwarning(message, category, where, line)
