"""SIGINT and SIGTERM in the parent: recorded, and a self-pipe wakes the pool."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from typing import Any


class StopSignals:
    """While active, SIGINT and SIGTERM only record themselves and wake the pool.

    Raising from the handler would surface wherever the main thread happens to
    be, possibly in the caller's code between two yields; a flag plus a
    self-pipe makes the pool notice at once instead. Outside the main thread
    nothing is installed (signals cannot be handled there).

    Once the pool has no more work for the caller, `act_at_once` says what a
    signal does from then on, wherever the main thread is (`execute_jobs`:
    stop the workers, then the signal's own effect).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.fd: int | None = None
        """Readable once a signal arrived."""
        self._write_fd: int | None = None
        self._previous: dict[int, Any] = {}
        self._act: Callable[[int], object] | None = None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self._write_fd, False)
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        for fd in (self.fd, self._write_fd):
            if fd is not None:
                os.close(fd)

    def act_at_once(self, act: Callable[[int], object] | None) -> None:
        """The next signal also calls `act(signum)` in the handler (None: it only records)."""
        self._act = act

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = self.signum or signum
        if self._write_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._write_fd, b"!")
        act, self._act = self._act, None
        if act is not None:
            act(signum)
