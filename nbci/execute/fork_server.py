"""The template process: pre-imported kernel machinery and modules, forked once per kernel.

Runs in an interpreter of its own, started by a worker (`fork_client`):

1. reads its settings (one JSON line on stdin), imports ipykernel's pieces and
   the modules to preload, one at a time, without creating a ZMQ context, an
   event loop or a thread; says what it imported (one JSON line on stdout);
2. serves fork requests on a Unix socket: each names the kernel's argv, env
   and cwd and carries its stdout/stderr as file descriptors. It forks twice,
   so that the kernel is reparented to the worker (a child subreaper) and the
   worker reaps it and sees its exit code like any child's; answers the pid;
3. ends when its stdin closes (the worker stopped or died) or its parent dies.

The forked child becomes an ordinary ipykernel (`_become_kernel`): everything
a fresh `python -m ipykernel_launcher` gets from the operating system and the
interpreter (environment, cwd, session, `sys.argv`, `sys.path`, `__main__`,
random state) is set as it would be before ipykernel's own start-up runs;
ipykernel then creates its sockets, threads and event loop after the fork.

Only the standard library is imported at module level: this module runs
before anything is preloaded.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

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
)
"""What every ipykernel imports while it starts (measured: the modules `IPKernelApp.initialize`
imports), pre-imported before the notebooks' modules."""
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""ipykernel sets MPLBACKEND to this before any cell runs; set before matplotlib is preloaded."""
_MAX_REQUEST_BYTES = 4 * 1024 * 1024
_SET_IN_THE_CHILD = {"JPY_PARENT_PID", "JPY_SESSION_NAME"}
"""Variables the child applies where the kernel machinery read them on import."""
_PR_SET_PDEATHSIG = 1


class _BecomeKernel(BaseException):
    """Raised in a forked child: unwinds the server's loop, then the child becomes a kernel."""

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__()
        self.request = request


def main() -> None:
    """Entry point of the template process (argv: the socket's path)."""
    initial_path = list(sys.path)
    environment = dict(os.environ)
    _die_with_parent()
    settings = json.loads(sys.stdin.readline())
    report = _preload(settings)
    _freeze_heap()
    kernel: dict[str, Any] | None = None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(sys.argv[1])
            listener.listen(8)
            _say(report)
            _serve(listener, environment)
    except _BecomeKernel as become:
        kernel = become.request
    if kernel is not None:  # outside the handler: the kernel's exceptions must not chain to it
        _become_kernel(kernel, initial_path)


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


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    """SIGKILL this process when the worker dies (Linux; its children do not inherit it)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# -- preloading ---------------------------------------------------------------------


def _preload(settings: dict[str, Any]) -> dict[str, Any]:
    """Import the kernel machinery, then each module; say which were imported or skipped.

    A module that fails to import is skipped. One that must not be imported
    before the kernel exists makes the template unsafe to fork: it is named in
    `unsafe` (with `why`), and the worker starts another template without it:
    a module after whose import a Python thread runs, or one that asked
    IPython for its shell while importing (it would have found none, and would
    behave differently in the kernel, like matplotlib_inline or tqdm.auto).
    """
    own_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = own_backend or INLINE_BACKEND
    project = Path(settings["project"])
    report: dict[str, Any] = {"imported": [], "skipped": {}, "unsafe": None, "why": None}
    for name in KERNEL_MACHINERY:
        _import_into(report, name, project)
    kernel_app = KERNEL_MACHINERY[0]
    if kernel_app in report["skipped"]:
        return {**report, "unsafe": kernel_app, "why": report["skipped"][kernel_app]}
    if threading.active_count() > 1:
        return {**report, "unsafe": kernel_app, "why": "a thread is running after its import"}
    with _ShellQueries() as asked:
        for name in settings["modules"]:
            asked.clear()
            _import_into(report, name, project)
            why = _why_unsafe(asked)
            if why is not None:
                return {**report, "unsafe": name, "why": why}
    if own_backend is None:
        del os.environ["MPLBACKEND"]
    return report


def _import_into(report: dict[str, Any], name: str, project: Path) -> None:
    reason = _local_or_missing(name, project) or _try_import(name)
    if reason is None:
        report["imported"].append(name)
    else:
        report["skipped"][name] = reason


def _why_unsafe(asked: list[str]) -> str | None:
    if threading.active_count() > 1:
        return "a thread is running after its import"
    if asked:
        return "it asks IPython for its shell while it is imported"
    return None


class _ShellQueries(list[str]):
    """Records calls of IPython's `get_ipython` while active (then puts the original back)."""

    def __enter__(self) -> _ShellQueries:
        import IPython
        import IPython.core.getipython as where

        self._original = where.get_ipython
        self._active = True

        def recording() -> Any:  # modules that imported it keep it: it must stay harmless
            if self._active:
                self.append("get_ipython")
            return self._original()

        self._places = [IPython, where]
        for place in self._places:
            place.get_ipython = recording  # type: ignore[attr-defined]
        return self

    def __exit__(self, *_: object) -> None:
        self._active = False
        for place in self._places:
            place.get_ipython = self._original  # type: ignore[attr-defined]


def _local_or_missing(name: str, project: Path) -> str | None:
    """Why `name` must not be preloaded: not installed, or a module of the project."""
    from importlib.util import find_spec

    top = name.partition(".")[0]
    try:
        spec = find_spec(top)
    except (ImportError, ValueError) as error:
        return f"cannot be found: {error}"
    if spec is None:
        return "not installed"
    places = [spec.origin or "", *(spec.submodule_search_locations or [])]
    for place in places:
        with contextlib.suppress(OSError, ValueError):
            if place and Path(place).resolve().is_relative_to(project):
                return "a module of the project"
    return None


def _try_import(name: str) -> str | None:
    try:
        importlib.import_module(name)
    except BaseException as error:  # a module may raise anything, even SystemExit
        return f"{type(error).__name__}: {error}"[:200]
    return None


# -- serving fork requests ----------------------------------------------------------


def _serve(listener: socket.socket, environment: dict[str, str]) -> None:
    """Fork a kernel for each request until stdin closes."""
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        selector.register(sys.stdin, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is listener:
                    connection, _ = listener.accept()
                    with connection:
                        _answer(connection, listener, environment)
                elif not sys.stdin.readline():
                    return  # the worker is done (or gone)


def _answer(
    connection: socket.socket, listener: socket.socket, environment: dict[str, str]
) -> None:
    request, fds = _receive(connection)
    reply: dict[str, Any]
    if differing := _differences(request["env"], environment):
        reply = {"error": f"the kernel's environment differs from the template's: {differing}"}
    else:
        try:
            reply = {"pid": _fork_kernel(request, fds, [connection, listener])}
        except OSError as error:
            reply = {"error": f"cannot fork: {error}"}
    for fd in fds:  # (only the template gets here: the kernel child left by `_BecomeKernel`)
        os.close(fd)
    connection.sendall(json.dumps(reply).encode() + b"\n")


def _differences(wanted: dict[str, str], own: dict[str, str]) -> str:
    """Variables the kernel gets that the template did not import with (modules may read
    them on import, e.g. from a kernelspec's `env`), except those set again in the child."""
    names = (wanted.keys() ^ own.keys()) | {
        k for k in wanted.keys() & own.keys() if wanted[k] != own[k]
    }
    return ", ".join(sorted(names - _SET_IN_THE_CHILD))


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: a JSON line, with the kernel's stdout and stderr attached."""
    data, fds, _, _ = socket.recv_fds(connection, _MAX_REQUEST_BYTES, 2)
    while not data.endswith(b"\n"):
        more = connection.recv(_MAX_REQUEST_BYTES)
        if not more:
            break
        data += more
    return json.loads(data), list(fds)


def _fork_kernel(request: dict[str, Any], fds: list[int], sockets: list[socket.socket]) -> int:
    """Fork twice; the grandchild becomes the kernel. Returns its pid once it is the worker's."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:  # the intermediate child: fork the kernel, say its pid, leave
        kernel = -1
        try:
            os.close(read_end)
            intermediate = os.getpid()
            kernel = os.fork()
            if kernel == 0:
                try:
                    os.close(write_end)
                    _detach(fds, sockets, intermediate=intermediate)
                except BaseException:
                    os._exit(70)
                raise _BecomeKernel(request)
            os.write(write_end, str(kernel).encode())
        finally:
            if kernel != 0:  # never return into the template's loop from here
                os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(middle, 0)  # the kernel is an orphan now, adopted by the worker (a subreaper)
    if not answer:
        raise OSError("the forked child ended before it forked the kernel")
    return int(answer)


def _detach(fds: list[int], sockets: list[socket.socket], *, intermediate: int) -> None:
    """In the kernel child: own session, own stdio, nothing of the template's connections."""
    os.setsid()
    for sock in sockets:
        sock.close()
    stdout, stderr = fds
    devnull = os.open(os.devnull, os.O_RDONLY)
    for source, target in ((devnull, 0), (stdout, 1), (stderr, 2)):
        os.dup2(source, target)
    for fd in {devnull, *fds}:
        os.close(fd)
    while os.getppid() == intermediate:  # until adopted by the worker, as ipykernel expects
        time.sleep(0.001)


# -- the child: an ordinary kernel ---------------------------------------------------


def _become_kernel(request: dict[str, Any], initial_path: list[str]) -> None:
    """Set up what a fresh `python -m ipykernel_launcher` would have, then run it."""
    import random
    import runpy

    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _reread_kernel_settings()
    argv: list[str] = request["argv"]
    sys.orig_argv = list(argv)
    sys.argv = ["-m", *argv[3:]]  # runpy sets argv[0] to the launcher's file, as -m does
    sys.path[:] = [os.getcwd(), *initial_path[1:]]
    for name in [n for n in sys.modules if n == "nbci" or n.startswith("nbci.")]:
        del sys.modules[name]  # the template's own code: a notebook may import another nbci
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    random.seed()
    if numpy := sys.modules.get("numpy"):
        numpy.random.seed()
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)


def _reread_kernel_settings() -> None:
    """What ipykernel read from the environment when the template imported it."""
    from ipykernel.kernelapp import IPKernelApp

    parent = IPKernelApp.class_traits()["parent_handle"]
    parent.default_value = int(os.environ.get("JPY_PARENT_PID") or 0)
