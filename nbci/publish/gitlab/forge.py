"""The GitLab side of `publish`: `Forge` over python-gitlab (see `client` for errors).

- The sticky comment is a merge request note (system notes are skipped).
  GitLab allows 1,000,000 characters a note; the report keeps GitHub's 65,000
  budget so it reads the same on both.
- Images: the assets branch is written with ONE commit per publish through
  `POST /projects/:id/repository/commits` with one action per changed file
  (GitLab applies them atomically), and linked by that commit's SHA as
  `{server}/{project}/-/raw/{sha}/{path}`: readable by anyone who can read
  the project, no third-party host, and an old note never shows newer images.
  Chosen over project uploads, which cannot be deleted by a project access
  token, pile up with every push, and could not hold the stored baseline.
  GitLab cannot create a branch without a parent, so the assets branch starts
  from the default branch; nbci's files live under `ASSETS_ROOT` on it so they
  never mix with the project's own.
- Concurrency: a `create` of a file that now exists (or an `update`/`delete` of
  one that is gone, an `update` of the index that another publish changed since
  nbci read it — `last_commit_id` — or a branch created meanwhile) is refused by
  GitLab with 400; that is `BranchMoved`, and the commit is redone from the new tip.
- Reading never lists `.nbci-assets/` whole (100 entries a request): the index
  and stored runs are read by path (`repository/files`), and only the folders a
  publish reads or writes are listed.
- The baseline search walks `first_parent` history (`GET .../repository/commits`).
- The verdict is a commit status (`POST /projects/:id/statuses/:sha`) named
  after the report, on the merge request's head, linked to the pipeline.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from nbci.errors import ResultsError, UsageError
from nbci.publish.assets import Asset, Tip, stored_source
from nbci.publish.forge import (
    BranchMoved,
    Comment,
    Listing,
    Target,
    commit_target,
    first_parent_line,
)
from nbci.publish.gitlab.client import READ, WRITE, GitLabSession
from nbci.publish.gitlab.context import GitLabContext
from nbci.publish.status import fit

logger = logging.getLogger(__name__)

ASSETS_ROOT = ".nbci-assets"
"""nbci's folder on the assets branch (which GitLab forks from the default branch)."""
STATUS_DESCRIPTION_LIMIT = 255
_MOVED = (
    "already exists",
    "doesn't exist",
    "does not exist",
    "has been changed",
    "has changed since",
)


class GitLabForge:
    """One project on GitLab, reached through `session`, published to as `ctx` says."""

    name = "GitLab"

    def __init__(self, session: GitLabSession, ctx: GitLabContext) -> None:
        self.session = session
        self.ctx = ctx
        self.run_url = ctx.pipeline_url
        self._path: str | None = None if ctx.project.isdigit() else ctx.project
        self._default_branch = ctx.default_branch
        self._last_commits: dict[tuple[str, str], str] = {}
        """(branch commit, path) -> the commit that last changed a file read by path."""

    def review_label(self, number: int) -> str:
        return f"merge request !{number}"

    @property
    def project(self) -> Any:
        return self.session.project

    def resolve_target(self) -> Target:
        ctx = self.ctx
        if ctx.mr_iid is not None:
            return self._merge_request(ctx.mr_iid)
        return commit_target(
            ctx.sha, ctx.branch, self._default, review="merge request", pr_flag="--pr IID"
        )

    def _merge_request(self, iid: int) -> Target:
        with self.session.errors(f"read merge request !{iid}", READ):
            mr = self.project.mergerequests.get(iid)
            head = self.ctx.sha or str(mr.sha)
            refs = getattr(mr, "diff_refs", None) or {}
        base = self.ctx.base_sha or refs.get("base_sha") or None
        return Target("pull_request", head, pr=iid, base_sha=base)

    def _default(self) -> str:
        if self._default_branch is None:
            self._read_project()
        return self._default_branch or ""

    def _project_path(self) -> str:
        if self._path is None:
            self._read_project()
        return self._path or self.ctx.project

    def _read_project(self) -> None:
        with self.session.errors(f"read the project {self.ctx.project}", READ):
            project = self.session.gitlab.projects.get(self.ctx.project)
        self._path = str(project.path_with_namespace)
        self._default_branch = self._default_branch or str(project.default_branch or "")

    # -- the assets branch -------------------------------------------------------

    def read_tip(self, branch: str) -> Tip:
        from gitlab.exceptions import GitlabGetError

        with self.session.errors(f"read the {branch} branch", READ):
            try:
                commit = str(self.project.branches.get(branch).commit["id"])
            except GitlabGetError as exc:
                if exc.response_code == 404:
                    return Tip(branch)
                raise
            return Tip(branch, commit)

    def list_stored_folder(self, tip: Tip, folder: str) -> Listing:
        """nbci's files under `folder` (path below `ASSETS_ROOT`), 100 a request: bounded by
        the folder's own size; sizes are not listed (0)."""
        from gitlab.exceptions import GitlabGetError

        if tip.commit is None:
            return Listing()
        where = f"{ASSETS_ROOT}/{folder}" if folder else ASSETS_ROOT
        prefix = ASSETS_ROOT + "/"
        with self.session.errors(f"list {where} on the {tip.branch} branch", READ):
            try:
                listing = self.project.repository_tree(
                    path=where, ref=tip.commit, recursive=True, iterator=True
                )
                return Listing(
                    {
                        item["path"].removeprefix(prefix): (item["id"], 0)
                        for item in listing
                        if item.get("type") == "blob" and item.get("path", "").startswith(prefix)
                    }
                )
            except GitlabGetError as exc:
                if exc.response_code == 404:  # "Tree Not Found": no such folder
                    return Listing()
                raise

    def read_stored_file(self, path: str, *, tip: Tip, limit: int) -> bytes | None:
        """The repository files API by path (one request). GitLab's answer also names the
        commit that last changed the file, which the next commit's `update` of it carries
        (`last_commit_id`): GitLab refuses it if another publish changed the file meanwhile."""
        from gitlab.exceptions import GitlabGetError

        source = stored_source(tip, path)
        full = f"{ASSETS_ROOT}/{path}"
        with self.session.errors(f"read {path} from the {tip.branch} branch", READ):
            try:
                found = self.project.files.get(file_path=full, ref=tip.commit)
            except GitlabGetError as exc:
                if exc.response_code == 404:
                    return None
                raise
        size = int(getattr(found, "size", 0) or 0)
        if size > limit:
            raise ResultsError(f"{source}: larger than the {limit} bytes allowed")
        try:
            data = base64.b64decode(str(found.content), validate=False)
        except (binascii.Error, ValueError):
            raise ResultsError(f"{source}: not valid base64") from None
        if len(data) > limit:
            raise ResultsError(f"{source}: larger than the {limit} bytes allowed")
        self._last_commits[(tip.commit or "", path)] = str(found.last_commit_id)
        return data

    def commit(
        self, tip: Tip, changed: Sequence[Asset], removed: Sequence[str], message: str
    ) -> Tip:
        from gitlab.exceptions import GitlabCreateError

        actions: list[dict[str, str]] = []
        for asset in changed:
            action = {
                "action": "update" if self._exists(tip, asset.path) else "create",
                "file_path": f"{ASSETS_ROOT}/{asset.path}",
                "content": base64.b64encode(asset.data).decode("ascii"),
                "encoding": "base64",
            }
            last = self._last_commits.get((tip.commit or "", asset.path))
            if last and action["action"] == "update":
                action["last_commit_id"] = last
            actions.append(action)
        actions += [{"action": "delete", "file_path": f"{ASSETS_ROOT}/{p}"} for p in removed]
        data: dict[str, Any] = {"branch": tip.branch, "commit_message": message, "actions": actions}
        if tip.commit is None:
            data["start_branch"] = self._default()
        with self.session.errors(f"commit figures to the {tip.branch} branch", WRITE):
            try:
                created = self.project.commits.create(data)
            except GitlabCreateError as exc:
                said = str(exc.error_message).lower()
                if exc.response_code == 400 and any(word in said for word in _MOVED):
                    raise BranchMoved from None
                raise
        return tip.after(str(created.id), changed, removed)

    def _exists(self, tip: Tip, path: str) -> bool:
        """Whether `path` is on the branch: listed, or read by path (the index)."""
        return path in tip.files or (tip.commit or "", path) in self._last_commits

    def read_file(self, tip: Tip, path: str, limit: int) -> bytes:
        blob_sha, _size = tip.files[path]
        source = stored_source(tip, path)
        data = bytearray()
        with self.session.errors(f"read {path} from the {tip.branch} branch", READ):
            chunks = self.project.repository_raw_blob(blob_sha, iterator=True, chunk_size=65536)
            for chunk in chunks:
                data += chunk
                if len(data) > limit:
                    raise ResultsError(f"{source}: larger than the {limit} bytes allowed")
        return bytes(data)

    def file_url(self, commit: str, path: str) -> str:
        full = quote(f"{ASSETS_ROOT}/{path}")
        return f"{self.ctx.server_url}/{self._project_path()}/-/raw/{commit}/{full}"

    def page_url(self, commit: str, path: str) -> str:
        full = quote(f"{ASSETS_ROOT}/{path}")
        return f"{self.ctx.server_url}/{self._project_path()}/-/blob/{commit}/{full}"

    def ancestors(self, start: str, depth: int) -> Sequence[str]:
        with self.session.errors(f"list the history of {start[:12]}", READ):
            listing = self.project.commits.list(
                ref_name=start, first_parent=True, per_page=100, iterator=True
            )  # a server that ignores first_parent lists every ancestor
            entries = ((str(c.id), [str(p) for p in c.parent_ids]) for c in listing)
            return first_parent_line(start, entries, depth)

    # -- the sticky note -----------------------------------------------------------

    def _notes(self, iid: int) -> Any:
        return self.project.mergerequests.get(iid, lazy=True).notes

    def comments(self, number: int) -> list[Comment]:
        with self.session.errors(f"read the notes of merge request !{number}", READ):
            notes = self._notes(number).list(
                iterator=True, sort="asc", order_by="created_at", per_page=100
            )
            return [self._comment(number, n.attributes) for n in notes if not n.system]

    def create_comment(self, number: int, body: str) -> Comment:
        with self.session.errors(f"add a note to merge request !{number}", WRITE):
            note = self._notes(number).create({"body": body})
        return self._comment(number, note.attributes)

    def edit_comment(self, number: int, comment: Comment, body: str) -> None:
        with self.session.errors(f"edit nbci's note on merge request !{number}", WRITE):
            self._notes(number).update(comment.id, {"body": body})

    def delete_comment(self, number: int, comment: Comment) -> bool:
        from gitlab.exceptions import GitlabDeleteError

        with self.session.errors(f"delete a duplicate note on merge request !{number}", WRITE):
            try:
                self._notes(number).delete(comment.id)
            except GitlabDeleteError as exc:
                if exc.response_code != 404:  # another publish removed it first
                    raise
                return False
        return True

    def _comment(self, number: int, note: dict[str, Any]) -> Comment:
        author = note.get("author")
        mr_url = f"{self.ctx.server_url}/{self._project_path()}/-/merge_requests/{number}"
        return Comment(
            id=int(note["id"]),
            body=str(note.get("body") or ""),
            author=str(author["username"]) if isinstance(author, dict) else None,
            created_at=str(note.get("created_at") or ""),
            url=f"{mr_url}#note_{note['id']}",
        )

    # -- the verdict ---------------------------------------------------------------

    def set_status(
        self, sha: str, *, name: str, success: bool, description: str, target_url: str | None
    ) -> None:
        data = {
            "state": "success" if success else "failed",
            "name": fit(name, 255),
            "description": fit(description, STATUS_DESCRIPTION_LIMIT),
        }
        if target_url:
            data["target_url"] = target_url
        with self.session.errors(f"set the commit status on {sha[:12]}", WRITE):
            self.project.commits.get(sha, lazy=True).statuses.create(data)
        logger.info("status %s %r on %s", data["state"], name, sha[:12])

    def create_check(
        self, sha: str, *, name: str, success: bool, title: str, summary: str
    ) -> str | None:
        raise UsageError("--check: GitLab has no check runs; its commit status carries the verdict")
