"""Killing a kernel and everything it started, through psutil's process table.

A kernel is launched as the leader of a session of its own: killing that
session takes the kernel and whatever it forked, also children that moved to
a process group of their own. A worker is a child subreaper (Linux), so what
escaped into a session of its own is reparented to the worker when its parent
dies, and `kill_strays` finds it among the worker's descendants. A forked
kernel is not the worker's: its nanny (`fork_server._nanny`) is the child
subreaper that reaps it and kills its strays the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Collection

import psutil


def kill_session(sid: int, *, descendants_only: bool = False) -> None:
    """SIGKILL the process group `sid` and every process in session `sid`.

    With `descendants_only` (a subreaper killing what its kernel left, once
    the kernel may have been reaped), only this process's descendants: were
    the session empty, its id could have been reused by an unrelated process.
    """
    if not descendants_only:
        with contextlib.suppress(OSError):
            os.killpg(sid, signal.SIGKILL)
    mine = {p.pid for p in _descendants(psutil.Process())} if descendants_only else None
    for pid in psutil.pids():
        try:
            in_session = os.getsid(pid) == sid
        except OSError:  # gone, or not ours to see
            continue
        if in_session and (mine is None or pid in mine):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children again, not init's (Linux).

    psutil has no prctl; this is one call through libc.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_child_subreaper = 36
    try:
        answer: int = ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
        return answer == 0
    except (OSError, AttributeError):
        return False


def kill_strays(keep: Collection[int]) -> None:
    """SIGKILL and reap every descendant of this process outside the kernels in `keep`.

    For a worker that is a child subreaper: whatever a kernel started, even in
    a session of its own, stays below the worker when its parent dies.
    """
    if not has_children():  # nor descendants: psutil's scan of every process took 3 ms
        return
    me = psutil.Process()
    for _ in range(100):  # each round reaps one generation of orphans
        strays = _descendants_outside(me, keep)
        if not strays:
            return
        for process in strays:
            with contextlib.suppress(psutil.Error):
                process.kill()
        for process in strays:
            with contextlib.suppress(psutil.Error, ChildProcessError):
                if process.ppid() == me.pid:
                    os.waitpid(process.pid, 0)


def has_children() -> bool:
    """Whether this process has a child, ended (not yet reaped) or not. Without one it has
    no descendant either; below a subreaper, what outlives its parent becomes its child."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _descendants_outside(root: psutil.Process, keep: Collection[int]) -> list[psutil.Process]:
    """`root`'s descendants, except the processes in `keep` and their own descendants."""
    found: list[psutil.Process] = []
    below = [child for child in _children(root) if child.pid not in keep]
    while below:
        process = below.pop()
        found.append(process)
        below += _children(process)
    return found


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children()
    except psutil.Error:
        return []
