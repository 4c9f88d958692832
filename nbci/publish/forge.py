"""What `publish` needs from a forge — GitHub, GitLab or Bitbucket — and nothing more.

The flow (`nbci.publish.publish` and `steps`), the sticky comment's logic
(`comment`), the assets branch's bookkeeping (`assets`) and the baseline search
(`baseline`) are written once against this interface; each forge's sub-package
implements it over its client library (`github/forge.GitHubForge`,
`gitlab/forge.GitLabForge`, `bitbucket/`: Cloud and Data Center). A "review" is a
pull request (GitHub, Bitbucket) or a merge request (GitLab), a "comment" a pull
request comment or a merge request note.

Every method raises `PublishError` (one line, the token never in it), or its
subclass `PermissionDenied` when the token lacks a permission the publish can
do without.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from nbci.errors import PublishError, UsageError

if TYPE_CHECKING:
    from nbci.publish.assets import Asset, Tip

TargetKind = Literal["pull_request", "baseline", "commit"]
"""A review, a push to the default branch (stores the baseline), or a bare commit."""


@dataclass(frozen=True)
class Target:
    """What a publish goes to, once asked of the forge."""

    kind: TargetKind
    sha: str
    """The commit that gets the verdict: a review's head, never a merge commit."""
    pr: int | None = None
    """The pull request number or merge request iid."""
    base_sha: str | None = None
    """Where the baseline search starts."""


@dataclass(frozen=True)
class Comment:
    """A comment on a review, as far as the sticky comment needs to know it."""

    id: int
    body: str
    author: str | None
    created_at: str
    """ISO 8601, comparable as text."""
    url: str
    handle: Any = field(default=None, compare=False, repr=False)
    """The client library's object, to edit or delete it."""


class PermissionDenied(PublishError):
    """The forge answered 403: the token lacks `permission` (in the forge's own words)."""

    def __init__(self, message: str, permission: str) -> None:
        super().__init__(message)
        self.permission = permission


@dataclass(frozen=True)
class Listing:
    """The files under a folder of the assets branch."""

    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Path from the root of nbci's files -> (blob sha, size; 0 where the forge does not say)."""
    truncated: bool = False
    """The forge listed only part of it (GitHub cuts a tree listing at 100,000 entries)."""


class BranchMoved(Exception):
    """The assets branch is no longer where the tip said: read it again and start over."""


class Forge(Protocol):
    name: str
    """`GitHub` or `GitLab`, for messages."""
    run_url: str | None
    """The CI run (workflow run, pipeline) that produced the report."""

    def review_label(self, number: int) -> str:
        """`pull request #7` or `merge request !7`."""
        ...

    def resolve_target(self) -> Target: ...

    # the assets branch
    def read_tip(self, branch: str) -> Tip:
        """The branch's commit (no listing: `assets.read_tip` reads the index)."""
        ...

    def commit(
        self, tip: Tip, changed: Sequence[Asset], removed: Sequence[str], message: str
    ) -> Tip:
        """One commit on the branch that writes `changed` and deletes `removed`.

        Raises BranchMoved when another publish moved the branch meanwhile.
        """
        ...

    def read_file(self, tip: Tip, path: str, limit: int) -> bytes:
        """A file listed in `tip.files`; ResultsError when it is over `limit` bytes or arrives
        garbled."""
        ...

    def read_stored_file(self, path: str, *, tip: Tip, limit: int) -> bytes | None:
        """The file at `path` (from the root of nbci's files) at `tip`'s commit, read by its
        path in one request or two, without listing anything; None when there is none.
        ResultsError when it is over `limit` bytes or arrives garbled."""
        ...

    def list_stored_folder(self, tip: Tip, folder: str) -> Listing:
        """Every file under `folder` at `tip`'s commit ("": all of nbci's files), in requests
        bounded by the folder's own size; empty when there is no such folder."""
        ...

    def file_url(self, commit: str, path: str) -> str:
        """The web address of a file at a commit, for images in a comment."""
        ...

    def page_url(self, commit: str, path: str) -> str:
        """The forge's page showing a file at a commit (a notebook rendered as one)."""
        ...

    def ancestors(self, start: str, depth: int) -> Sequence[str]:
        """`start` and its first-parent ancestors, nearest first, at most `depth` of them
        (`first_parent_line` over the forge's commit listing)."""
        ...

    # the sticky comment
    def comments(self, number: int) -> list[Comment]:
        """Every comment of the review, across all pages."""
        ...

    def create_comment(self, number: int, body: str) -> Comment: ...

    def edit_comment(self, number: int, comment: Comment, body: str) -> None: ...

    def delete_comment(self, number: int, comment: Comment) -> bool:
        """False when it was already gone (another publish removed it)."""
        ...

    # the verdict
    def set_status(
        self, sha: str, *, name: str, success: bool, description: str, target_url: str | None
    ) -> None: ...

    def create_check(
        self, sha: str, *, name: str, success: bool, title: str, summary: str
    ) -> str | None:
        """A check run with the report; None where the forge has none (GitLab)."""
        ...


_SHA1 = re.compile(r"[0-9a-f]{40}")
_SHA1_OR_SHA256 = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


def is_full_sha(text: str, *, sha256: bool = True) -> bool:
    """Whether `text` is a full commit SHA; `sha256`: the forge also stores SHA-256
    repositories (64 hex digits)."""
    return (_SHA1_OR_SHA256 if sha256 else _SHA1).fullmatch(text) is not None


def checked_sha(commit: str | None, *, sha256: bool = True) -> str | None:
    """`--sha` (or the CI's commit) when it is a full commit SHA (`is_full_sha`);
    `UsageError` otherwise."""
    if commit is None or is_full_sha(commit, sha256=sha256):
        return commit
    digits = "40 or 64" if sha256 else "40"
    raise UsageError(f"--sha: expected a full commit SHA ({digits} hex digits), got {commit!r}")


def checked_url(value: str, where: str) -> str:
    """`value` without surrounding blanks or a trailing slash, when it is an http(s)
    address with no query or fragment; `UsageError` naming `where` otherwise."""
    url = value.strip().rstrip("/")
    if not _HTTP_URL.fullmatch(url):
        raise UsageError(f"{where}: expected an http(s) URL, got {value!r}")
    return url


LISTING_FACTOR = 10
"""How many listed commits a first-parent line of `depth` commits may read (and at
least 100, one page): merged branches' commits fill the listing in between."""


def first_parent_line(
    start: str, listing: Iterable[tuple[str, Sequence[str]]], depth: int
) -> list[str]:
    """`start` and its first-parent ancestors, nearest first, at most `depth` of them.

    `listing` is the forge's commit listing from `start` as (sha, parent shas),
    which holds every ancestor: on a default branch that merges feature
    branches, their commits too, in date order. Only first parents are
    followed, so a merged branch's commits are never part of the line. The
    listing is read lazily (page by page) and no further than the line needs,
    at most `max(100, LISTING_FACTOR * depth)` commits; the line ends where the
    listing does.
    """
    parents: dict[str, str | None] = {}
    line: list[str] = []
    wanted: str | None = start
    listed = iter(listing)
    budget = max(100, LISTING_FACTOR * depth)
    while wanted is not None and len(line) < depth:
        while wanted not in parents and budget > 0:
            entry = next(listed, None)
            if entry is None:
                return line
            sha, shas = entry
            parents[sha] = shas[0] if shas else None
            budget -= 1
        if wanted not in parents:
            break
        line.append(wanted)
        wanted = parents[wanted]
    return line


def commit_target(
    sha: str | None,
    branch: str | None,
    default_branch: Callable[[], str],
    *,
    review: str,
    pr_flag: str,
) -> Target:
    """Where a run that is no review's goes: a push to the default branch stores the baseline,
    any other commit gets the verdict only. `review` and `pr_flag` name a review and its flag
    as the forge does ("merge request", "--pr IID"); `default_branch` is asked only for a push."""
    if sha is None:
        raise UsageError(
            f"nothing to publish to: no {review} or commit in the environment; "
            f"pass {pr_flag} or --sha SHA"
        )
    if branch is not None and branch == default_branch():
        return Target("baseline", sha, base_sha=sha)
    return Target("commit", sha)


def dig(data: Any, *keys: str) -> Any:
    """`data[k1][k2]...` of a forge's JSON (an answer, an event payload), or None where a
    level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
