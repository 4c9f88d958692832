"""The GitHub side of `publish`: `Forge` over PyGithub (see `client` for retries and errors).

- The assets branch, once it exists, gets each commit in one GraphQL request
  (`createCommitOnBranch`, see `graphql`), whatever the number of files;
  the commit lands only if the branch is still where nbci read it, so a
  concurrent publish is noticed (`BranchMoved`) rather than overwritten.
- The branch itself is created once through the Git Data API (GraphQL commits
  only to an existing branch) with one small commit (a README: one tree, one
  commit, then the ref); the figures then go in the same GraphQL commit as on
  every later publish, so no publish's requests grow with its figure count.
- Reading the branch never lists it whole: `index.json` and stored runs are
  read by path (the contents API), and only the folders a publish reads or
  writes are listed (`list_stored_folder`).
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
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from nbci.errors import ResultsError
from nbci.publish.assets import Asset, Tip, stored_source
from nbci.publish.forge import BranchMoved, Comment, Listing, Target, first_parent_line
from nbci.publish.github.client import Session
from nbci.publish.github.context import Context, resolve_target
from nbci.publish.github.graphql import commit_on_branch
from nbci.publish.status import fit

logger = logging.getLogger(__name__)

CONTENTS_READ = "contents: read"
CONTENTS_WRITE = "contents: write"
COMMENTS_WRITE = "pull-requests: write"
CHECK_TEXT_LIMIT = 65_535
CHECK_TITLE_LIMIT = 255
CHECK_ATTEMPTS = 3
"""Tries to create a check run, each after looking for the one a lost answer may hide."""
CHECK_CLOCK_SKEW_S = 300
"""A check run of the name started this long before the first try may still be its."""


BRANCH_README = (
    "# nbci's assets\n\nFigures, executed notebooks and stored runs that `nbci publish` links "
    "from pull requests. `index.json` says what is stored; nbci prunes old runs and review "
    "folders (see nbci's README, `keep_runs` and `keep_pr_days`).\n"
)
"""The one small file of the branch's first commit (the Git Data API takes it inline)."""


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
        return Tip(branch, commit.sha, commit.tree.sha)

    def commit(
        self, tip: Tip, changed: Sequence[Asset], removed: Sequence[str], message: str
    ) -> Tip:
        with self.session.errors(f"commit figures to the {tip.branch} branch", CONTENTS_WRITE):
            if tip.commit is None:
                tip = self._create_branch(tip)
            requester = self.session.repo.requester
            return commit_on_branch(
                requester, self.session.repo_name, tip, changed, removed, message
            )

    def _create_branch(self, tip: Tip) -> Tip:
        """The branch, with one small commit (a README sent inline: one tree, one commit,
        then the ref, last, so a failure midway leaves unreferenced objects, never a branch
        pointing at a missing tree). Everything else goes in the GraphQL commit on top, so
        the first publish costs what every later one does, whatever the figure count."""
        from github import GithubException, InputGitTreeElement

        repo = self.session.repo
        readme = InputGitTreeElement("README.md", "100644", "blob", content=BRANCH_README)
        tree = repo.create_git_tree([readme])
        commit = repo.create_git_commit("Start the assets branch of nbci", tree, [])
        try:
            repo.create_git_ref(f"refs/heads/{tip.branch}", commit.sha)
        except GithubException as exc:
            if exc.status == 422:  # "Reference already exists": another publish created it
                raise BranchMoved from None
            raise
        return replace(tip, commit=commit.sha, tree=tree.sha)

    def read_file(self, tip: Tip, path: str, limit: int) -> bytes:
        blob_sha, _size = tip.files[path]
        return self._read_blob(tip, path, blob_sha, limit)

    def _read_blob(self, tip: Tip, path: str, blob_sha: str, limit: int) -> bytes:
        source = stored_source(tip, path)
        with self.session.errors(f"read {path} from the {tip.branch} branch", CONTENTS_READ):
            blob = self.session.repo.get_git_blob(blob_sha)
            content, encoding = blob.content, blob.encoding
        if encoding != "base64" or content is None:
            raise ResultsError(f"{source}: GitHub sent it as {encoding!r}, expected base64")
        return _decoded(content, source, limit)

    def read_stored_file(self, path: str, *, tip: Tip, limit: int) -> bytes | None:
        """The contents API by path (one request; a file over 1 MB, which it sends without
        content, is then read as a blob)."""
        found = self._contents(tip, path)
        if not isinstance(found, dict) or found.get("type") != "file":
            return None
        source = stored_source(tip, path)
        if int(found.get("size") or 0) > limit:
            raise ResultsError(f"{source}: larger than the {limit} bytes allowed")
        if found.get("encoding") == "base64" and found.get("content"):
            return _decoded(str(found["content"]), source, limit)
        return self._read_blob(tip, path, str(found.get("sha")), limit)

    def list_stored_folder(self, tip: Tip, folder: str) -> Listing:
        """The whole tree for "" (one request, which GitHub cuts at 100,000 entries); a folder
        from its contents (one request) and one tree listing per subfolder (`figures/`,
        `notebooks/`, ...), whatever the rest of the branch holds."""
        if tip.commit is None:
            return Listing()
        if not folder:
            return self._tree(tip, tip.tree or tip.commit, "")
        entries = self._contents(tip, folder)
        if not isinstance(entries, list):
            return Listing()
        files: dict[str, tuple[str, int]] = {}
        truncated = False
        for item in entries:
            path = f"{folder}/{item.get('name')}"
            if item.get("type") == "file":
                files[path] = (str(item.get("sha")), int(item.get("size") or 0))
            elif item.get("type") == "dir":
                below = self._tree(tip, str(item.get("sha")), path)
                files.update(below.files)
                truncated = truncated or below.truncated
        return Listing(files, truncated)

    def _tree(self, tip: Tip, tree_sha: str, prefix: str) -> Listing:
        where = f"list {prefix or 'the files'} of the {tip.branch} branch"
        with self.session.errors(where, CONTENTS_READ):
            listing = self.session.repo.get_git_tree(tree_sha, recursive=True)
            files = {
                f"{prefix}/{item.path}" if prefix else item.path: (item.sha, item.size or 0)
                for item in listing.tree
                if item.type == "blob"
            }
            truncated = bool(listing.raw_data.get("truncated"))
        if truncated:
            logger.warning("the %s branch lists only partly (truncated by GitHub)", tip.branch)
        return Listing(files, truncated)

    def _contents(self, tip: Tip, path: str) -> Any:
        """The contents API's answer for `path` at the tip: a dict (a file), a list (a
        folder's entries), None when there is nothing there."""
        from github import GithubException

        requester = self.session.repo.requester
        url = f"{self.session.repo.url}/contents/{quote(path)}"
        with self.session.errors(f"read {path} from the {tip.branch} branch", CONTENTS_READ):
            try:
                _headers, data = requester.requestJsonAndCheck(
                    "GET", url, parameters={"ref": tip.commit}
                )
            except GithubException as exc:
                if exc.status == 404:
                    return None
                raise
        return data

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
        """A completed check run; returns its web address.

        GitHub cannot delete a check run, so a create that failed in a way that may have
        created it (a 5xx, a lost answer; the transport does not resend it, see
        `retry.LOOK_FIRST`) is tried again only after looking for a check run of this
        name on `sha` that started since: when there is one, it is completed instead.
        """
        from github.GithubObject import NotSet

        output: dict[str, str | list[dict[str, str | int]]] = {
            "title": fit(title, CHECK_TITLE_LIMIT),
            "summary": fit(summary, CHECK_TEXT_LIMIT, note="\n\n(cut to fit GitHub's limit)"),
        }
        fields: dict[str, Any] = {
            "status": "completed",
            "conclusion": "success" if success else "failure",
            "completed_at": datetime.now(UTC),
            "output": output,
            "details_url": self.run_url or NotSet,
        }
        with self.session.errors(f"create a check run on {sha[:12]}", "checks: write"):
            run = self._create_check_once(sha, fit(name, 100), fields)
        logger.info("check run %r (%s) on %s", name, run.conclusion, sha[:12])
        url: str | None = run.html_url
        return url

    def _create_check_once(self, sha: str, name: str, fields: dict[str, Any]) -> Any:
        from github import GithubException
        from requests import RequestException

        begun = datetime.now(UTC).timestamp() - CHECK_CLOCK_SKEW_S
        for attempt in range(1, CHECK_ATTEMPTS + 1):
            if attempt > 1:
                commit = self.session.repo.get_commit(sha)
                for run in commit.get_check_runs(check_name=name):
                    if run.started_at and run.started_at.timestamp() >= begun:
                        logger.info("the check run %r was created before its answer was lost", name)
                        run.edit(**fields)
                        return run
            try:
                return self.session.repo.create_check_run(name=name, head_sha=sha, **fields)
            except (GithubException, RequestException) as exc:
                status = getattr(exc, "status", None)
                if attempt == CHECK_ATTEMPTS or (status is not None and status < 500):
                    raise
                logger.warning(
                    "creating the check run failed (%s); looking for it",
                    status or type(exc).__name__,
                )
        raise AssertionError("unreachable")  # pragma: no cover


def _comment(comment: Any) -> Comment:
    return Comment(
        id=comment.id,
        body=comment.body or "",
        author=comment.user.login if comment.user else None,
        created_at=comment.created_at.isoformat() if comment.created_at else "",
        url=comment.html_url,
        handle=comment,
    )


def _decoded(content: str, source: str, limit: int) -> bytes:
    try:
        data = base64.b64decode(content, validate=False)
    except (binascii.Error, ValueError):
        raise ResultsError(f"{source}: not valid base64") from None
    if len(data) > limit:
        raise ResultsError(f"{source}: larger than the {limit} bytes allowed")
    return data
