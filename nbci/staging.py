"""The output directory: checked before a run, locked while one writes it, built in a hidden
staging folder beside it and swapped into place in one step, so it always holds either the
previous complete run or the new one, never a mix. A lock file beside it (`.NAME.lock`)
keeps a second run (or report) from writing it at the same time; a killed run's staging
folder is removed (and a killed swap undone) by the next run.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbci._files import FOLDER_MODE, write_text_atomic
from nbci.errors import RunError, UsageError
from nbci.results import RESULTS_FILE

log = logging.getLogger(__name__)

_PID_FILE = ".nbci-pid"
"""In a staging folder: the process building it, `PID START-TIME` (psutil's create time)."""


def check_output_dir(out_dir: Path, root: Path) -> None:
    """Refuse an output directory that replacing would destroy something else.

    A run replaces the whole output directory, so it must be an earlier run's
    (it holds results.json), empty, or absent; and never the project itself
    or a folder around it.
    """
    out_dir, root = out_dir.resolve(), root.resolve()
    if out_dir == root or out_dir in root.parents:
        raise UsageError(
            f"output directory {out_dir}: it holds the project at {root}, and nbci replaces "
            "its output directory on every run; choose a folder of its own (--out or `out`)"
        )
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"output directory {out_dir}: exists and is not a folder")
    if (out_dir / RESULTS_FILE).is_file() or not any(out_dir.iterdir()):
        return
    raise UsageError(
        f"output directory {out_dir}: exists and is not an nbci output directory (no "
        f"{RESULTS_FILE}); nbci replaces its output directory on every run, so choose another "
        "(--out or `out`) or remove this one"
    )


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold `.NAME.lock` beside `out_dir` for the block; refuse in one line when another
    nbci process holds it (a second run into the same folder would swap over the first's)."""
    from filelock import FileLock, Timeout

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(
            f"output directory {out_dir}: another nbci run is writing it (it holds {lock_path}); "
            "wait for it to finish, or choose another folder (--out)"
        ) from None
    except OSError as error:
        raise RunError(f"output directory {out_dir}: cannot lock {lock_path}: {error}") from None
    try:
        yield
    finally:
        lock.release()


class Staging:
    """A hidden folder beside `out_dir` that replaces it on success.

    Old staging folders left by killed runs are removed first. On an exception
    the staging folder is removed and `out_dir` is left as it was.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path: Path | None = None

    def __enter__(self) -> Path:
        parent = self.out_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        for stale in _stale_siblings(self.out_dir):
            _recover(stale, self.out_dir)
            shutil.rmtree(stale, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.staging-", dir=parent))
        os.chmod(self.path, FOLDER_MODE)  # mkdtemp's 0700 would hide the run from others
        # whole or absent, never read half-written (an empty stamp would look like a dead run)
        write_text_atomic(self.path / _PID_FILE, f"{os.getpid()} {_start_time(os.getpid())}")
        return self.path

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.path is not None
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        (self.path / _PID_FILE).unlink(missing_ok=True)
        try:
            _swap_into_place(self.path, self.out_dir)
        except OSError as error:
            raise RunError(
                f"output directory {self.out_dir}: the new run could not be put in place "
                f"({error.strerror or error}); it is kept in {self.path}"
            ) from None


def _stale_siblings(out_dir: Path) -> Iterator[Path]:
    for prefix in (".staging-", ".old-"):
        for path in out_dir.parent.glob(f".{out_dir.name}{prefix}*"):
            if not _owned_by_live_process(path):
                yield path


def _recover(stale: Path, out_dir: Path) -> None:
    """Put back the previous run a killed swap left aside (a `.old-` folder, no output dir)."""
    previous = stale / "run"
    if ".old-" in stale.name and not out_dir.exists() and (previous / RESULTS_FILE).is_file():
        log.warning("restoring the previous run from %s", stale)
        os.replace(previous, out_dir)


def _owned_by_live_process(path: Path) -> bool:
    """Staging folders of a run still going (another `nbci run`, maybe another user's) are
    left alone. The process is known by its id and start time: an id the system gave to
    another process since does not keep a dead run's folder."""
    try:
        stamp = (path / _PID_FILE).read_text().split()
        pid = int(stamp[0])
    except (OSError, ValueError, IndexError):
        return False
    started = _start_time(pid)
    if started is None:
        return False
    return len(stamp) < 2 or started == _UNKNOWN or started == stamp[1]


_UNKNOWN = "?"


def _start_time(pid: int) -> str | None:
    """When process `pid` started (psutil's create time, as text); None when no such process
    runs; `_UNKNOWN` when it cannot be inspected (another user's, on a hardened system)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return repr(process.create_time())
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return _UNKNOWN


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    old = None
    with _signals_held():  # between the two renames there is no output directory at all
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "run")
        os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("wrote %s", out_dir)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, not lost) until the block is done."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
