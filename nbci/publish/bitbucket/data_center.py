"""Bitbucket Data Center / Server (REST 1.0): `Forge` over `rest/api/1.0` and `rest/insights/1.0`.

What differs from Cloud (`cloud.CloudForge`; what both share is `forge.BitbucketForge`):

- Files: REST 1.0 writes ONE file per commit (`PUT .../browse/{path}`,
  multipart) and has no way to delete a file. So a publish makes one commit
  per changed file, the index (`index.json`) last, each on top of the last:
  unchanged files are never rewritten (the index knows their blob ids), and
  the figure and file caps of `assets` bound the count. Files nbci no longer
  needs (a review's figures of an earlier push, the folders pruning removes)
  are dropped from the index but stay in the branch's tree: pruning bounds
  what a publish reads, not the repository's size (the README says so). A
  folder is listed with `files/{path}?at=` (paths only, paged); what the
  folder's index entry no longer names is such a leftover and not counted.
  An update names the commit it builds on (`sourceCommitId`); Data Center
  answers 409 when the file changed meanwhile: `BranchMoved`.
- Comments are read from the pull request's activities (paged by
  `start`/`limit`) and edited or deleted with their `version`.
- The build status goes to `.../commits/{sha}/builds` (Data Center 7.4 and
  later); Code Insights reports show at most 6 data fields, and their
  annotations are replaced by deleting the report's old ones first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from nbci.errors import PublishError
from nbci.publish.assets import Asset, Tip
from nbci.publish.bitbucket.client import Cut
from nbci.publish.bitbucket.forge import (
    READ_PR,
    READ_REPO,
    WRITE_PR,
    WRITE_REPO,
    BitbucketForge,
    branch_path,
)
from nbci.publish.bitbucket.markdown_dialect import from_bitbucket, to_bitbucket
from nbci.publish.forge import BranchMoved, Comment, Listing, dig
from nbci.publish.insights import Finding
from nbci.publish.status import fit

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
"""Data Center's annotation message limit."""


class DataCenterForge(BitbucketForge):
    """One repository on Bitbucket Data Center / Server (REST 1.0)."""

    data_limit = 6
    verdict_needs = READ_REPO
    source_commit = ("fromRef", "latestCommit")
    destination_commit = ("toRef", "latestCommit")

    @property
    def _repo(self) -> str:
        return f"/rest/api/1.0/projects/{quote(self.ctx.owner)}/repos/{quote(self.ctx.slug)}"

    @property
    def _web(self) -> str:
        return f"{self.ctx.web_url}/projects/{quote(self.ctx.owner)}/repos/{quote(self.ctx.slug)}"

    def _pr_path(self, number: int) -> str:
        return f"{self._repo}/pull-requests/{number}"

    def _full_sha(self, sha: str) -> str:
        return sha  # Data Center names commits in full

    def _read_default_branch(self) -> str:
        action = f"read the default branch of {self.ctx.repo}"
        answer = self.session.send(
            "GET", f"{self._repo}/default-branch", action=action, needs=READ_REPO, ok=(404,)
        )
        if answer.status_code == 404:  # before 7.5
            branch = self.session.json(
                "GET", f"{self._repo}/branches/default", action=action, needs=READ_REPO
            )
        else:
            branch = answer.json()
        return str(dig(branch, "displayId") or "")

    def _branch_head(self, branch: str) -> str | None:
        listing = self.session.server_pages(
            f"{self._repo}/branches",
            action=f"read the {branch} branch",
            needs=READ_REPO,
            filterText=branch,
        )
        for found in listing:
            if dig(found, "displayId") == branch:
                head = dig(found, "latestCommit")
                return head if isinstance(head, str) else None
        return None

    def _file_request(self, commit: str, path: str) -> tuple[str, dict[str, str] | None]:
        return f"{self._repo}/raw/{branch_path(path)}", {"at": commit}

    def _listing(self, tip: Tip, folder: str, cut: Cut) -> Iterator[tuple[str, int | None]]:
        listing = self.session.server_pages(
            f"{self._repo}/files/{branch_path(folder)}",
            action=f"list {folder or 'the files'} of the {tip.branch} branch",
            needs=READ_REPO,
            cut=cut,
            at=tip.commit,
        )
        for name in listing:
            if isinstance(name, str):
                yield f"{folder}/{name}" if folder else name, None

    def list_stored_folder(self, tip: Tip, folder: str) -> Listing:
        """As on Cloud, less the files the folder's index entry no longer names: nbci could
        not delete them (REST 1.0 cannot)."""
        listing = super().list_stored_folder(tip, folder)
        entry = next((e for e in tip.index.entries if e.folder == folder), None)
        if entry is None:
            return listing
        named = set(entry.paths)
        return replace(listing, files={p: v for p, v in listing.files.items() if p in named})

    def commit(
        self, tip: Tip, changed: Sequence[Asset], removed: Sequence[str], message: str
    ) -> Tip:
        head = tip.commit
        for asset in changed:
            exists = self._exists(tip, asset.path)
            head = self._put(tip, head, asset.path, asset.data, message, exists)
        if removed:
            logger.warning(
                "%d file(s) left in the %s branch's tree, dropped from nbci's index only: "
                "Bitbucket Data Center's REST API cannot delete files",
                len(removed),
                tip.branch,
            )
        return tip.after(head or "", changed, removed)

    def _put(
        self, tip: Tip, head: str | None, path: str, data: bytes, message: str, exists: bool
    ) -> str:
        """One file in one commit on top of `head`; returns the new commit."""
        fields = {"branch": tip.branch, "message": message}
        if head is None:
            fields["sourceBranch"] = self.default_branch()  # creates the branch from it
        elif exists:
            fields["sourceCommitId"] = head  # 409 if the file changed since
        answer = self._send_file(path, fields, data)
        if answer.status_code == 409 and not exists and head is not None:
            fields["sourceCommitId"] = head  # written by an earlier, unfinished publish
            answer = self._send_file(path, fields, data)
        if answer.status_code == 409:
            raise BranchMoved
        commit = dig(answer.json(), "id")
        if not isinstance(commit, str):
            raise PublishError(f"Bitbucket did not say which commit stored {path}")
        return commit

    def _send_file(self, path: str, fields: dict[str, str], data: bytes) -> Any:
        return self.session.send(
            "PUT",
            f"{self._repo}/browse/{branch_path(path)}",
            action=f"commit {path} to the {fields['branch']} branch",
            needs=WRITE_REPO,
            ok=(409,),
            data=fields,
            files={"content": (path.rsplit("/", 1)[-1], data)},
        )

    def file_url(self, commit: str, path: str) -> str:
        return f"{self._web}/raw/{branch_path(path)}?at={commit}"

    def page_url(self, commit: str, path: str) -> str:
        return f"{self._web}/browse/{branch_path(path)}?at={commit}"

    def _history(self, start: str) -> Iterator[tuple[str, list[str]]]:
        listing = self.session.server_pages(
            f"{self._repo}/commits",
            action=f"list the history of {start[:12]}",
            needs=READ_REPO,
            until=start,
        )
        for commit in listing:
            yield str(dig(commit, "id")), [str(p.get("id")) for p in commit.get("parents") or []]

    # -- the sticky comment ------------------------------------------------------------

    def comments(self, number: int) -> list[Comment]:
        listing = self.session.server_pages(
            f"{self._pr_path(number)}/activities",
            action=f"read the comments of pull request #{number}",
            needs=READ_PR,
        )
        return [
            self._comment(number, a["comment"])
            for a in listing
            if a.get("action") == "COMMENTED"
            and a.get("commentAction") == "ADDED"
            and isinstance(a.get("comment"), dict)
        ]

    def _comment_json(self, text: str) -> dict[str, Any]:
        return {"text": text}

    def edit_comment(self, number: int, comment: Comment, body: str) -> None:
        path = f"{self._comments_path(number)}/{comment.id}"
        action = f"edit nbci's comment on pull request #{number}"
        version = comment.handle
        for _attempt in range(2):
            json = {**self._comment_json(to_bitbucket(body)), "version": version}
            answer = self.session.send(
                "PUT", path, action=action, needs=WRITE_PR, ok=(409,), json=json
            )
            if answer.status_code != 409:
                return
            current = self.session.json("GET", path, action=action, needs=READ_PR)
            version = dig(current, "version")  # edited meanwhile: ours wins
        raise PublishError(f"nbci's comment on pull request #{number} kept changing; run again")

    def _comment(self, number: int, data: Any) -> Comment:
        author = dig(data, "author") if isinstance(dig(data, "author"), dict) else None
        comment_id = int(dig(data, "id") or 0)
        created = dig(data, "createdDate")
        return Comment(
            id=comment_id,
            body=from_bitbucket(str(dig(data, "text") or "")),
            author=str(author.get("slug") or author.get("name")) if author else None,
            created_at=f"{created:015d}" if isinstance(created, int) else "",  # ms, as text
            url=f"{self._web}/pull-requests/{number}/overview?commentId={comment_id}",
            handle=dig(data, "version"),
        )

    # -- the verdict -------------------------------------------------------------------

    def _status_path(self, sha: str) -> str:
        return f"{self._repo}/commits/{sha}/builds"

    def _report_path(self, sha: str, key: str) -> str:
        insights = self._repo.replace("/rest/api/1.0/", "/rest/insights/1.0/", 1)
        return f"{insights}/commits/{sha}/reports/{key}"

    def _result(self, passed: bool) -> dict[str, str]:
        return {"result": "PASS" if passed else "FAIL"}

    def _annotation(self, finding: Finding) -> dict[str, Any]:
        return {
            "externalId": finding.key,
            "message": fit(finding.summary, MESSAGE_LIMIT),
            "severity": "HIGH",
            "type": "BUG",
            **({"path": finding.path} if finding.path else {}),
        }

    def _add_annotations(self, path: str, annotations: list[dict[str, Any]], action: str) -> None:
        """A report's PUT keeps its earlier annotations: they are deleted first."""
        self.session.send("DELETE", path, action=action, needs=self.verdict_needs)
        if annotations:
            self.session.send(
                "POST",
                path,
                action=action,
                needs=self.verdict_needs,
                json={"annotations": annotations},
            )
