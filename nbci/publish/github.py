"""The GitHub side of `publish`: `Forge` over PyGithub (see `client` for retries and errors).

- The assets branch, once it exists, gets each commit in one GraphQL request
  (`createCommitOnBranch`, see `github_graphql`), whatever the number of files;
  the commit lands only if the branch is still where nbci read it, so a
  concurrent publish is noticed (`BranchMoved`) rather than overwritten.
- The branch itself is created once through the Git Data API (GraphQL commits
  only to an existing branch): the binary blobs, one tree, one commit, then
  the ref, last, so a failure midway leaves unreferenced objects, never a
  branch pointing at a missing tree.
- Images are linked as `{server_url}/{owner}/{repo}/raw/{commit}/{path}`, which
  works on github.com and GitHub Enterprise Server alike (GHES has no
  `raw.githubusercontent.com`) and, for a private repository, for anyone who
  can read it.
- The verdict is a commit status, or with `--check` a check run carrying the
  report (GitHub allows 65,535 characters a field).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from nbci.errors import PublishError, ResultsError
from nbci.publish.assets import Asset, Tip, stored_source
from nbci.publish.client import Session
from nbci.publish.context import Context, resolve_target
from nbci.publish.forge import BranchMoved, Comment, Target, first_parent_line
from nbci.publish.github_graphql import commit_on_branch
from nbci.publish.status import fit

logger = logging.getLogger(__name__)

CONTENTS_READ = "contents: read"
CONTENTS_WRITE = "contents: write"
COMMENTS_WRITE = "pull-requests: write"
CHECK_TEXT_LIMIT = 65_535
CHECK_TITLE_LIMIT = 255


INLINE_FILE_BYTES = 5 * 1024 * 1024
"""A UTF-8 text file (an executed notebook, results.json) up to this size is sent inside the
tree request; binary files (PNGs) need a blob request each, since the Git Data API takes
only text inline."""
INLINE_TOTAL_BYTES = 25 * 1024 * 1024
"""Text sent inline in one tree request at most; what is over goes as blobs."""


def _inline_text(asset: Asset) -> str | None:
    """`asset` as text to send inline, or None when it must be a blob."""
    if len(asset.data) > INLINE_FILE_BYTES or b"\0" in asset.data:
        return None
    try:
        return asset.data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class GitHubForge:
    """One repository on GitHub, reached through `session`, published to as `ctx` says."""

    name = "GitHub"

    def __init__(self, session: Session, ctx: Context) -> None:
        self.session = session
        self.ctx = ctx
        self.run_url = ctx.run_url

    def review_label(self, number: int) -> str:
        return f"pull request #{number}"

    def resolve_target(self) -> Target:
        return resolve_target(self.session, self.ctx)

    # -- the assets branch -------------------------------------------------------

    def read_tip(self, branch: str) -> Tip:
        from github import GithubException

        repo = self.session.repo
        with self.session.errors(f"read the {branch} branch", CONTENTS_READ):
            try:
                ref = repo.get_git_ref(f"heads/{branch}")
                commit = repo.get_git_commit(ref.object.sha)
            except GithubException as exc:
                if exc.status == 404:
                    return Tip(branch)
                raise
            listing = repo.get_git_tree(commit.tree.sha, recursive=True)
            files = {
                item.path: (item.sha, item.size or 0)
                for item in listing.tree
                if item.type == "blob"
            }
            truncated = bool(listing.raw_data.get("truncated"))
        if truncated:
            logger.warning("the %s branch lists only partly (truncated by GitHub)", branch)
        return Tip(branch, commit.sha, listing.sha, files, truncated)

    def commit(
        self, tip: Tip, changed: Sequence[Asset], removed: Sequence[str], message: str
    ) -> Tip:
        with self.session.errors(f"commit figures to the {tip.branch} branch", CONTENTS_WRITE):
            if tip.commit is None:
                return self._create_branch(tip, changed, message)
            requester = self.session.repo.requester
            return commit_on_branch(
                requester, self.session.repo_name, tip, changed, removed, message
            )

    def _create_branch(self, tip: Tip, changed: Sequence[Asset], message: str) -> Tip:
        """The branch's first commit, through the Git Data API (a one-time cost per blob)."""
        from github import GithubException, InputGitTreeElement

        repo = self.session.repo
        known = tip.blobs
        elements = []
        inline_budget = INLINE_TOTAL_BYTES
        for asset in changed:
            text = _inline_text(asset) if asset.sha not in known else None
            if text is not None and len(asset.data) <= inline_budget:
                # Text goes inside the tree request: no API call of its own.
                inline_budget -= len(asset.data)
                elements.append(InputGitTreeElement(asset.path, "100644", "blob", content=text))
                continue
            if asset.sha not in known:
                blob = repo.create_git_blob(base64.b64encode(asset.data).decode("ascii"), "base64")
                if blob.sha != asset.sha:
                    raise PublishError(f"GitHub stored {asset.path} as {blob.sha}, not {asset.sha}")
                known.add(asset.sha)
            elements.append(InputGitTreeElement(asset.path, "100644", "blob", sha=asset.sha))
        tree = repo.create_git_tree(elements)
        commit = repo.create_git_commit(message, tree, [])
        try:
            repo.create_git_ref(f"refs/heads/{tip.branch}", commit.sha)
        except GithubException as exc:
            if exc.status == 422:  # "Reference already exists": another publish created it
                raise BranchMoved from None
            raise
        return tip.after(commit.sha, changed, (), tree=tree.sha)

    def read_file(self, tip: Tip, path: str, limit: int) -> bytes:
        blob_sha, _size = tip.files[path]
        source = stored_source(tip, path)
        with self.session.errors(f"read {path} from the {tip.branch} branch", CONTENTS_READ):
            blob = self.session.repo.get_git_blob(blob_sha)
            content, encoding = blob.content, blob.encoding
        if encoding != "base64" or content is None:
            raise ResultsError(f"{source}: GitHub sent it as {encoding!r}, expected base64")
        try:
            data = base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError):
            raise ResultsError(f"{source}: not valid base64") from None
        if len(data) > limit:
            raise ResultsError(f"{source}: larger than the {limit} bytes allowed")
        return data

    def read_path(self, tip: Tip, path: str, limit: int) -> bytes | None:
        from github import GithubException

        if tip.commit is None:
            return None
        source = stored_source(tip, path)
        with self.session.errors(f"read {path} from the {tip.branch} branch", CONTENTS_READ):
            try:
                found = self.session.repo.get_contents(path, ref=tip.commit)
            except GithubException as exc:
                if exc.status == 404:
                    return None
                raise
            if isinstance(found, list) or found.type != "file":
                return None
            if found.size > limit:
                raise ResultsError(f"{source}: larger than the {limit} bytes allowed")
            content = found.content if found.encoding == "base64" else None
            if content is None:  # over 1 MB: the contents API leaves it out, the blob has it
                blob = self.session.repo.get_git_blob(found.sha)
                content = blob.content if blob.encoding == "base64" else None
        if content is None:
            raise ResultsError(f"{source}: GitHub sent it in another encoding than base64")
        try:
            return base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError):
            raise ResultsError(f"{source}: not valid base64") from None

    def file_url(self, commit: str, path: str) -> str:
        return f"{self.ctx.server_url}/{self.ctx.repo}/raw/{commit}/{quote(path)}"

    def page_url(self, commit: str, path: str) -> str:
        return f"{self.ctx.server_url}/{self.ctx.repo}/blob/{commit}/{quote(path)}"

    def ancestors(self, start: str, depth: int) -> Sequence[str]:
        with self.session.errors(f"list the history of {start[:12]}", CONTENTS_READ):
            listing = self.session.repo.get_commits(sha=start)
            entries = ((c.sha, [p.sha for p in c.parents]) for c in listing)  # no extra request
            return first_parent_line(start, entries, depth)

    # -- the sticky comment ------------------------------------------------------

    def comments(self, number: int) -> list[Comment]:
        issue = self.session.repo.get_issue(number)  # lazy: no request
        with self.session.errors(
            f"read the comments of pull request #{number}", "pull-requests: read"
        ):
            return [_comment(c) for c in issue.get_comments()]

    def create_comment(self, number: int, body: str) -> Comment:
        issue = self.session.repo.get_issue(number)
        with self.session.errors(f"comment on pull request #{number}", COMMENTS_WRITE):
            return _comment(issue.create_comment(body))

    def edit_comment(self, number: int, comment: Comment, body: str) -> None:
        with self.session.errors(f"edit nbci's comment on pull request #{number}", COMMENTS_WRITE):
            comment.handle.edit(body)

    def delete_comment(self, number: int, comment: Comment) -> bool:
        from github import GithubException

        action = f"delete a duplicate comment on pull request #{number}"
        with self.session.errors(action, COMMENTS_WRITE):
            try:
                comment.handle.delete()
            except GithubException as exc:
                if exc.status != 404:  # another publish removed it first
                    raise
                return False
        return True

    # -- the verdict ---------------------------------------------------------------

    def set_status(
        self, sha: str, *, name: str, success: bool, description: str, target_url: str | None
    ) -> None:
        from github.GithubObject import NotSet

        with self.session.errors(f"set the commit status on {sha[:12]}", "statuses: write"):
            status = self.session.repo.get_commit(sha).create_status(  # lazy commit: one POST
                state="success" if success else "failure",
                description=description,
                context=fit(name, 100),
                target_url=target_url or NotSet,
            )
        logger.info("status %s %r on %s", status.state, name, sha[:12])

    def create_check(
        self, sha: str, *, name: str, success: bool, title: str, summary: str
    ) -> str | None:
        """A completed check run; returns its web address."""
        from github.GithubObject import NotSet

        output: dict[str, str | list[dict[str, str | int]]] = {
            "title": fit(title, CHECK_TITLE_LIMIT),
            "summary": fit(summary, CHECK_TEXT_LIMIT, note="\n\n(cut to fit GitHub's limit)"),
        }
        with self.session.errors(f"create a check run on {sha[:12]}", "checks: write"):
            run = self.session.repo.create_check_run(
                name=fit(name, 100),
                head_sha=sha,
                status="completed",
                conclusion="success" if success else "failure",
                completed_at=datetime.now(UTC),
                output=output,
                details_url=self.run_url or NotSet,
            )
        logger.info("check run %r (%s) on %s", name, run.conclusion, sha[:12])
        return run.html_url


def _comment(comment: Any) -> Comment:
    return Comment(
        id=comment.id,
        body=comment.body or "",
        author=comment.user.login if comment.user else None,
        created_at=comment.created_at.isoformat() if comment.created_at else "",
        url=comment.html_url,
        handle=comment,
    )
