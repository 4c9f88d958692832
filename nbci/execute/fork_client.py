"""The worker's side of the template process: start it, ask it for kernels, stop it.

See `fork_server` for the template itself. A template that cannot start,
dies, or cannot fork only means normal kernel starts (`Template.usable`
turns false); it never fails a job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

FORK_REPLY_TIMEOUT_S = 30.0
"""How long a fork request may take (a fork is milliseconds; this only bounds a hung template)."""
UNSAFE_RETRIES = 3
"""Templates started again without a module that left a thread running, before giving up."""
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
    """One template process, started with the kernels' environment in a folder of its own."""

    def __init__(
        self,
        folder: Path,
        environment: Mapping[str, str],
        modules: Sequence[str],
        project: Path,
    ) -> None:
        self.socket_path = folder / f"template-{os.getpid()}.sock"
        self._log = (folder / f"template-{os.getpid()}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(self.socket_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=folder,
            env=dict(environment),
            start_new_session=True,  # Ctrl-C to the terminal's group is not for it
        )
        self.report: TemplateReport | None = None
        assert self.process.stdin is not None
        settings = {"modules": list(modules), "project": str(project)}
        try:
            self.process.stdin.write(json.dumps(settings).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died at once; `wait_ready` says so

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> TemplateReport:
        """Block until the template has pre-imported everything; raises `TemplateError`."""
        if self.report is not None:
            return self.report
        line = _read_line(self.process.stdout, timeout)
        if not line:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1)  # it closed its stdout: it is exiting
            code = self.process.poll()
            raise TemplateError(
                "the template process did not start"
                + (f" (exit code {code})" if code is not None else f" within {timeout:g} s")
            )
        raw = json.loads(line)
        self.report = TemplateReport(
            imported=tuple(raw["imported"]),
            skipped=raw["skipped"],
            unsafe=raw["unsafe"],
            why=raw["why"],
        )
        return self.report

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Kill the template (it holds no work) and reap it. Never raises."""
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout, self._log):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self.socket_path.unlink(missing_ok=True)


def request_fork(
    socket_path: Path | str,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    stdio: Sequence[int],
) -> int:
    """Ask the template at `socket_path` for a kernel; `stdio` are its stdout and stderr fds."""
    request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": cwd}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(FORK_REPLY_TIMEOUT_S)
            connection.connect(str(socket_path))
            sent = socket.send_fds(connection, [request], list(stdio))
            if sent < len(request):  # (an empty send fails once the template has answered)
                connection.sendall(request[sent:])
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = connection.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError as error:
        raise TemplateError(f"the template does not answer: {error}") from error
    if not reply:
        raise TemplateError("the template closed the connection without a kernel")
    answer: dict[str, Any] = json.loads(reply)
    if "pid" not in answer:
        raise TemplateError(str(answer.get("error", "the template gave no kernel")))
    return int(answer["pid"])


def _read_line(stream: IO[bytes] | None, timeout: float) -> bytes:
    """One line from a pipe, or b"" when it closes or the time is up."""
    if stream is None:
        return b""
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                return b""
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return b""
            data += chunk
    return data


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
