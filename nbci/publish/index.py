"""The assets branch's index: which folders nbci stored there, when, and what is in each.

Every publish that commits to the assets branch rewrites `index.json` (at the
root of nbci's files) in the same commit: one entry per stored run
(`runs/<sha>/<report>/`) and per review folder (`pr/<n>/<report>/`), with the
time it was last written and the files it holds. A publish reads this one
file instead of listing the branch, so finding the baseline, the history and
what to prune costs the same number of requests whether the branch holds 10
stored runs or 2,000 (a whole-tree listing is cut at 100,000 entries on
GitHub and comes 100 entries a request from GitLab). The files are listed so
that pruning a folder needs no listing either: both forges delete files, not
folders.

A default-branch publish prunes (`prune`): each report keeps its newest
`keep_runs` stored runs (never fewer than `history`; 0 keeps every one), and
review folders not written for `keep_pr_days` days go (0 keeps every one).

A branch written by an nbci without the index is listed once, whole, and
indexed (`from_listing`), runs in both earlier layouts (`runs/<sha>/results.json`
without a report name, `runs/<sha>/<report>/`) and review folders
(`pr/<n>/...`) alike; they count as written at that moment. The index is
untrusted like every file of the branch: a malformed one is refused whole
(`parse`) and the branch is indexed again from a listing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from nbci._files import safe_name
from nbci.errors import ResultsError

INDEX_FILE = "index.json"
SCHEMA = "nbci.assets-index/1"
MAX_INDEX_BYTES = 64 * 1024 * 1024
RUNS = "runs"
REVIEWS = "pr"
_SHA = re.compile(r"[0-9a-f]{40}")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_OLD_REVIEW_FOLDERS = frozenset({"figures", "charts", "diffs", "trends", "notebooks"})
"""What an nbci without report folders put straight under `pr/<n>/`."""

Kind = Literal["run", "review"]


@dataclass(frozen=True)
class Entry:
    """One folder nbci stored on the branch."""

    folder: str
    kind: Kind
    key: str
    """A run's commit sha, a review's number."""
    report: str | None
    """The report's file-safe name; None: stored by an nbci without report folders."""
    written: str
    """When a publish last wrote it, ISO 8601 UTC (comparable as text)."""
    files: tuple[str, ...] = ()
    """Its files, relative to `folder`."""
    blobs: tuple[tuple[str, int], ...] = ()
    """Each file's git blob id and size, in the order of `files`; empty when not known.
    Bitbucket's APIs list files without blob ids: this is how it knows what changed."""

    def blob_ids(self) -> dict[str, tuple[str, int]]:
        """Path from the root of nbci's files -> (blob id, size), for the files it knows."""
        return dict(zip(self.paths, self.blobs, strict=False)) if self.blobs else {}

    @property
    def paths(self) -> list[str]:
        return [f"{self.folder}/{name}" for name in self.files]


@dataclass(frozen=True)
class BranchIndex:
    entries: tuple[Entry, ...] = ()
    complete: bool = True
    """False: built from a listing the forge cut short; runs it lacks may still be stored
    (looked up by path) and are never pruned."""

    def run_folder(self, sha: str, report: str) -> str | None:
        """Where `sha`'s stored run for `report` is: its own folder, else one stored
        without a name by an earlier nbci."""
        name = safe_name(report)
        found = None
        for entry in self.entries:
            if entry.kind == "run" and entry.key == sha:
                if entry.report == name:
                    return entry.folder
                if entry.report is None:
                    found = entry.folder
        return found

    def run_commits(self, report: str) -> set[str]:
        """The commits with a stored run `report` reads (its own, or unnamed)."""
        name = safe_name(report)
        return {e.key for e in self.entries if e.kind == "run" and e.report in (name, None)}

    def written(self, entry: Entry) -> Entry | None:
        """The entry stored for `entry.folder`, if any."""
        return next((e for e in self.entries if e.folder == entry.folder), None)

    def with_entry(self, entry: Entry) -> BranchIndex:
        """This index with `entry` (newest last) in place of the one for its folder."""
        kept = tuple(e for e in self.entries if e.folder != entry.folder)
        return BranchIndex((*kept, entry), self.complete)

    def without(self, gone: Iterable[Entry]) -> BranchIndex:
        folders = {e.folder for e in gone}
        return BranchIndex(tuple(e for e in self.entries if e.folder not in folders), self.complete)


@dataclass(frozen=True)
class Pruning:
    keep_runs: int = 200
    """Stored runs each report keeps (the newest); 0: every one."""
    keep_pr_days: float = 30
    """Days a review folder is kept after its last publish; 0: forever."""
    history: int = 20
    """`keep_runs` never goes below it: the history reads that many."""


@dataclass(frozen=True)
class Pruned:
    index: BranchIndex
    removed: tuple[Entry, ...] = field(default=())


def prune(index: BranchIndex, rule: Pruning, now: datetime) -> Pruned:
    """What the rule keeps of `index`, and the folders it removes."""
    removed: list[Entry] = []
    if rule.keep_runs > 0:
        keep = max(rule.keep_runs, rule.history)
        by_report: dict[str | None, list[Entry]] = {}
        for entry in index.entries:
            if entry.kind == "run":
                by_report.setdefault(entry.report, []).append(entry)
        for runs in by_report.values():
            newest_first = sorted(
                enumerate(runs), key=lambda item: (item[1].written, item[0]), reverse=True
            )
            removed += [entry for _order, entry in newest_first[keep:]]
    if rule.keep_pr_days > 0:
        cutoff = stamp(now - timedelta(days=rule.keep_pr_days))
        removed += [e for e in index.entries if e.kind == "review" and e.written < cutoff]
    return Pruned(index.without(removed), tuple(removed))


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_for(
    folder: str,
    files: Sequence[str],
    written: str,
    blobs: Mapping[str, tuple[str, int]] | None = None,
) -> Entry:
    """The index entry of a folder a publish writes (`runs/<sha>/<report>`, `pr/<n>/<report>`);
    `blobs`: path -> (blob id, size) of every one of `files`, when known."""
    top, key, report = folder.split("/")
    kind: Kind = "run" if top == RUNS else "review"
    prefix = folder + "/"
    paths = sorted(p for p in files if p.startswith(prefix))
    names = tuple(p.removeprefix(prefix) for p in paths)
    ids = tuple(blobs[p] for p in paths) if blobs and all(p in blobs for p in paths) else ()
    return Entry(folder, kind, key, report, written, names, ids)


# -- the file ----------------------------------------------------------------------


def dump(index: BranchIndex) -> bytes:
    rows = [
        {
            "folder": e.folder,
            "kind": e.kind,
            "key": e.key,
            "report": e.report,
            "written": e.written,
            "files": list(e.files),
            **({"blobs": [list(blob) for blob in e.blobs]} if e.blobs else {}),
        }
        for e in index.entries
    ]
    head: dict[str, Any] = (
        {"schema": SCHEMA} if index.complete else {"schema": SCHEMA, "complete": False}
    )
    text = json.dumps({**head, "entries": rows}, indent=0, ensure_ascii=True)
    return (text + "\n").encode("ascii")


def parse(data: bytes, source: str) -> BranchIndex:
    """The index in `data`; ResultsError (one line naming `source`) when it is malformed."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        raise ResultsError(f"{source}: not valid JSON") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ResultsError(f"{source}: not an index of schema {SCHEMA}")
    rows = raw.get("entries")
    if not isinstance(rows, list):
        raise ResultsError(f"{source}: no list of entries")
    entries = []
    for number, row in enumerate(rows):
        entry = _entry(row)
        if entry is None:
            raise ResultsError(f"{source}: entry {number} is malformed")
        entries.append(entry)
    return BranchIndex(tuple(entries), raw.get("complete") is not False)


def _entry(row: Any) -> Entry | None:
    if not isinstance(row, dict):
        return None
    folder, kind, key = row.get("folder"), row.get("kind"), row.get("key")
    report, written, files = row.get("report"), row.get("written"), row.get("files")
    if not (isinstance(folder, str) and isinstance(key, str) and isinstance(written, str)):
        return None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    if report is not None and not (isinstance(report, str) and _SEGMENT.fullmatch(report)):
        return None
    if kind not in ("run", "review"):
        return None
    top = RUNS if kind == "run" else REVIEWS
    valid_key = _SHA.fullmatch(key) if kind == "run" else key.isdigit() and key.isascii()
    expected = "/".join(p for p in (top, key, report) if p is not None)
    if not valid_key or folder != expected:
        return None
    if not all(_inside(name) for name in files):
        return None
    blobs = _blobs(row.get("blobs", []), len(files))
    if blobs is None:
        return None
    return Entry(
        folder, "run" if kind == "run" else "review", key, report, written, tuple(files), blobs
    )


def _blobs(raw: Any, count: int) -> tuple[tuple[str, int], ...] | None:
    """An entry's optional blob ids: none, or one [40 hex digits, size >= 0] per file."""
    if not isinstance(raw, list) or (raw and len(raw) != count):
        return None
    blobs = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2):
            return None
        sha, size = item
        if not (isinstance(sha, str) and _SHA.fullmatch(sha) and type(size) is int and size >= 0):
            return None
        blobs.append((sha, size))
    return tuple(blobs)


def _inside(relative: str) -> bool:
    """A plain relative path: it cannot name a file outside its folder."""
    return all(_SEGMENT.fullmatch(part) for part in relative.split("/"))


# -- a branch without an index ----------------------------------------------------


def from_listing(paths: Iterable[str], written: str, *, complete: bool = True) -> BranchIndex:
    """The index of a branch written by an nbci that kept none, from a listing of its files."""
    paths = sorted(paths)
    named_runs = {
        tuple(p.split("/")[1:3])
        for p in paths
        if len(p.split("/")) == 4 and p.endswith("/results.json") and p.startswith(RUNS + "/")
    }
    files: dict[tuple[Kind, str, str | None], list[str]] = {}
    for path in paths:
        parts = path.split("/")
        if len(parts) < 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
            continue
        top, key, rest = parts[0], parts[1], parts[2:]
        if top == RUNS and _SHA.fullmatch(key):
            named = len(rest) > 1 and (key, rest[0]) in named_runs
            folder: tuple[Kind, str, str | None] = ("run", key, rest[0] if named else None)
        elif top == REVIEWS and key.isdigit():
            old = len(rest) == 1 or rest[0] in _OLD_REVIEW_FOLDERS
            folder = ("review", key, None if old else rest[0])
        else:
            continue
        files.setdefault(folder, []).append("/".join(rest[1:] if folder[2] else rest))
    entries = []
    for (kind, key, report), names in files.items():
        top = RUNS if kind == "run" else REVIEWS
        path = "/".join(p for p in (top, key, report) if p is not None)
        entries.append(Entry(path, kind, key, report, written, tuple(names)))
    return BranchIndex(tuple(entries), complete)
