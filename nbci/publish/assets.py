"""Figures (and stored baselines) on an assets branch, one commit per publish.

Neither forge renders `data:` images in comments, and GitHub offers
`GITHUB_TOKEN` no upload API, so the figures (PNG or SVG) go to a branch of the repository
itself (default `nbci-assets`) in one commit per publish, whatever the figure
count, and comments link each image by that commit's SHA, so an old comment
never shows newer images. How the commit is made and what the link looks like
is the forge's (`github/`, `gitlab/`, `bitbucket/`); what goes in it is decided here. Layout of
the branch:

    index.json                                           what is stored, when, which files
                                                         (`index`): read instead of a listing
    pr/<number>/<report>/figures/<job-id>/<name>.png     the latest figures of a review
    runs/<sha>/<report>/results.json                     a default-branch commit's results
                                                         (the baseline), one per report name
    runs/<sha>/<report>/figures/<job-id>/<name>.png      and its figures
    runs/<sha>/results.json (and figures/...), pr/<n>/figures/...
                                                         stored by an earlier nbci without
                                                         the name: still read (`baseline`)

A publish reads the index and lists only the folders it reads or writes, never
the whole branch; the commit that writes a folder updates the index and, on the
default branch, prunes what the rule no longer keeps (`index.prune`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from nbci._files import read_inside
from nbci.errors import PublishError, ResultsError
from nbci.formats import FIGURE_TYPES, MAX_FIGURE_BYTES, image_type
from nbci.model import Run
from nbci.publish.forge import BranchMoved, PermissionDenied
from nbci.publish.index import (
    INDEX_FILE,
    MAX_INDEX_BYTES,
    BranchIndex,
    Pruning,
    dump,
    entry_for,
    from_listing,
    parse,
    prune,
    stamp,
)

if TYPE_CHECKING:
    from nbci.publish.forge import Forge

logger = logging.getLogger(__name__)

MAX_FIGURES = 500
MAX_TOTAL_BYTES = 100 * 1024 * 1024
CONTENTS = "contents: write"
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_COMMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class Asset:
    """One file to store on the assets branch."""

    path: str
    """Where it goes on the branch (posix)."""
    data: bytes

    @property
    def sha(self) -> str:
        """Git's blob id, so an unchanged file is recognised without uploading it."""
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass(frozen=True)
class FigureFile:
    """A figure of the run, read and checked."""

    path: str
    """As in results.json: `figures/<job-id>/<name>.png`, relative to the run directory."""
    data: bytes


@dataclass(frozen=True)
class Figures:
    files: tuple[FigureFile, ...]
    skipped: tuple[str, ...] = ()
    """One line per figure left out, and why."""


@dataclass(frozen=True)
class Tip:
    """The assets branch as it is now; an absent branch has no commit."""

    branch: str
    commit: str | None = None
    tree: str | None = None
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    """The files of the folders listed so far (`listed`): path -> (blob sha, size)."""
    truncated: bool = False
    """The index is incomplete (a branch without one listed only partly: GitHub cuts a
    listing at 100,000 entries); runs it lacks are looked up by path."""
    index: BranchIndex = field(default_factory=BranchIndex)
    """What nbci stored on the branch (`index.json`)."""
    index_outdated: bool = False
    """The index was rebuilt from a listing: the next commit writes it even if nothing
    else changed."""
    listed: frozenset[str] = frozenset()
    """Folders whose every file is in `files`."""

    def after(
        self,
        commit: str,
        changed: Sequence[Asset],
        removed: Sequence[str],
        *,
        tree: str | None = None,
    ) -> Tip:
        """This branch once `commit` wrote `changed` and deleted `removed`."""
        gone = set(removed)
        files = {p: v for p, v in self.files.items() if p not in gone}
        files.update({a.path: (a.sha, len(a.data)) for a in changed})
        return replace(self, commit=commit, tree=tree, files=files, index_outdated=False)

    def with_listing(self, folder: str, files: Mapping[str, tuple[str, int]]) -> Tip:
        """This tip knowing every file of `folder` (`files`, paths from the branch's root)."""
        prefix = folder + "/"
        known = {p: v for p, v in self.files.items() if not p.startswith(prefix)}
        known.update(files)
        return replace(self, files=known, listed=self.listed | {folder})


@dataclass(frozen=True)
class Hosting:
    """What a publish put on the assets branch."""

    tip: Tip
    folder: str | None = None
    """Where this run's files are on the assets branch; None: not hosted."""
    error: PublishError | None = None
    """Raised once everything else is published (a baseline that could not be stored)."""


def load_figures(run: Run, out_dir: Path) -> Figures:
    """Every figure file of `run`, each a regular PNG or SVG file inside `out_dir` within the
    size caps.

    The run directory may be a fork's artifact: a path that escapes it, a link,
    a file that is not the image its name says, or one over the caps is left out and said so.
    """
    files: list[FigureFile] = []
    skipped: list[str] = []
    total = 0
    for nb in run.notebooks:
        for figure in nb.figures:
            problem = _path_problem(figure.path)
            data = None if problem else _read_figure(out_dir, figure.path)
            if isinstance(data, str):
                problem, data = data, None
            if data is not None and len(files) >= MAX_FIGURES:
                problem, data = f"more than {MAX_FIGURES} figures", None
            if data is not None and total + len(data) > MAX_TOTAL_BYTES:
                problem, data = f"figures over {MAX_TOTAL_BYTES // 2**20} MiB in all", None
            if data is None:
                skipped.append(f"{figure.path}: {problem}")
                logger.warning("figure %s left out: %s", figure.path, problem)
                continue
            total += len(data)
            files.append(FigureFile(figure.path, data))
    return Figures(tuple(files), tuple(skipped))


def _path_problem(path: str) -> str | None:
    parts = path.split("/")
    if parts[0] != "figures" or not all(_SEGMENT.fullmatch(p) for p in parts):
        return "not a plain figures/<job>/<name>.png path"
    if Path(parts[-1]).suffix.lower() not in FIGURE_TYPES:
        return "not a .png or .svg file"
    return None


def _read_figure(out_dir: Path, relative: str) -> bytes | str:
    """The file's bytes, or why it was refused: its content must be what its suffix says."""
    data = read_inside(out_dir, relative, MAX_FIGURE_BYTES)
    wanted = FIGURE_TYPES[Path(relative).suffix.lower()]
    if isinstance(data, bytes) and image_type(data) != wanted:
        return "not a PNG image" if wanted == "image/png" else "not an SVG image"
    return data


# -- the branch ------------------------------------------------------------------


def stored_source(tip: Tip, path: str) -> str:
    """How a stored file is named in messages."""
    return f"the stored baseline {path} on {tip.branch}"


def read_tip(forge: Forge, branch: str, notes: list[str]) -> Tip:
    """The branch's tip and its index: one file read, whatever the branch holds.

    A branch without a readable index (written by an nbci that kept none) is
    listed whole once and indexed; the next commit stores that index.
    """
    tip = forge.read_tip(branch)
    if tip.commit is None:
        return tip
    source = f"the index {INDEX_FILE} of the {branch} branch"
    try:
        data = forge.read_stored_file(INDEX_FILE, tip=tip, limit=MAX_INDEX_BYTES)
        if data is not None:
            index = parse(data, source)
            return replace(tip, index=index, truncated=not index.complete)
    except ResultsError as exc:
        notes.append(f"{exc}; the branch was listed instead")
        logger.warning("%s", notes[-1])
    listing = forge.list_stored_folder(tip, "")
    if listing.truncated:
        notes.append(
            f"the {branch} branch could only be listed in part ({forge.name} cuts long "
            "listings): stored runs it did not list are looked up by path"
        )
        logger.warning("%s", notes[-1])
    index = from_listing(listing.files, stamp(datetime.now(UTC)), complete=not listing.truncated)
    return replace(
        tip.with_listing("", listing.files),
        index=index,
        index_outdated=True,
        truncated=listing.truncated,
    )


def with_folder(forge: Forge, tip: Tip, folder: str) -> Tip:
    """`tip` knowing every file under `folder` (listed once; a request or two, bounded by
    the folder's own size)."""
    if tip.commit is None or folder in tip.listed or "" in tip.listed:
        return tip
    return tip.with_listing(folder, forge.list_stored_folder(tip, folder).files)


def store(
    forge: Forge,
    tip: Tip,
    assets: Sequence[Asset],
    *,
    folder: str,
    message: str,
    notes: list[str],
    pruning: Pruning | None = None,
) -> Tip:
    """Put `assets` (all under `folder`) on the branch in one commit; the returned Tip's
    commit holds them all.

    Files already stored at the same path with the same content are left alone;
    when nothing changed no commit is made. Files under `folder` that are not
    among `assets` are removed (a review's figures of an earlier push). The
    commit also writes the index and, given `pruning`, removes the folders the
    rule no longer keeps; pruning never fails a publish (a commit refused with it
    is made again without it, and a note says so). When another publish moved the
    branch meanwhile, this starts over from the new tip.
    """
    with_pruning = pruning is not None
    for attempt in range(1, _COMMIT_ATTEMPTS + 2):
        tip = with_folder(forge, tip, folder)
        wanted = {asset.path: asset for asset in assets}
        changed = [a for a in wanted.values() if tip.files.get(a.path, ("",))[0] != a.sha]
        stale = _stale(tip, folder, wanted)
        blobs = {path: (a.sha, len(a.data)) for path, a in wanted.items()}
        entry = entry_for(folder, list(wanted), stamp(datetime.now(UTC)), blobs)
        index = tip.index.with_entry(entry)
        pruned = prune(index, pruning, datetime.now(UTC)) if pruning and with_pruning else None
        removed = [e for e in pruned.removed if e.folder != folder] if pruned else []
        if not changed and not stale and not removed and not tip.index_outdated:
            logger.info("nothing new for the %s branch", tip.branch)
            return tip
        if pruned is not None:
            index = pruned.index
        deletions = stale + [p for e in removed for p in e.paths if p not in wanted]
        changed.append(Asset(INDEX_FILE, dump(index)))
        try:
            new_tip = forge.commit(tip, changed, deletions, message)
        except BranchMoved:
            if attempt > _COMMIT_ATTEMPTS or (attempt == _COMMIT_ATTEMPTS and not removed):
                break
            if attempt == _COMMIT_ATTEMPTS:  # refused with the pruning each time (GitLab
                with_pruning = False  # says a file the index names is gone): without it
                _not_pruned(tip, "the forge kept refusing its deletions", notes)
            logger.info("the %s branch moved meanwhile; starting over (%d)", tip.branch, attempt)
            tip = read_tip(forge, tip.branch, notes)
            continue
        except PermissionDenied:
            raise
        except PublishError as exc:
            if not removed:
                raise
            with_pruning = False  # a file the index names is gone, say: store without pruning
            _not_pruned(tip, str(exc), notes)
            tip = read_tip(forge, tip.branch, notes)
            continue
        logger.info(
            "committed %d file(s) to %s as %s%s",
            len(changed),
            tip.branch,
            (new_tip.commit or "")[:12],
            f", pruning {len(removed)} folder(s)" if removed else "",
        )
        return replace(new_tip, index=index)
    raise PublishError(
        f"the {tip.branch} branch kept moving while nbci committed to it "
        f"({_COMMIT_ATTEMPTS} tries); run the job again"
    )


def _not_pruned(tip: Tip, why: str, notes: list[str]) -> None:
    notes.append(f"the {tip.branch} branch was not pruned this time: {why}")
    logger.warning("%s", notes[-1])


def _stale(tip: Tip, folder: str, wanted: Mapping[str, Asset]) -> list[str]:
    prefix = folder.rstrip("/") + "/"
    return sorted(p for p in tip.files if p.startswith(prefix) and p not in wanted)


def figure_assets(figures: Iterable[FigureFile], folder: str) -> list[Asset]:
    return [Asset(f"{folder}/{figure.path}", figure.data) for figure in figures]
