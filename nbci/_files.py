"""Files handled safely: atomic replacement, names that cannot escape a folder, and bounded
reads of untrusted run folders."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 80


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_FILE_MODE = 0o666 & ~_UMASK
FOLDER_MODE = 0o777 & ~_UMASK
"""What `mkdir` would give: for folders made with `mkdtemp` (0700) that others may read."""


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    return write_chunks_atomic(path, (data,))


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_chunks_atomic(path: Path, chunks: Iterable[bytes | str]) -> Path:
    """Write `chunks` (text as UTF-8) to `path` as they come, as `write_bytes_atomic` writes:
    a long document (`report.html`) is never held whole. A failure while they are made
    leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; others may read what we write
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def link_or_copy(source: Path, target: Path) -> None:
    """Put `source`'s bytes at `target` (replacing a file there): a hard link where the file
    system allows, else a copy. Linking 600 files of a 200-job merge took a fifth of the
    time copying them did on a busy disk. Safe because nbci never rewrites a file in place:
    it replaces it (`write_bytes_atomic`), which leaves the other link as it was."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed there
        shutil.copyfile(source, target)


def remove_drawn(folder: Path) -> None:
    """Remove a folder of files an earlier render drew (`charts/`, `diffs/`, `trends/`), so
    that a new render leaves none of them behind; a link there is removed, never followed."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder)


def safe_name(name: str, *, max_length: int = MAX_NAME) -> str:
    """A file-name stem for an untrusted string: `[A-Za-z0-9._-]` only, never `.`/`..`.

    Names that had to change get a short hash of the original appended, so two
    different names never collide (`a/b` and `a_b` differ).
    """
    normal = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", normal).strip("._-")[:max_length]
    if cleaned == name and cleaned:
        return cleaned
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned}-{digest}" if cleaned else digest


def is_within(path: Path, folder: Path) -> bool:
    """True when `path` resolves to `folder` or somewhere below it."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def read_inside(folder: Path, relative: str, limit: int) -> bytes | str:
    """The bytes of `folder/relative`, or why they were refused: the file must be a regular
    file (not a link) inside `folder` and at most `limit` bytes, also while it is read."""
    path = folder / relative
    try:
        info = path.lstat()
    except OSError:
        return "missing"
    if not stat.S_ISREG(info.st_mode) or not is_within(path, folder):
        return "not a regular file inside the run directory"
    if info.st_size > limit:
        return f"{info.st_size} bytes, over the {limit // 2**20} MiB cap"
    try:
        with path.open("rb") as f:
            # read(n) allocates n bytes first: ask for the file's size, not the cap (10 MiB
            # for each figure that report.html inlines); more only if it grew meanwhile
            data = f.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += f.read(limit + 1 - len(data))
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    if len(data) > limit:
        return "grew past the size cap while being read"
    return data
