"""The run cache: an unchanged job is restored, not executed again.

A job's key hashes everything that can change its result (see `cache_key`).
An entry is a small output directory of its own::

    .nbci-cache/
      CACHEDIR.TAG                  # backup tools skip the folder
      entries/<key>/entry.json      # the result + a sha256 of every file below
      entries/<key>/notebooks/<job-id>.ipynb, .html
      entries/<key>/figures/<job-id>/<name>.png
      tmp/                          # entries being built, and entries being deleted
      charts/<key>.png              # charts the reports drew (`nbci.render.charts`)

An entry is built in `tmp/` and renamed into `entries/` in one step, so a run
killed midway leaves at most a stray folder in `tmp/` (pruned later), never a
half-written entry that is trusted. Restore checks every file against its hash,
so an entry damaged in any other way (a truncated `actions/cache` download, a
hand edit) is ignored and deleted, never fatal. The cache is pruned after every
store: entries unused for `max_age_days` go, then the least recently used until
the whole fits in `max_bytes`; kept charts unused for `max_age_days` go too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from nbci._files import is_within, write_text_atomic
from nbci._installed import installed_distributions
from nbci.model import SCHEMA, Job, NotebookResult, Run

log = logging.getLogger(__name__)

CACHE_FORMAT = 2
"""Bumped when the entry layout or the key's recipe changes: old entries then miss
(2: the time limits joined the key)."""
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_AGE_DAYS = 30.0
LOCK_FILES = ("uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock", "pixi.lock", "pylock.toml")
"""Lock files at the project root whose content joins the environment fingerprint."""
STALE_TMP_SECONDS = 3600.0
"""A folder in `tmp/` this old belongs to a run that was killed."""
_OURS_IN_TMP = re.compile(r"^(store-|delete-)")
_OURS_IN_ENTRIES = re.compile(r"^[0-9a-f]{64}$")
_OURS_IN_CHARTS = re.compile(r"^[0-9a-f]{64}\.png$")
"""Pruning touches only folders nbci names like this: `cache_dir` may hold the user's files."""
_ENTRY_FILE = "entry.json"
CHARTS = "charts"
"""The cache's folder of drawn charts, reused by what they show (`charts.chart_key`)."""
_CHUNK = 1024 * 1024
_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by nbci.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


@dataclass(frozen=True)
class CacheSettings:
    directory: Path
    """Where entries live (the config's `cache_dir`, `.nbci-cache/` under the project root)."""
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age_days: float = DEFAULT_MAX_AGE_DAYS
    """Entries not used (stored or restored) for this long are removed."""
    enabled: bool = True

    @property
    def entries(self) -> Path:
        return self.directory / "entries"

    @property
    def tmp(self) -> Path:
        return self.directory / "tmp"


# -- the key -------------------------------------------------------------------


def environment_fingerprint(root: Path) -> str:
    """A hash of the Python environment nbci (and the default `python3` kernel) runs in.

    Covers the interpreter (implementation, version, machine), every installed
    distribution as `name==version`, the content of any lock file at the root
    (`LOCK_FILES`: it pins what a version number cannot, such as a git
    dependency's commit), nbci's results schema and nbci's own source (an
    editable install changes without a version bump). `requirements*.txt` files
    are not read: they are rarely complete pins, and what they installed is
    already in the distribution list. Compute it once per run.
    """
    packages = _installed_distributions()
    locks = {name: _file_digest(root / name) for name in LOCK_FILES if (root / name).is_file()}
    return _digest(
        {
            "python": [sys.implementation.name, platform.python_version(), platform.machine()],
            "packages": packages,
            "locks": locks,
            "schema": SCHEMA,
            "nbci": _nbci_source_digest(),
        }
    )


def _nbci_source_digest() -> str:
    package = Path(__file__).parent
    files = sorted(package.rglob("*.py"))
    return _digest([[p.relative_to(package).as_posix(), _file_digest(p)] for p in files])


def cache_key(job: Job, root: Path, *, environment_fingerprint: str) -> str | None:
    """The hash of everything that can change `job`'s result; None if the notebook can't be read.

    In the key: the notebook's path (it runs in its own folder, so relative
    reads depend on it), each code cell's source and tags (tags steer
    papermill and nbclient: `parameters`, `raises-exception`,
    `skip-execution`), the parameters as canonical JSON, the kernel name
    (`job.kernel`, else the notebook's kernelspec), the name and content of
    every file matched by `job.deps` (relative to `root`), the time limits
    (a result that took 40 s is no pass under a 2 s cell timeout), the
    environment fingerprint, nbci's results schema and the cache format. Not
    in it: outputs, execution counts, markdown cells, other metadata.
    Local modules a notebook imports are only covered when listed in `deps`.
    """
    notebook = _read_notebook(root / job.path)
    if notebook is None:
        return None
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        log.info("%s: no cells list, not cached", job.path)
        return None
    try:
        code = [_code_cell(cell) for cell in cells if cell.get("cell_type") == "code"]
        kernel = job.kernel or notebook.get("metadata", {}).get("kernelspec", {}).get("name", "")
        deps = [_dep_hashes(root, pattern) for pattern in job.deps]
    except (AttributeError, TypeError, ValueError, NotImplementedError, OSError) as exc:
        log.info("%s: cannot compute a cache key (%s), not cached", job.path, exc)
        return None
    return _digest(
        {
            "format": CACHE_FORMAT,
            "schema": SCHEMA,
            "path": job.path,
            "code": code,
            "parameters": _canonical(job.parameters),
            "kernel": kernel,
            "deps": deps,
            "limits": [job.timeout, job.cell_timeout],
            "environment": environment_fingerprint,
        }
    )


def _read_notebook(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.info("%s: not a readable notebook (%s), not cached", path, exc)
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("nbformat"), int) and data["nbformat"] < 4:
        import nbformat  # only old notebooks pay for the conversion

        try:
            return dict(nbformat.reads(json.dumps(data), as_version=4))
        except Exception as exc:  # nbformat raises a wide variety on bad input
            log.info("%s: cannot convert to nbformat 4 (%s), not cached", path, exc)
            return None
    return data


def _code_cell(cell: dict[str, Any]) -> list[Any]:
    source = cell.get("source", "")
    text = "".join(source) if isinstance(source, list) else str(source)
    tags = cell.get("metadata", {}).get("tags", [])
    return [text, sorted(str(tag) for tag in tags)]


def _dep_hashes(root: Path, pattern: str) -> list[Any]:
    files = sorted(p for p in root.glob(pattern) if p.is_file())
    return [pattern, [[Path(os.path.relpath(p, root)).as_posix(), _file_digest(p)] for p in files]]


def _canonical(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr
    )


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _installed_distributions() -> list[str]:
    """Every distribution on `sys.path` as `name==version` (`nbci._installed`)."""
    return sorted({f"{name}=={version}" for name, version in installed_distributions()})


# -- restore -------------------------------------------------------------------


class _BadEntry(Exception):
    """A cache entry that must not be trusted."""


def restore(settings: CacheSettings, key: str, job: Job, out_dir: Path) -> NotebookResult | None:
    """Copy the entry for `key` into `out_dir` under `job`'s paths and return its result.

    The result is marked `cached=True`, keeps the duration of the run that
    produced it (what running it again would cost), and carries `cache_key`.
    A miss, or an entry that is damaged in any way, gives None.
    """
    if not settings.enabled:
        return None
    entry = settings.entries / key
    if not entry.is_dir():
        return None
    try:
        result, files = _load_entry(entry, key)
        result, copies = _retarget(result, job)
        for source, target in copies.items():
            if source not in files:
                raise _BadEntry(f"{source} is not in the manifest")
            _copy(entry / source, out_dir / target, files[source])
    except (_BadEntry, OSError, ValueError) as exc:
        log.warning("cache entry %s is unusable, ignoring and removing it: %s", key[:12], exc)
        _remove(settings, entry)
        return None
    _touch(entry)
    log.info("%s: restored from cache %s", job.id, key[:12])
    return replace(result, cached=True, cache_key=key)


def _load_entry(entry: Path, key: str) -> tuple[NotebookResult, dict[str, str]]:
    from nbci.errors import ResultsError
    from nbci.results import run_from_dict

    try:
        data = json.loads((entry / _ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _BadEntry(f"{_ENTRY_FILE}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("key") != key:
        raise _BadEntry(f"{_ENTRY_FILE}: wrong format or key")
    files = data.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise _BadEntry(f"{_ENTRY_FILE}: bad file list")
    try:
        run = run_from_dict(data.get("run"), source=str(entry / _ENTRY_FILE))
    except (ResultsError, TypeError, ValueError, AttributeError) as exc:
        raise _BadEntry(f"{_ENTRY_FILE}: {exc}") from exc
    if len(run.notebooks) != 1 or run.notebooks[0].status != "ok":
        raise _BadEntry(f"{_ENTRY_FILE}: expected one ok result")
    for name in files:
        if not is_within(entry / name, entry) or name == _ENTRY_FILE:
            raise _BadEntry(f"{name}: path outside the entry")
    return run.notebooks[0], files


def _retarget(result: NotebookResult, job: Job) -> tuple[NotebookResult, dict[str, str]]:
    """`result` moved to `job`'s id and paths, and which entry file goes to which output path.

    `notebooks/<old-id>.ipynb` becomes `notebooks/<id>.ipynb` and
    `figures/<old-id>/<name>` becomes `figures/<id>/<name>`: two jobs with the
    same key (the same notebook and parameters under two ids) share one entry.
    """
    copies: dict[str, str] = {}

    def move(old: str, new: PurePosixPath) -> str:
        copies[old] = new.as_posix()
        return copies[old]

    def own_file(path: str | None) -> str | None:
        if path is None:
            return None
        old = PurePosixPath(path)
        return move(path, old.parent / f"{job.id}{old.suffix}")

    def own_figure(path: str) -> str:
        old = PurePosixPath(path)
        return move(path, old.parent.parent / job.id / old.name)

    retargeted = replace(
        result,
        id=job.id,
        path=job.path,
        parameters=job.parameters,
        effective_parameters=job.effective,
        output=own_file(result.output),
        html=own_file(result.html),
        figures=tuple(replace(f, path=own_figure(f.path)) for f in result.figures),
    )
    return retargeted, copies


def _copy(source: Path, target: Path, sha256: str) -> None:
    data = source.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _BadEntry(f"{source.name}: content does not match its hash")
    # No fsync: a restored file can always be restored again.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _touch(entry: Path) -> None:
    with contextlib.suppress(OSError):  # removed meanwhile by a parallel prune: files are copied
        os.utime(entry)


# -- store and prune ---------------------------------------------------------------


def store(
    settings: CacheSettings,
    key: str,
    result: NotebookResult,
    out_dir: Path,
    *,
    then_prune: bool = True,
) -> None:
    """Save an `ok` result and its files from `out_dir` under `key`; then prune, unless
    `then_prune` is False: a run storing many results prunes once, at its end
    (`prune_quietly`), as pruning reads every entry (0.03 s of CPU at 200 entries, after
    each of 200 jobs).

    Never raises for an I/O problem: a cache that cannot be written only costs
    time on the next run, so it is logged and skipped.
    """
    if not settings.enabled or result.status != "ok" or result.cached:
        return
    try:
        _prepare(settings)
        staging = Path(tempfile.mkdtemp(prefix="store-", dir=settings.tmp))
        try:
            size = _build_entry(staging, key, result, out_dir)
            if size > settings.max_bytes:
                log.info("%s: %d bytes exceed the cache size limit, not cached", result.id, size)
                return
            _publish(settings, staging, settings.entries / key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        log.warning("%s: not stored in the cache: %s", result.id, exc)
        return
    if then_prune:
        prune_quietly(settings)


def prune_quietly(settings: CacheSettings) -> None:
    """`prune`, an I/O problem logged, not raised (it only leaves the cache larger)."""
    try:
        prune(settings)
    except OSError as exc:
        log.warning("the cache was not pruned: %s", exc)


def _prepare(settings: CacheSettings) -> None:
    settings.entries.mkdir(parents=True, exist_ok=True)
    settings.tmp.mkdir(parents=True, exist_ok=True)
    tag = settings.directory / "CACHEDIR.TAG"
    if not tag.exists():
        write_text_atomic(tag, _CACHEDIR_TAG)


def _build_entry(staging: Path, key: str, result: NotebookResult, out_dir: Path) -> int:
    from nbci.results import run_to_dict

    files: dict[str, str] = {}
    for rel in result.files:
        source = out_dir / rel
        if not is_within(source, out_dir):
            raise OSError(f"{rel}: path outside the output directory")
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        files[rel] = _file_digest(target)
    stored = replace(result, cached=False, cache_key=key)
    run = Run(notebooks=(stored,), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    entry = {"format": CACHE_FORMAT, "key": key, "files": files, "run": run_to_dict(run)}
    (staging / _ENTRY_FILE).write_text(json.dumps(entry), encoding="utf-8")
    return _size(staging)


def _publish(settings: CacheSettings, staging: Path, entry: Path) -> None:
    """Rename the finished entry into place; an older entry for the key is replaced."""
    try:
        os.rename(staging, entry)
        return
    except OSError:
        if not entry.exists():
            raise
    _remove(settings, entry)  # e.g. a damaged entry, or one written by a parallel run
    try:
        os.rename(staging, entry)
    except OSError:
        if not entry.exists():
            raise  # else a parallel run won the race with an equally good entry


def prune(settings: CacheSettings) -> None:
    """Drop stale temp folders, entries unused for `max_age_days`, then the least recently used
    entries until the cache fits in `max_bytes`."""
    now = time.time()
    for stray in _subdirs(settings.tmp, _OURS_IN_TMP):
        if now - _mtime(stray) > STALE_TMP_SECONDS:
            shutil.rmtree(stray, ignore_errors=True)
    entries = sorted(
        ((_mtime(e), e) for e in _subdirs(settings.entries, _OURS_IN_ENTRIES)),
        key=lambda pair: (pair[0], pair[1].name),
    )
    oldest_allowed = now - settings.max_age_days * 86400
    for chart in _charts(settings.directory / CHARTS):
        if _mtime(chart) < oldest_allowed:
            chart.unlink(missing_ok=True)
    kept: list[tuple[Path, int]] = []
    for mtime, entry in entries:
        if mtime < oldest_allowed:
            _remove(settings, entry)
        else:
            kept.append((entry, _size(entry)))
    total = sum(size for _, size in kept)
    for entry, size in kept:  # oldest first
        if total <= settings.max_bytes:
            break
        _remove(settings, entry)
        total -= size


def _remove(settings: CacheSettings, entry: Path) -> None:
    """Take an entry out of `entries/` in one rename, then delete it at leisure."""
    try:
        settings.tmp.mkdir(parents=True, exist_ok=True)
        doomed = settings.tmp / f"delete-{uuid.uuid4().hex}"
        os.rename(entry, doomed)
    except OSError:
        return  # already gone (another run pruned it) or not ours to move
    shutil.rmtree(doomed, ignore_errors=True)


def _subdirs(folder: Path, named: re.Pattern[str]) -> list[Path]:
    """The folders (not links) in `folder` whose names nbci gave them."""
    try:
        return [
            Path(e.path)
            for e in os.scandir(folder)
            if e.is_dir(follow_symlinks=False) and named.match(e.name)
        ]
    except OSError:
        return []


def _charts(folder: Path) -> list[Path]:
    """The chart files (not links) in `folder` whose names nbci gave them."""
    try:
        return [
            Path(e.path)
            for e in os.scandir(folder)
            if e.is_file(follow_symlinks=False) and _OURS_IN_CHARTS.match(e.name)
        ]
    except OSError:
        return []


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):  # removed meanwhile by a parallel run
                total += (Path(dirpath) / name).stat().st_size
    return total


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
