"""The process table in tests (psutil): is a process alive, which kernels did a worker leave."""

from __future__ import annotations

import time
from collections.abc import Iterable

import psutil
import pytest


def alive(pid: int) -> bool:
    """True for a process that exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def kernels_of(workers: Iterable[int]) -> list[int]:
    """Live processes started by a kernel or template of one of `workers`.

    jupyter_client sets JPY_PARENT_PID for kernels; a worker's template process
    gets it too, and kernels forked from the template inherit its environment.
    """
    marks = {str(pid) for pid in workers}
    found = []
    for process in psutil.process_iter():
        try:
            mark = process.environ().get("JPY_PARENT_PID")
        except psutil.Error:
            continue
        if mark in marks and alive(process.pid):
            found.append(process.pid)
    return found


def assert_all_gone(pids: Iterable[int], workers: Iterable[int] = ()) -> None:
    """Every pid and every kernel process of `workers` ends (SIGKILL lands within moments)."""
    pids, workers = list(pids), list(workers)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)] + kernels_of(workers)
        if not left:
            return
        time.sleep(0.1)
    pytest.fail(f"processes outlived their jobs: {left}")
