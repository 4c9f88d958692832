"""The Bitbucket side of `publish`: `Forge` over REST (see `bitbucket_client` for errors).

One class per API, sharing what Bitbucket Cloud (REST 2.0) and Data Center /
Server (REST 1.0, `bitbucket_dc`) have in common:

- The sticky comment is a pull request comment, its HTML said in markdown
  (`bitbucket_markdown`: Bitbucket escapes HTML). Bitbucket refuses a comment of
  32,768 characters or more ("Please enter a non-empty value less than 32768
  characters"), so the report is rendered within `COMMENT_LIMIT` (its
  per-notebook sections folded, then cut, as `nbci.render.markdown` plans;
  what is left out is said at the top).
- Images and notebooks go to the assets branch under `ASSETS_ROOT` (the branch
  starts from the default branch, as on GitLab), linked by commit SHA. Cloud
  writes every changed file, and deletes stale ones and what pruning removes,
  in ONE commit (`POST /2.0/repositories/{workspace}/{slug}/src`, multipart,
  deletions as `files` fields without content), refused with 409 when the
  branch moved since it was read (`parents`): `BranchMoved`.
- Reading never lists the branch whole: `index.json` (`nbci.publish.index`) and
  stored runs are read by path (Cloud `src/{commit}/{path}`, Data Center
  `raw/{path}?at=`), and only the folders a publish reads or writes are listed,
  page by page. Neither API lists git blob ids, so a listed file's blob id (what
  tells an unchanged file from a changed one) comes from the index's entry for
  its folder, which nbci writes with each file's blob id and size; one the index
  does not know (or whose listed size disagrees) counts as changed.
- The baseline search walks the destination branch's history from the pull
  request's destination commit, first parents only (`first_parent_line`).
- The verdict is a build status (`SUCCESSFUL`/`FAILED`, key = the report
  name) and a Code Insights report with the headline metrics as data and one
  annotation per failed notebook and failed gate (`nbci.publish.insights`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

from nbci._files import safe_name
from nbci.errors import PublishError, ResultsError, UsageError
from nbci.publish.assets import Asset, Tip, stored_source
from nbci.publish.bitbucket.client import BitbucketSession, Cut
from nbci.publish.bitbucket.context import BitbucketContext
from nbci.publish.bitbucket.markdown_dialect import MARKER_GROWTH, from_bitbucket, to_bitbucket
from nbci.publish.forge import BranchMoved, Comment, Listing, Target, first_parent_line
from nbci.publish.insights import Insight
from nbci.publish.status import fit

logger = logging.getLogger(__name__)

ASSETS_ROOT = ".nbci-assets"
"""nbci's folder on the assets branch (which starts from the default branch)."""
MAX_DEPTH = 8
"""How deep Cloud lists below a folder (`runs/<sha>/<report>/figures/<job>/<name>.png` is 6)."""
COMMENT_LIMIT = 32_767 - MARKER_GROWTH
"""Bitbucket's comment limit (Data Center and Cloud: less than 32,768 characters), less what
its markdown (`bitbucket_markdown`) may add."""
REPORT_DETAILS_LIMIT = 2000
ANNOTATION_LIMIT = 450
"""Cloud's annotation summary limit (Data Center's message allows 2,000)."""
ANNOTATIONS_PER_REQUEST = 100
READ_REPO = "`repository` (Data Center: Repository read)"
WRITE_REPO = "`repository:write` (Data Center: Repository write)"
READ_PR = "`pullrequest` (Data Center: Repository read)"
WRITE_PR = "`pullrequest:write` (Data Center: Repository read)"
_SHA = re.compile(r"[0-9a-f]{40}")
_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")


def report_key(name: str) -> str:
    """The Code Insights report's id: nbci's, per report name."""
    return f"nbci.{safe_name(name)}"


class BitbucketForge:
    """What Bitbucket Cloud and Data Center share; `CloudForge` and `DataCenterForge` speak."""

    name = "Bitbucket"
    comment_limit = COMMENT_LIMIT
    data_limit = 10

    def __init__(self, session: BitbucketSession, ctx: BitbucketContext) -> None:
        self.session = session
        self.ctx = ctx
        self.run_url = ctx.run_url
        self._default_branch: str | None = None
        self._stored: set[tuple[str, str]] = set()
        """(commit, path) of the files read by path: they exist at that commit."""

    def review_label(self, number: int) -> str:
        return f"pull request #{number}"

    # -- the target ------------------------------------------------------------------

    def resolve_target(self) -> Target:
        ctx = self.ctx
        if ctx.pr is not None:
            head, base = self._pull_request(ctx.pr)
            return Target("pull_request", ctx.sha or head, pr=ctx.pr, base_sha=base)
        if ctx.sha is None:
            raise UsageError(
                "nothing to publish to: no pull request or commit in the environment; "
                "pass --pr ID or --sha SHA"
            )
        if ctx.branch is not None and ctx.branch == self.default_branch():
            return Target("baseline", ctx.sha, base_sha=ctx.sha)
        return Target("commit", ctx.sha)

    def default_branch(self) -> str:
        if self._default_branch is None:
            self._default_branch = self._read_default_branch()
        return self._default_branch

    # -- the assets branch -------------------------------------------------------------

    def read_tip(self, branch: str) -> Tip:
        commit = self._branch_head(branch)
        return Tip(branch, commit) if commit else Tip(branch)

    def read_stored_file(self, path: str, *, tip: Tip, limit: int) -> bytes | None:
        if tip.commit is None:
            return None
        data = self._raw(tip, path, limit)
        if data is not None:
            self._stored.add((tip.commit, path))
        return data

    def read_file(self, tip: Tip, path: str, limit: int) -> bytes:
        data = self.read_stored_file(path, tip=tip, limit=limit)
        if data is None:
            raise ResultsError(f"{stored_source(tip, path)}: listed on the branch but absent")
        return data

    def list_stored_folder(self, tip: Tip, folder: str) -> Listing:
        """The folder's files, a page (100) a request; their blob ids from the index."""
        if tip.commit is None:
            return Listing()
        cut = Cut()
        known = {p: b for e in tip.index.entries for p, b in e.blob_ids().items()}
        files: dict[str, tuple[str, int]] = {}
        for path, size in self._listing(tip, folder, cut):
            if not (_PATH.fullmatch(path) and path.startswith(folder + "/" if folder else "")):
                continue  # untrusted: only plain paths inside the folder
            blob = known.get(path)
            same = blob is not None and (size is None or size == blob[1])
            files[path] = blob if blob is not None and same else ("", size or 0)
        return Listing(files, cut.cut)

    def _exists(self, tip: Tip, path: str) -> bool:
        """Whether `path` is on the branch at `tip`: listed, or read by its path."""
        return path in tip.files or (tip.commit or "", path) in self._stored

    def _stream(
        self, url: str, limit: int, source: str, *, action: str, **params: Any
    ) -> bytes | None:
        """A file's bytes, read no further than `limit` (ResultsError when over); None: absent."""
        answer = self.session.send(
            "GET",
            url,
            action=action,
            needs=READ_REPO,
            ok=(404,),
            stream=True,
            params=params or None,
        )
        if answer.status_code == 404:
            answer.close()
            return None
        data = bytearray()
        for chunk in answer.iter_content(65536):
            data += chunk
            if len(data) > limit:
                answer.close()
                raise ResultsError(f"{source}: larger than the {limit} bytes allowed")
        return bytes(data)

    def ancestors(self, start: str, depth: int) -> Sequence[str]:
        return first_parent_line(start, self._history(start), depth)

    # -- the verdict -------------------------------------------------------------------

    def create_check(
        self, sha: str, *, name: str, success: bool, title: str, summary: str
    ) -> str | None:
        raise UsageError(
            "--check: Bitbucket has no check runs; its build status and Code Insights report "
            "carry the verdict"
        )

    def _status_body(
        self, name: str, success: bool, description: str, target_url: str | None
    ) -> dict[str, str]:
        return {
            "key": fit(safe_name(name), 40),
            "state": "SUCCESSFUL" if success else "FAILED",
            "name": fit(name, 255),
            "description": fit(description, 255),
            "url": target_url or self._fallback_url(),  # Bitbucket requires one
        }

    def _data(self, insight: Insight) -> list[dict[str, Any]]:
        return [
            {"title": fit(d.title, 50), "type": d.type, "value": d.value}
            for d in insight.data[: self.data_limit]
        ]

    # -- what each API says its own way ---------------------------------------------------

    def _pull_request(self, number: int) -> tuple[str, str | None]:
        """The pull request's source head and destination commit (full SHAs)."""
        raise NotImplementedError

    def _read_default_branch(self) -> str:
        raise NotImplementedError

    def _branch_head(self, branch: str) -> str | None:
        raise NotImplementedError

    def _raw(self, tip: Tip, path: str, limit: int) -> bytes | None:
        """The file at `path` (below `ASSETS_ROOT`) at the tip's commit; None when absent."""
        raise NotImplementedError

    def _listing(self, tip: Tip, folder: str, cut: Cut) -> Iterator[tuple[str, int | None]]:
        """(path below `ASSETS_ROOT`, size if listed) of every file under `folder`."""
        raise NotImplementedError

    def _history(self, start: str) -> Iterator[tuple[str, list[str]]]:
        raise NotImplementedError

    def _fallback_url(self) -> str:
        raise NotImplementedError


class CloudForge(BitbucketForge):
    """One repository on Bitbucket Cloud (REST 2.0)."""

    @property
    def _repo(self) -> str:
        return f"/repositories/{quote(self.ctx.owner)}/{quote(self.ctx.slug)}"

    @property
    def _web(self) -> str:
        return f"{self.ctx.web_url}/{self.ctx.owner}/{self.ctx.slug}"

    def _pull_request(self, number: int) -> tuple[str, str | None]:
        pull = self.session.json(
            "GET",
            f"{self._repo}/pullrequests/{number}",
            action=f"read pull request #{number}",
            needs=READ_PR,
        )
        head = dig(pull, "source", "commit", "hash")
        base = dig(pull, "destination", "commit", "hash")
        if not isinstance(head, str):
            raise PublishError(f"Bitbucket's pull request #{number} has no source commit")
        return self._full_sha(head), self._full_sha(base) if isinstance(base, str) else None

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

    def _raw(self, tip: Tip, path: str, limit: int) -> bytes | None:
        url = f"{self._repo}/src/{tip.commit}/{quote(f'{ASSETS_ROOT}/{path}')}"
        action = f"read {path} from the {tip.branch} branch"
        return self._stream(url, limit, stored_source(tip, path), action=action)

    def _listing(self, tip: Tip, folder: str, cut: Cut) -> Iterator[tuple[str, int | None]]:
        where = f"{ASSETS_ROOT}/{folder}" if folder else ASSETS_ROOT
        listing = self.session.cloud_pages(
            f"{self._repo}/src/{tip.commit}/{quote(where)}/",
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
        return f"{self._web}/raw/{commit}/{quote(f'{ASSETS_ROOT}/{path}')}"

    def page_url(self, commit: str, path: str) -> str:
        return f"{self._web}/src/{commit}/{quote(f'{ASSETS_ROOT}/{path}')}"

    def _history(self, start: str) -> Iterator[tuple[str, list[str]]]:
        listing = self.session.cloud_pages(
            f"{self._repo}/commits/{start}",
            action=f"list the history of {start[:12]}",
            needs=READ_REPO,
        )
        for commit in listing:
            parents = [str(p.get("hash")) for p in commit.get("parents") or []]
            yield str(commit.get("hash")), parents

    def _fallback_url(self) -> str:
        return self.ctx.run_url or self._web

    # -- the sticky comment ------------------------------------------------------------

    def _comments_path(self, number: int) -> str:
        return f"{self._repo}/pullrequests/{number}/comments"

    def comments(self, number: int) -> list[Comment]:
        listing = self.session.cloud_pages(
            self._comments_path(number),
            action=f"read the comments of pull request #{number}",
            needs=READ_PR,
        )
        return [self._comment(number, c) for c in listing if not c.get("deleted")]

    def create_comment(self, number: int, body: str) -> Comment:
        created = self.session.json(
            "POST",
            self._comments_path(number),
            action=f"comment on pull request #{number}",
            needs=WRITE_PR,
            json={"content": {"raw": to_bitbucket(body)}},
        )
        return self._comment(number, created)

    def edit_comment(self, number: int, comment: Comment, body: str) -> None:
        self.session.send(
            "PUT",
            f"{self._comments_path(number)}/{comment.id}",
            action=f"edit nbci's comment on pull request #{number}",
            needs=WRITE_PR,
            json={"content": {"raw": to_bitbucket(body)}},
        )

    def delete_comment(self, number: int, comment: Comment) -> bool:
        answer = self.session.send(
            "DELETE",
            f"{self._comments_path(number)}/{comment.id}",
            action=f"delete a duplicate comment on pull request #{number}",
            needs=WRITE_PR,
            ok=(404,),
        )
        return answer.status_code != 404  # 404: another publish removed it first

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

    def set_status(
        self, sha: str, *, name: str, success: bool, description: str, target_url: str | None
    ) -> None:
        body = self._status_body(name, success, description, target_url)
        self.session.send(
            "POST",
            f"{self._repo}/commit/{sha}/statuses/build",
            action=f"set the build status on {sha[:12]}",
            needs=WRITE_REPO,
            json=body,
        )
        logger.info("build status %s %r on %s", body["state"], name, sha[:12])

    def post_insights(self, sha: str, *, name: str, insight: Insight) -> None:
        """The Code Insights report (replacing nbci's earlier one and its annotations)."""
        path = f"{self._repo}/commit/{sha}/reports/{quote(report_key(name))}"
        report: dict[str, Any] = {
            "title": fit(name, 450),
            "details": fit(insight.title, REPORT_DETAILS_LIMIT),
            "report_type": "TEST",
            "reporter": "nbci",
            "result": "PASSED" if insight.passed else "FAILED",
            "data": self._data(insight),
        }
        if self.run_url:
            report["link"] = self.run_url
        action = f"post the Code Insights report on {sha[:12]}"
        self.session.send("PUT", path, action=action, needs=WRITE_REPO, json=report)
        annotations = [
            {
                "external_id": f.key,
                "annotation_type": "BUG",
                "summary": fit(f.summary, ANNOTATION_LIMIT),
                "severity": "HIGH",
                "result": "FAILED",
                **({"path": f.path} if f.path else {}),
            }
            for f in insight.findings
        ]
        for i in range(0, len(annotations), ANNOTATIONS_PER_REQUEST):
            chunk = annotations[i : i + ANNOTATIONS_PER_REQUEST]
            self.session.send(
                "POST", f"{path}/annotations", action=action, needs=WRITE_REPO, json=chunk
            )
        logger.info("Code Insights report with %d annotation(s) on %s", len(annotations), sha[:12])


def dig(data: Any, *keys: str) -> Any:
    """`data[k1][k2]...`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
