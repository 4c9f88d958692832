"""Bitbucket Cloud (REST 2.0): `Forge` over `api.bitbucket.org/2.0`.

What Cloud does its own way (what it shares with Data Center is `forge.BitbucketForge`):

- Files: every changed file, and the deletion of stale ones and of what pruning
  removes, go in ONE commit (`POST /2.0/repositories/{workspace}/{slug}/src`,
  multipart, deletions as `files` fields without content), refused with 409
  when the branch moved since it was read (`parents`): `BranchMoved`.
- A pull request names its commits by 12 digits: the full SHA is asked for.
- A folder is listed with its files' sizes, `MAX_DEPTH` levels deep.
- The Code Insights report's annotations are added `ANNOTATIONS_PER_REQUEST` at a time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

from nbci.errors import PublishError
from nbci.publish.assets import Asset, Tip
from nbci.publish.bitbucket.client import Cut
from nbci.publish.bitbucket.forge import (
    ASSETS_ROOT,
    READ_PR,
    READ_REPO,
    WRITE_PR,
    WRITE_REPO,
    BitbucketForge,
    branch_path,
)
from nbci.publish.bitbucket.markdown_dialect import from_bitbucket, to_bitbucket
from nbci.publish.forge import BranchMoved, Comment, dig
from nbci.publish.insights import Finding
from nbci.publish.status import fit

logger = logging.getLogger(__name__)

MAX_DEPTH = 8
"""How deep Cloud lists below a folder (`runs/<sha>/<report>/figures/<job>/<name>.png` is 6)."""
ANNOTATION_LIMIT = 450
"""Cloud's annotation summary limit (Data Center's message allows 2,000)."""
ANNOTATIONS_PER_REQUEST = 100
_SHA = re.compile(r"[0-9a-f]{40}")


class CloudForge(BitbucketForge):
    """One repository on Bitbucket Cloud (REST 2.0)."""

    @property
    def _repo(self) -> str:
        return f"/repositories/{quote(self.ctx.owner)}/{quote(self.ctx.slug)}"

    @property
    def _web(self) -> str:
        return f"{self.ctx.web_url}/{self.ctx.owner}/{self.ctx.slug}"

    def _pr_path(self, number: int) -> str:
        return f"{self._repo}/pullrequests/{number}"

    def _full_sha(self, sha: str) -> str:
        """Bitbucket Cloud names a pull request's commits by 12 digits: ask for all 40."""
        if _SHA.fullmatch(sha):
            return sha
        commit = self.session.json(
            "GET", f"{self._repo}/commit/{quote(sha)}", action=f"read {sha}", needs=READ_REPO
        )
        full = dig(commit, "hash")
        if not isinstance(full, str) or not _SHA.fullmatch(full):
            raise PublishError(f"Bitbucket gave no full SHA for commit {sha!r}")
        return full

    def _read_default_branch(self) -> str:
        repo = self.session.json(
            "GET", self._repo, action=f"read the repository {self.ctx.repo}", needs=READ_REPO
        )
        return str(dig(repo, "mainbranch", "name") or "")

    def _branch_head(self, branch: str) -> str | None:
        answer = self.session.send(
            "GET",
            f"{self._repo}/refs/branches/{quote(branch, safe='')}",
            action=f"read the {branch} branch",
            needs=READ_REPO,
            ok=(404,),
        )
        if answer.status_code == 404:
            return None
        head = dig(answer.json(), "target", "hash")
        return head if isinstance(head, str) else None

    def _file_request(self, commit: str, path: str) -> tuple[str, dict[str, str] | None]:
        return f"{self._repo}/src/{commit}/{branch_path(path)}", None

    def _listing(self, tip: Tip, folder: str, cut: Cut) -> Iterator[tuple[str, int | None]]:
        listing = self.session.cloud_pages(
            f"{self._repo}/src/{tip.commit}/{branch_path(folder)}/",
            action=f"list {folder or 'the files'} of the {tip.branch} branch",
            needs=READ_REPO,
            cut=cut,
            max_depth=MAX_DEPTH,
        )
        for item in listing:
            path, size = dig(item, "path"), dig(item, "size")
            if dig(item, "type") != "commit_file" or not isinstance(path, str):
                continue
            if path.startswith(ASSETS_ROOT + "/"):  # nothing of the repository's own
                sized = size if type(size) is int and size >= 0 else None
                yield path.removeprefix(ASSETS_ROOT + "/"), sized

    def commit(
        self, tip: Tip, changed: Sequence[Asset], removed: Sequence[str], message: str
    ) -> Tip:
        parent = tip.commit or self._branch_head(self.default_branch())  # creates the branch
        fields: list[tuple[str, str]] = [("message", message), ("branch", tip.branch)]
        if parent:
            fields.append(("parents", parent))  # 409 if the branch is no longer there
        fields += [("files", f"{ASSETS_ROOT}/{path}") for path in removed]  # no content: deleted
        files = [(f"{ASSETS_ROOT}/{a.path}", (a.path.rsplit("/", 1)[-1], a.data)) for a in changed]
        answer = self.session.send(
            "POST",
            f"{self._repo}/src",
            action=f"commit figures to the {tip.branch} branch",
            needs=WRITE_REPO,
            ok=(409,),
            data=fields,
            files=files,
        )
        if answer.status_code == 409:
            raise BranchMoved
        sha = answer.headers.get("Location", "").rstrip("/").rsplit("/", 1)[-1]
        if not _SHA.fullmatch(sha):
            sha = self._branch_head(tip.branch) or ""
        return tip.after(sha, changed, removed)

    def file_url(self, commit: str, path: str) -> str:
        return f"{self._web}/raw/{commit}/{branch_path(path)}"

    def page_url(self, commit: str, path: str) -> str:
        return f"{self._web}/src/{commit}/{branch_path(path)}"

    def _history(self, start: str) -> Iterator[tuple[str, list[str]]]:
        listing = self.session.cloud_pages(
            f"{self._repo}/commits/{start}",
            action=f"list the history of {start[:12]}",
            needs=READ_REPO,
        )
        for commit in listing:
            parents = [str(p.get("hash")) for p in commit.get("parents") or []]
            yield str(commit.get("hash")), parents

    # -- the sticky comment ------------------------------------------------------------

    def comments(self, number: int) -> list[Comment]:
        listing = self.session.cloud_pages(
            self._comments_path(number),
            action=f"read the comments of pull request #{number}",
            needs=READ_PR,
        )
        return [self._comment(number, c) for c in listing if not c.get("deleted")]

    def _comment_json(self, text: str) -> dict[str, Any]:
        return {"content": {"raw": text}}

    def edit_comment(self, number: int, comment: Comment, body: str) -> None:
        self.session.send(
            "PUT",
            f"{self._comments_path(number)}/{comment.id}",
            action=f"edit nbci's comment on pull request #{number}",
            needs=WRITE_PR,
            json=self._comment_json(to_bitbucket(body)),
        )

    def _comment(self, number: int, data: Any) -> Comment:
        user = dig(data, "user") if isinstance(dig(data, "user"), dict) else None
        link = dig(data, "links", "html", "href")
        comment_id = int(dig(data, "id") or 0)
        return Comment(
            id=comment_id,
            body=from_bitbucket(str(dig(data, "content", "raw") or "")),
            author=str(user.get("uuid") or user.get("account_id")) if user else None,
            created_at=str(dig(data, "created_on") or ""),
            url=str(link) if link else f"{self._web}/pull-requests/{number}#comment-{comment_id}",
        )

    # -- the verdict -------------------------------------------------------------------

    def _status_path(self, sha: str) -> str:
        return f"{self._repo}/commit/{sha}/statuses/build"

    def _report_path(self, sha: str, key: str) -> str:
        return f"{self._repo}/commit/{sha}/reports/{key}"

    def _result(self, passed: bool) -> dict[str, str]:
        return {"report_type": "TEST", "result": "PASSED" if passed else "FAILED"}

    def _annotation(self, finding: Finding) -> dict[str, Any]:
        return {
            "external_id": finding.key,
            "annotation_type": "BUG",
            "summary": fit(finding.summary, ANNOTATION_LIMIT),
            "severity": "HIGH",
            "result": "FAILED",
            **({"path": finding.path} if finding.path else {}),
        }

    def _add_annotations(self, path: str, annotations: list[dict[str, Any]], action: str) -> None:
        """A report's PUT drops its earlier annotations; the new ones go 100 a request."""
        for i in range(0, len(annotations), ANNOTATIONS_PER_REQUEST):
            chunk = annotations[i : i + ANNOTATIONS_PER_REQUEST]
            self.session.send("POST", path, action=action, needs=self.verdict_needs, json=chunk)
