"""Helpers of the hostile suite: the CLI as a subprocess, file-system snapshots, processes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "notebooks"
TAG = "NBCI_HOSTILE_TAG"
"""An environment variable every process a test's `nbci` starts inherits (kernels too)."""


def new_tag() -> str:
    return uuid.uuid4().hex


def cli_env(tag: str, **extra: str) -> dict[str, str]:
    """The environment for `python -m nbci`: this checkout first on PYTHONPATH (kernels
    import `nbci` too), no GitHub Actions variables, and the tag."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env[TAG] = tag
    env.update(extra)
    return env


def nbci(
    args: Sequence[str],
    cwd: Path,
    *,
    tag: str | None = None,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m nbci ARGS` in `cwd` (with `env` added to `cli_env`) and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "nbci", *args],
        cwd=cwd,
        env=cli_env(tag or new_tag(), **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def copy_fixtures(kind: str, target: Path) -> Path:
    """`tests/hostile/notebooks/<kind>/` copied to `target` (a project folder)."""
    shutil.copytree(FIXTURES / kind, target)
    return target


# -- the file system -----------------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry below `folder`: relative path -> (kind, mode, content digest or link)."""
    entries: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            info = path.lstat()
            if path.is_symlink():
                entries[str(path.relative_to(folder))] = ("link", 0, os.readlink(path))
            elif path.is_dir():
                entries[str(path.relative_to(folder))] = ("dir", info.st_mode, "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[str(path.relative_to(folder))] = ("file", info.st_mode, digest)
    return entries


def changes(
    before: dict[str, tuple[str, int, str]],
    after: dict[str, tuple[str, int, str]],
    *,
    allowed: Iterable[str] = (),
) -> list[str]:
    """Paths added, removed or changed, except below the `allowed` folders."""
    prefixes = tuple(f"{a}/" for a in allowed)
    changed = sorted(
        path
        for path in set(before) | set(after)
        if before.get(path) != after.get(path)
        and path not in allowed
        and not path.startswith(prefixes)
    )
    return changed


# -- the process table (psutil) ------------------------------------------------


def alive(pid: int) -> bool:
    """True for a process that exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def tagged(tag: str) -> list[int]:
    """Live processes started (at any depth) by an `nbci` run with this tag."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            mark = process.environ().get(TAG)
        except psutil.Error:
            continue
        if mark == tag and alive(process.pid):
            found.append(process.pid)
    return found


def command_line(pid: int) -> str:
    """A process's command line, or `?` when it is gone."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return "?"


def describe(pids: Iterable[int]) -> list[str]:
    return [f"{pid}: {command_line(pid).strip()[:120]}" for pid in pids]


def leftovers(tag: str, *, wait: float = 10.0) -> list[str]:
    """The processes of a finished run still alive after `wait` seconds (SIGKILL lands soon)."""
    deadline = time.monotonic() + wait
    while (left := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return describe(left)


def kill_tagged(tag: str) -> None:
    """Clean up after a failed check: kill what this test's run left behind."""
    for pid in tagged(tag):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
