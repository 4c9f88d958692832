"""The worker's side of the template processes: start them, ask them for kernels, stop them.

See `fork_server` for the templates themselves. A template that cannot
start, dies, or cannot fork only means normal kernel starts; it never fails
a job.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORK_REPLY_TIMEOUT_S = 30.0
"""How long a fork request may take (a fork is milliseconds; this only bounds a hung template)."""
_BOOT = "from nbci.execute.fork_server import main; main()"


class TemplateError(Exception):
    """The template cannot give a kernel; the message says why, in one line."""


@dataclass(frozen=True)
class TemplateReport:
    """What a template pre-imported, as it said once ready."""

    imported: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    """Module → why it was not pre-imported."""
    unsafe: str | None = None
    """A module that makes the template unsafe to fork (see `fork_server._preload`)."""
    why: str | None = None


class Template:
    """The base template process, started with the kernels' environment in a folder of its own."""

    def __init__(
        self,
        folder: Path,
        environment: Mapping[str, str],
        project: Path,
        notebook_folders: Sequence[Path] = (),
    ) -> None:
        self.folder = folder
        self.socket_path = folder / f"template-{os.getpid()}.sock"
        self._log = (folder / f"template-{os.getpid()}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(self.socket_path)],
            stdin=subprocess.PIPE,
            stdout=self._log,  # its log: what it imports may print; it answers on its socket
            stderr=self._log,
            cwd=folder,
            env=dict(environment),
            start_new_session=True,  # Ctrl-C to the terminal's group is not for it
        )
        self.report: TemplateReport | None = None
        self._sets = itertools.count(1)
        assert self.process.stdin is not None
        settings = {"project": str(project), "folders": [str(f) for f in notebook_folders]}
        try:
            self.process.stdin.write(json.dumps(settings).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died at once; `wait_ready` says so

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> TemplateReport:
        """Block until the template has imported the kernel machinery; raises `TemplateError`."""
        if self.report is None:
            try:
                raw = _ask(self.socket_path, {"op": "report"}, timeout, alive=self.alive)
            except TemplateError:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(1)  # it closed its socket: it is exiting
                code = self.process.poll()
                raise TemplateError(
                    "the template process did not start"
                    + (f" (exit code {code})" if code is not None else f" within {timeout:g} s")
                ) from None
            self.report = _report(raw)
        return self.report

    def fork_set(self, modules: Sequence[str]) -> SetTemplate:
        """A template of `modules`, forked from this one (it imports them in the background)."""
        path = self.folder / f"template-{os.getpid()}-{next(self._sets)}.sock"
        request = {"op": "template", "modules": list(modules), "socket": str(path)}
        pid = int(_ask(self.socket_path, request, FORK_REPLY_TIMEOUT_S)["pid"])
        return SetTemplate(pid, path, tuple(modules))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Kill the template and its set templates (they hold no work) and reap it. Never raises."""
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(5)
        for stream in (self.process.stdin, self._log):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self.socket_path.unlink(missing_ok=True)


@dataclass
class SetTemplate:
    """A template forked from the base that imported one notebook's modules (the base's child)."""

    pid: int
    socket_path: Path
    modules: tuple[str, ...]
    report: TemplateReport | None = None

    def wait_ready(self, timeout: float) -> TemplateReport:
        """Block until it has imported its modules; raises `TemplateError`."""
        if self.report is None:
            self.report = _report(_ask(self.socket_path, {"op": "report"}, timeout, self.alive))
        return self.report

    def alive(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                return stat.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
        except (OSError, IndexError):
            return False

    def stop(self) -> None:
        """Kill it (its parent, the base template, reaps it). Never raises."""
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        self.socket_path.unlink(missing_ok=True)


def _report(raw: Mapping[str, Any]) -> TemplateReport:
    return TemplateReport(
        imported=tuple(raw["imported"]),
        skipped=raw["skipped"],
        unsafe=raw["unsafe"],
        why=raw["why"],
    )


def request_fork(
    socket_path: Path | str,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    stdio: Sequence[int],
) -> int:
    """Ask the template at `socket_path` for a kernel; `stdio`: its stdout, stderr and stdin."""
    request = {"op": "fork", "argv": list(argv), "env": dict(env), "cwd": cwd}
    return int(_ask(socket_path, request, FORK_REPLY_TIMEOUT_S, fds=stdio)["pid"])


def _ask(
    socket_path: Path | str,
    request: Mapping[str, Any],
    timeout: float,
    alive: Callable[[], bool] | None = None,
    fds: Sequence[int] = (),
) -> dict[str, Any]:
    """One request, one JSON answer; raises `TemplateError` (also for an `error` answer).

    With `alive`, waits (up to `timeout`) for the socket to appear while the
    template is starting; the answer may take that long too (a template
    answers once it has imported).
    """
    data = json.dumps(request).encode() + b"\n"
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            _connect(connection, str(socket_path), deadline, alive)
            connection.settimeout(max(0.01, deadline - time.monotonic()))
            sent = socket.send_fds(connection, [data], list(fds)) if fds else 0
            if sent < len(data):  # (an empty send fails once the template has answered)
                connection.sendall(data[sent:])
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except OSError as error:
        raise TemplateError(f"the template does not answer: {error}") from error
    if not reply:
        raise TemplateError("the template closed the connection without an answer")
    answer: dict[str, Any] = json.loads(reply)
    if "error" in answer:
        raise TemplateError(str(answer["error"]))
    return answer


def _connect(
    connection: socket.socket, path: str, deadline: float, alive: Callable[[], bool] | None
) -> None:
    """Connect, waiting for a starting template (`alive`) to listen."""
    while True:
        try:
            connection.settimeout(max(0.01, deadline - time.monotonic()))
            connection.connect(path)
            return
        except (FileNotFoundError, ConnectionRefusedError):
            if alive is None or not alive() or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class ForkedProcess:
    """A forked kernel as jupyter_client's local provisioner sees a `Popen`.

    The kernel is this process's child (adopted: this process is a child
    subreaper), so `waitpid` gives its exit status like any child's.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it is gone, its status unknown
                self.returncode = 255
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0.0)
            time.sleep(0.01)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
