"""Figures (and stored baselines) on an orphan branch, one commit per publish.

GitHub renders no `data:` images in comments and offers `GITHUB_TOKEN` no
upload API, so the PNGs go to a branch of the repository itself (default
`nbci-assets`) through the Git Data API: the blobs that are not there yet, one
tree on top of the branch's tree, one commit, one ref update. The ref moves
last, so a failure midway leaves unreferenced objects, never a branch pointing
at a missing tree. Comments link each image by that commit's SHA, so an old
comment never shows newer images:

    {server_url}/{owner}/{repo}/raw/{commit}/{path}

That URL works on github.com and on GitHub Enterprise Server alike (GHES has
no `raw.githubusercontent.com`) and, for a private repository, for anyone who
can read it. Layout of the branch:

    pr/<number>/figures/<job-id>/<name>.png     the latest figures of a pull request
    runs/<sha>/results.json                     a default-branch commit's results (the baseline)
    runs/<sha>/figures/<job-id>/<name>.png      and its figures
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbci._files import is_within
from nbci.errors import PublishError
from nbci.model import Run
from nbci.publish.client import Session

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE_BYTES = 8 * 1024 * 1024
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
    """GitHub listed only part of the tree (over 100,000 entries)."""
    handles: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    """PyGithub's ref, commit and tree objects, which the next commit builds on."""

    @property
    def blobs(self) -> set[str]:
        return {sha for sha, _size in self.files.values()}


@dataclass(frozen=True)
class Hosting:
    """What a publish put on the assets branch."""

    tip: Tip
    folder: str | None = None
    """Where this run's files are on the assets branch; None: not hosted."""
    error: PublishError | None = None
    """Raised once everything else is published (a baseline that could not be stored)."""


def load_figures(run: Run, out_dir: Path) -> Figures:
    """Every figure file of `run`, each a regular PNG inside `out_dir` within the size caps.

    The run directory may be a fork's artifact: a path that escapes it, a link,
    a file that is not a PNG, or one over the caps is left out and said so.
    """
    files: list[FigureFile] = []
    skipped: list[str] = []
    total = 0
    for nb in run.notebooks:
        for figure in nb.figures:
            problem = _path_problem(figure.path)
            data = None if problem else _read_png(out_dir, figure.path)
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
    if not parts[-1].lower().endswith(".png"):
        return "not a .png file"
    return None


def _read_png(out_dir: Path, relative: str) -> bytes | str:
    """The file's bytes, or why it was refused."""
    path = out_dir / relative
    try:
        info = path.lstat()
    except OSError:
        return "missing"
    if not stat.S_ISREG(info.st_mode) or not is_within(path, out_dir):
        return "not a regular file inside the run directory"
    if info.st_size > MAX_FIGURE_BYTES:
        return f"{info.st_size} bytes, over the {MAX_FIGURE_BYTES // 2**20} MiB cap"
    with path.open("rb") as f:
        data = f.read(MAX_FIGURE_BYTES + 1)
    if len(data) > MAX_FIGURE_BYTES:
        return "grew past the size cap while being read"
    if not data.startswith(PNG_SIGNATURE):
        return "not a PNG image"
    return data


# -- the branch ------------------------------------------------------------------


def read_tip(session: Session, branch: str) -> Tip:
    """The branch's commit and every file on it (no branch yet: an empty Tip)."""
    from github import GithubException

    with session.errors(f"read the {branch} branch", "contents: read"):
        try:
            ref = session.repo.get_git_ref(f"heads/{branch}")
            commit = session.repo.get_git_commit(ref.object.sha)
        except GithubException as exc:
            if exc.status == 404:
                return Tip(branch)
            raise
        listing = session.repo.get_git_tree(commit.tree.sha, recursive=True)
        files = {
            item.path: (item.sha, item.size or 0) for item in listing.tree if item.type == "blob"
        }
        truncated = bool(listing.raw_data.get("truncated"))
    if truncated:
        logger.warning("the %s branch lists only partly (truncated by GitHub)", branch)
    return Tip(branch, commit.sha, listing.sha, files, truncated, (ref, commit, listing))


def store(
    session: Session,
    tip: Tip,
    assets: Sequence[Asset],
    *,
    replace: str | None,
    message: str,
) -> Tip:
    """Put `assets` on the branch in one commit; the returned Tip's commit holds them all.

    Files already stored at the same path with the same content are left alone
    and blobs GitHub already has are not uploaded again; when nothing changed
    no commit is made. Files under the folder `replace` that are not among
    `assets` are removed (a pull request's figures of an earlier push). When
    another publish moved the branch meanwhile, this starts over from the new tip.
    """
    from github import GithubException

    for attempt in range(1, _COMMIT_ATTEMPTS + 1):
        try:
            with session.errors(f"commit figures to the {tip.branch} branch", CONTENTS):
                return _commit(session, tip, assets, replace=replace, message=message)
        except _Moved:
            if attempt == _COMMIT_ATTEMPTS:
                break
            logger.info("the %s branch moved meanwhile; starting over (%d)", tip.branch, attempt)
            tip = read_tip(session, tip.branch)
        except GithubException:  # pragma: no cover - session.errors translates these
            raise
    raise PublishError(
        f"the {tip.branch} branch kept moving while nbci committed to it "
        f"({_COMMIT_ATTEMPTS} tries); run the job again"
    )


class _Moved(Exception):
    """The branch is no longer where the tip said."""


def _commit(
    session: Session, tip: Tip, assets: Sequence[Asset], *, replace: str | None, message: str
) -> Tip:
    from github import GithubException, InputGitTreeElement

    repo = session.repo
    wanted = {asset.path: asset for asset in assets}
    changed = [a for a in wanted.values() if tip.files.get(a.path, ("",))[0] != a.sha]
    stale = _stale(tip, replace, wanted) if not tip.truncated else []
    if not changed and not stale:
        logger.info("nothing new for the %s branch", tip.branch)
        return tip
    known = tip.blobs
    elements = []
    for asset in changed:
        if asset.sha not in known:
            blob = repo.create_git_blob(base64.b64encode(asset.data).decode("ascii"), "base64")
            if blob.sha != asset.sha:
                raise PublishError(f"GitHub stored {asset.path} as {blob.sha}, not {asset.sha}")
            known.add(asset.sha)
        elements.append(InputGitTreeElement(asset.path, "100644", "blob", sha=asset.sha))
    elements += [InputGitTreeElement(path, "100644", "blob", sha=None) for path in stale]
    if tip.handles:
        ref, parent, base = tip.handles
        tree = repo.create_git_tree(elements, base_tree=base)
        commit = repo.create_git_commit(message, tree, [parent])
    else:
        ref, tree = None, repo.create_git_tree(elements)
        commit = repo.create_git_commit(message, tree, [])
    try:
        if ref is None:
            ref = repo.create_git_ref(f"refs/heads/{tip.branch}", commit.sha)
        else:
            ref.edit(commit.sha, force=False)  # fast-forward only: never drop another's commit
    except GithubException as exc:
        if exc.status == 422:  # "Reference already exists" / "Update is not a fast forward"
            raise _Moved from None
        raise
    logger.info("committed %d file(s) to %s as %s", len(changed), tip.branch, commit.sha[:12])
    files = {p: v for p, v in tip.files.items() if p not in stale}
    files.update({a.path: (a.sha, len(a.data)) for a in wanted.values()})
    return Tip(tip.branch, commit.sha, tree.sha, files, tip.truncated, (ref, commit, tree))


def _stale(tip: Tip, folder: str | None, wanted: Mapping[str, Asset]) -> list[str]:
    if not folder:
        return []
    prefix = folder.rstrip("/") + "/"
    return sorted(p for p in tip.files if p.startswith(prefix) and p not in wanted)


def raw_url(server_url: str, repo: str, commit: str, path: str) -> str:
    """The web address of a file at a commit (see the module docstring for why this form)."""
    return f"{server_url}/{repo}/raw/{commit}/{quote(path)}"


def figure_assets(figures: Iterable[FigureFile], folder: str) -> list[Asset]:
    return [Asset(f"{folder}/{figure.path}", figure.data) for figure in figures]
