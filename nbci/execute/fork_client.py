"""The clients' side of the template processes: start the base (the run's parent), ask for
set templates and kernels (the workers), stop it.

See `fork_server` for the templates themselves. A template that cannot
start, dies, or cannot fork only means normal kernel starts; it never fails
a job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
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
_said: set[str] = set()


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


class BaseTemplate:
    """The run's base template as a worker reaches it: its pid and its socket (picklable).

    Started once per run by the parent (`Template`) and shared by the
    workers, it imports ipykernel's machinery once for all of them; each set
    template it forks serves every worker whose notebook imports that set.
    """

    def __init__(self, pid: int, socket_path: Path) -> None:
        self.pid = pid
        self.socket_path = socket_path
        self.report: TemplateReport | None = None

    def wait_ready(self, timeout: float) -> TemplateReport:
        """Block until the template has imported the kernel machinery; raises `TemplateError`."""
        if self.report is None:
            try:
                raw = _ask(self.socket_path, {"op": "report"}, timeout, alive=self.alive)
            except TemplateError:
                raise TemplateError(self._why_not_started(timeout)) from None
            self.report = _report(raw)
        return self.report

    def _why_not_started(self, timeout: float) -> str:
        return "the template process did not start" + (
            f" within {timeout:g} s" if self.alive() else ""
        )

    def fork_set(self, modules: Sequence[str]) -> SetTemplate:
        """The template of `modules`: the base forks it (it imports them in the background)
        unless it has it already, for this worker or another one."""
        request = {"op": "template", "modules": list(modules)}
        answer = _ask(self.socket_path, request, FORK_REPLY_TIMEOUT_S)
        pid, path, new = int(answer["pid"]), Path(answer["socket"]), bool(answer["new"])
        return SetTemplate(pid, path, tuple(modules), new=new)

    def alive(self) -> bool:
        return _running(self.pid)


class Template(BaseTemplate):
    """The base template process, started with the kernels' environment in a folder of its own
    (by the run's parent: its workers reach it as a `BaseTemplate`)."""

    def __init__(
        self,
        folder: Path,
        environment: Mapping[str, str],
        project: Path,
        notebook_folders: Sequence[Path] = (),
    ) -> None:
        self.folder = folder
        socket_path = folder / f"template-{os.getpid()}.sock"
        self._log = (folder / f"template-{os.getpid()}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(socket_path)],
            stdin=subprocess.PIPE,
            stdout=self._log,  # its log: what it imports may print; it answers on its socket
            stderr=self._log,
            cwd=folder,
            env=dict(environment),
            start_new_session=True,  # Ctrl-C to the terminal's group is not for it
        )
        super().__init__(self.process.pid, socket_path)
        assert self.process.stdin is not None
        settings = {"project": str(project), "folders": [str(f) for f in notebook_folders]}
        try:
            self.process.stdin.write(json.dumps(settings).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died at once; `wait_ready` says so

    def shared(self) -> BaseTemplate:
        """What a worker is sent to reach this template."""
        return BaseTemplate(self.pid, self.socket_path)

    def _why_not_started(self, timeout: float) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1)  # it closed its socket: it is exiting
        code = self.process.poll()
        return "the template process did not start" + (
            f" (exit code {code})" if code is not None else f" within {timeout:g} s"
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Kill the template and its set templates (they hold no work) and reap it. Never raises.

        The kernels' nannies lead process groups of their own: each ends by
        itself once its kernel has ended or its worker has gone, after killing
        what the kernel left."""
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
    """A template forked from the base that imported one notebook's modules (the base's child,
    retired by the base when no worker asked for it last)."""

    pid: int
    socket_path: Path
    modules: tuple[str, ...]
    new: bool = True
    """Forked for this request (else another request's, which may be retired by now)."""
    report: TemplateReport | None = None

    def wait_ready(self, timeout: float) -> TemplateReport:
        """Block until it has imported its modules; raises `TemplateError`."""
        if self.report is None:
            self.report = _report(_ask(self.socket_path, {"op": "report"}, timeout, self.alive))
        return self.report

    def alive(self) -> bool:
        return _running(self.pid)


def _running(pid: int) -> bool:
    """Whether `pid` runs (not a zombie): a template is not this process's child."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


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
) -> ForkedProcess:
    """Ask the template at `socket_path` for a kernel; `stdio`: its stdout, stderr and stdin.

    The connection stays open: the kernel's nanny says on it how the kernel ended.
    """
    request = {"op": "fork", "argv": list(argv), "env": dict(env), "cwd": cwd}
    connection, answer, rest = _request(socket_path, request, FORK_REPLY_TIMEOUT_S, fds=stdio)
    return ForkedProcess(int(answer["pid"]), connection, rest)


def _ask(
    socket_path: Path | str,
    request: Mapping[str, Any],
    timeout: float,
    alive: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """One request, one JSON answer; raises `TemplateError` (also for an `error` answer).

    With `alive`, waits (up to `timeout`) for the socket to appear while the
    template is starting; the answer may take that long too (a template
    answers once it has imported).
    """
    connection, answer, _ = _request(socket_path, request, timeout, alive)
    connection.close()
    return answer


def _request(
    socket_path: Path | str,
    request: Mapping[str, Any],
    timeout: float,
    alive: Callable[[], bool] | None = None,
    fds: Sequence[int] = (),
) -> tuple[socket.socket, dict[str, Any], bytes]:
    """Send `request`; the open connection, the first answer and what followed it."""
    data = json.dumps(request).encode() + b"\n"
    deadline = time.monotonic() + timeout
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _connect(connection, str(socket_path), deadline, alive)
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        sent = socket.send_fds(connection, [data], list(fds)) if fds else 0
        if sent < len(data):  # (an empty send fails once the template has answered)
            connection.sendall(data[sent:])
        reply = b""
        while b"\n" not in reply:
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
    except OSError as error:
        connection.close()
        raise TemplateError(f"the template does not answer: {error}") from error
    line, _, rest = reply.partition(b"\n")
    if not line:
        connection.close()
        raise TemplateError("the template closed the connection without an answer")
    answer: dict[str, Any] = json.loads(line)
    if "error" in answer:
        connection.close()
        raise TemplateError(str(answer["error"]))
    return connection, answer, rest


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

    The kernel is its nanny's child (`fork_server._nanny`), not this
    process's: its exit code comes on the connection of the fork request,
    once the nanny has reaped it and killed whatever it left. A connection
    that ends without one means the nanny was killed: the code is unknown
    (255, as for a child reaped elsewhere).
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int, connection: socket.socket, received: bytes = b"") -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._connection = connection
        self._received = received
        self._code: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0.0)
            self._read(left)
        return code

    def _read(self, timeout: float | None) -> None:
        """Read what the nanny said (waiting up to `timeout`); done at the end of it."""
        ready, _, _ = select.select([self._connection], [], [], timeout)
        if not ready:
            return
        try:
            chunk = self._connection.recv(4096)
        except OSError:
            chunk = b""
        self._received += chunk
        if chunk:
            return
        for line in self._received.splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self._code = int(json.loads(line)["exit"])
        self._connection.close()
        self.returncode = 255 if self._code is None else self._code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fall_back(reason: str) -> None:
    """Say once (per worker, and per run in the parent, which forwards the workers' logs
    once) why a kernel started normally."""
    if reason not in _said:
        _said.add(reason)
        logger.info(
            "some kernels start normally, without pre-imported modules: %s",
            reason,
            extra={"nbci_once": True},
        )
