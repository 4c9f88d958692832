"""Figures (and stored baselines) on an assets branch, one commit per publish.

Neither forge renders `data:` images in comments, and GitHub offers
`GITHUB_TOKEN` no upload API, so the figures (PNG or SVG) go to a branch of the repository
itself (default `nbci-assets`) in one commit per publish, whatever the figure
count, and comments link each image by that commit's SHA, so an old comment
never shows newer images. How the commit is made and what the link looks like
is the forge's (`github`, `gitlab`); what goes in it is decided here. Layout of
the branch:

    pr/<number>/figures/<job-id>/<name>.png              the latest figures of a review
    runs/<sha>/<report>/results.json                     a default-branch commit's results
                                                         (the baseline), one per report name
    runs/<sha>/<report>/figures/<job-id>/<name>.png      and its figures
    runs/<sha>/results.json (and figures/...)            stored by an earlier nbci without
                                                         the name: still read (`baseline`)
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbci._files import read_inside
from nbci.errors import PublishError
from nbci.formats import FIGURE_TYPES, MAX_FIGURE_BYTES, image_type
from nbci.model import Run
from nbci.publish.forge import BranchMoved

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
    """Every file path -> (blob sha, size)."""
    truncated: bool = False
    """The forge listed only part of the tree (GitHub: over 100,000 entries)."""
    handles: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    """The forge's own objects the next commit builds on (PyGithub's ref, commit, tree)."""

    @property
    def blobs(self) -> set[str]:
        return {sha for sha, _size in self.files.values()}

    def after(
        self,
        commit: str,
        changed: Sequence[Asset],
        removed: Sequence[str],
        *,
        tree: str | None = None,
        handles: tuple[Any, ...] = (),
    ) -> Tip:
        """This branch once `commit` wrote `changed` and deleted `removed`."""
        gone = set(removed)
        files = {p: v for p, v in self.files.items() if p not in gone}
        files.update({a.path: (a.sha, len(a.data)) for a in changed})
        return Tip(self.branch, commit, tree, files, self.truncated, handles)


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


def store(
    forge: Forge,
    tip: Tip,
    assets: Sequence[Asset],
    *,
    replace: str | None,
    message: str,
) -> Tip:
    """Put `assets` on the branch in one commit; the returned Tip's commit holds them all.

    Files already stored at the same path with the same content are left alone;
    when nothing changed no commit is made. Files under the folder `replace`
    that are not among `assets` are removed (a review's figures of an earlier
    push). When another publish moved the branch meanwhile, this starts over
    from the new tip.
    """
    for attempt in range(1, _COMMIT_ATTEMPTS + 1):
        wanted = {asset.path: asset for asset in assets}
        changed = [a for a in wanted.values() if tip.files.get(a.path, ("",))[0] != a.sha]
        stale = _stale(tip, replace, wanted) if not tip.truncated else []
        if not changed and not stale:
            logger.info("nothing new for the %s branch", tip.branch)
            return tip
        try:
            new_tip = forge.commit(tip, changed, stale, message)
        except BranchMoved:
            if attempt == _COMMIT_ATTEMPTS:
                break
            logger.info("the %s branch moved meanwhile; starting over (%d)", tip.branch, attempt)
            tip = forge.read_tip(tip.branch)
            continue
        logger.info(
            "committed %d file(s) to %s as %s",
            len(changed),
            tip.branch,
            (new_tip.commit or "")[:12],
        )
        return new_tip
    raise PublishError(
        f"the {tip.branch} branch kept moving while nbci committed to it "
        f"({_COMMIT_ATTEMPTS} tries); run the job again"
    )


def _stale(tip: Tip, folder: str | None, wanted: Mapping[str, Asset]) -> list[str]:
    if not folder:
        return []
    prefix = folder.rstrip("/") + "/"
    return sorted(p for p in tip.files if p.startswith(prefix) and p not in wanted)


def figure_assets(figures: Iterable[FigureFile], folder: str) -> list[Asset]:
    return [Asset(f"{folder}/{figure.path}", figure.data) for figure in figures]
