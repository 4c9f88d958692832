"""What Bitbucket Cloud and Data Center share: `BitbucketForge`, the `Forge` both speak over REST.

`cloud.CloudForge` (REST 2.0) and `data_center.DataCenterForge` (Data Center / Server,
REST 1.0) each say in their own API what is decided here once (see `client` for errors):

- The sticky comment is a pull request comment, its HTML said in markdown
  (`markdown_dialect`: Bitbucket escapes HTML). Bitbucket refuses a comment of
  32,768 characters or more ("Please enter a non-empty value less than 32768
  characters"), so the report is rendered within `COMMENT_LIMIT` (its
  per-notebook sections folded, then cut, as `nbci.render.markdown` plans;
  what is left out is said at the top).
- Images and notebooks go to the assets branch under `ASSETS_ROOT` (the branch
  starts from the default branch, as on GitLab), linked by commit SHA; how a
  commit is made is each API's own (Cloud: one commit per publish; Data Center:
  one per file).
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
from nbci.publish.assets import Tip, stored_source
from nbci.publish.bitbucket.client import BitbucketSession, Cut
from nbci.publish.bitbucket.context import BitbucketContext
from nbci.publish.bitbucket.markdown_dialect import MARKER_GROWTH, to_bitbucket
from nbci.publish.forge import Comment, Listing, Target, commit_target, dig, first_parent_line
from nbci.publish.insights import Finding, Insight
from nbci.publish.status import fit

logger = logging.getLogger(__name__)

ASSETS_ROOT = ".nbci-assets"
"""nbci's folder on the assets branch (which starts from the default branch)."""
COMMENT_LIMIT = 32_767 - MARKER_GROWTH
"""Bitbucket's comment limit (Data Center and Cloud: less than 32,768 characters), less what
its markdown (`markdown_dialect`) may add."""
REPORT_DETAILS_LIMIT = 2000
READ_REPO = "`repository` (Data Center: Repository read)"
WRITE_REPO = "`repository:write` (Data Center: Repository write)"
READ_PR = "`pullrequest` (Data Center: Repository read)"
WRITE_PR = "`pullrequest:write` (Data Center: Repository read)"
_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")


def report_key(name: str) -> str:
    """The Code Insights report's id: nbci's, per report name."""
    return f"nbci.{safe_name(name)}"


class BitbucketForge:
    """What Bitbucket Cloud and Data Center share; `CloudForge` and `DataCenterForge` speak
    their own API."""

    name = "Bitbucket"
    comment_limit = COMMENT_LIMIT
    data_limit = 10
    """Data fields a Code Insights report shows."""
    verdict_needs = WRITE_REPO
    """What the token needs to post a build status or a Code Insights report."""
    source_commit: tuple[str, ...] = ("source", "commit", "hash")
    """Where a pull request names its source head."""
    destination_commit: tuple[str, ...] = ("destination", "commit", "hash")
    """Where it names its destination commit (on the base branch)."""

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
        return commit_target(
            ctx.sha, ctx.branch, self.default_branch, review="pull request", pr_flag="--pr ID"
        )

    def _pull_request(self, number: int) -> tuple[str, str | None]:
        """The pull request's source head and destination commit (full SHAs)."""
        pull = self.session.json(
            "GET", self._pr_path(number), action=f"read pull request #{number}", needs=READ_PR
        )
        head, base = dig(pull, *self.source_commit), dig(pull, *self.destination_commit)
        if not isinstance(head, str):
            raise PublishError(f"Bitbucket's pull request #{number} has no source commit")
        return self._full_sha(head), self._full_sha(base) if isinstance(base, str) else None

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

    def _raw(self, tip: Tip, path: str, limit: int) -> bytes | None:
        """The file at `path` (below `ASSETS_ROOT`) at the tip's commit, read no further than
        `limit` (ResultsError when over); None when absent."""
        url, params = self._file_request(tip.commit or "", path)
        answer = self.session.send(
            "GET",
            url,
            action=f"read {path} from the {tip.branch} branch",
            needs=READ_REPO,
            ok=(404,),
            stream=True,
            params=params,
        )
        if answer.status_code == 404:
            answer.close()
            return None
        data = bytearray()
        for chunk in answer.iter_content(65536):
            data += chunk
            if len(data) > limit:
                answer.close()
                raise ResultsError(
                    f"{stored_source(tip, path)}: larger than the {limit} bytes allowed"
                )
        return bytes(data)

    def ancestors(self, start: str, depth: int) -> Sequence[str]:
        return first_parent_line(start, self._history(start), depth)

    # -- the sticky comment ------------------------------------------------------------

    def _comments_path(self, number: int) -> str:
        return f"{self._pr_path(number)}/comments"

    def create_comment(self, number: int, body: str) -> Comment:
        created = self.session.json(
            "POST",
            self._comments_path(number),
            action=f"comment on pull request #{number}",
            needs=WRITE_PR,
            json=self._comment_json(to_bitbucket(body)),
        )
        return self._comment(number, created)

    def delete_comment(self, number: int, comment: Comment) -> bool:
        answer = self.session.send(
            "DELETE",
            f"{self._comments_path(number)}/{comment.id}",
            action=f"delete a duplicate comment on pull request #{number}",
            needs=WRITE_PR,
            ok=(404,),
            params=None if comment.handle is None else {"version": comment.handle},  # Data Center
        )
        return answer.status_code != 404  # 404: another publish removed it first

    # -- the verdict -------------------------------------------------------------------

    def create_check(
        self, sha: str, *, name: str, success: bool, title: str, summary: str
    ) -> str | None:
        raise UsageError(
            "--check: Bitbucket has no check runs; its build status and Code Insights report "
            "carry the verdict"
        )

    def set_status(
        self, sha: str, *, name: str, success: bool, description: str, target_url: str | None
    ) -> None:
        body = {
            "key": fit(safe_name(name), 40),
            "state": "SUCCESSFUL" if success else "FAILED",
            "name": fit(name, 255),
            "description": fit(description, 255),
            "url": target_url or self.run_url or self._web,  # Bitbucket requires one
        }
        self.session.send(
            "POST",
            self._status_path(sha),
            action=f"set the build status on {sha[:12]}",
            needs=self.verdict_needs,
            json=body,
        )
        logger.info("build status %s %r on %s", body["state"], name, sha[:12])

    def post_insights(self, sha: str, *, name: str, insight: Insight) -> None:
        """The Code Insights report, replacing nbci's earlier one and its annotations."""
        path = self._report_path(sha, quote(report_key(name)))
        report: dict[str, Any] = {
            "title": fit(name, 450),
            "details": fit(insight.title, REPORT_DETAILS_LIMIT),
            "reporter": "nbci",
            **self._result(insight.passed),
            "data": self._data(insight),
        }
        if self.run_url:
            report["link"] = self.run_url
        action = f"post the Code Insights report on {sha[:12]}"
        self.session.send("PUT", path, action=action, needs=self.verdict_needs, json=report)
        annotations = [self._annotation(finding) for finding in insight.findings]
        self._add_annotations(f"{path}/annotations", annotations, action)
        logger.info("Code Insights report with %d annotation(s) on %s", len(annotations), sha[:12])

    def _data(self, insight: Insight) -> list[dict[str, Any]]:
        return [
            {"title": fit(d.title, 50), "type": d.type, "value": d.value}
            for d in insight.data[: self.data_limit]
        ]

    # -- what each API says its own way ---------------------------------------------------

    @property
    def _web(self) -> str:
        """The repository's web page."""
        raise NotImplementedError

    def _pr_path(self, number: int) -> str:
        raise NotImplementedError

    def _full_sha(self, sha: str) -> str:
        """`sha` in full, where the API shortened it."""
        raise NotImplementedError

    def _read_default_branch(self) -> str:
        raise NotImplementedError

    def _branch_head(self, branch: str) -> str | None:
        raise NotImplementedError

    def _file_request(self, commit: str, path: str) -> tuple[str, dict[str, str] | None]:
        """The URL (and query) that reads the file at `path` (below `ASSETS_ROOT`) at `commit`."""
        raise NotImplementedError

    def _listing(self, tip: Tip, folder: str, cut: Cut) -> Iterator[tuple[str, int | None]]:
        """(path below `ASSETS_ROOT`, size if listed) of every file under `folder`."""
        raise NotImplementedError

    def _history(self, start: str) -> Iterator[tuple[str, list[str]]]:
        raise NotImplementedError

    def _comment_json(self, text: str) -> dict[str, Any]:
        """A comment's body as the API takes it, `text` being in Bitbucket's markdown."""
        raise NotImplementedError

    def _comment(self, number: int, data: Any) -> Comment:
        """A comment as the API gives it."""
        raise NotImplementedError

    def _status_path(self, sha: str) -> str:
        raise NotImplementedError

    def _report_path(self, sha: str, key: str) -> str:
        raise NotImplementedError

    def _result(self, passed: bool) -> dict[str, str]:
        """The Code Insights report's result (and type), in the API's words."""
        raise NotImplementedError

    def _annotation(self, finding: Finding) -> dict[str, Any]:
        raise NotImplementedError

    def _add_annotations(self, path: str, annotations: list[dict[str, Any]], action: str) -> None:
        """Post the report's annotations, replacing those of an earlier publish."""
        raise NotImplementedError


def branch_path(path: str) -> str:
    """Where nbci's `path` ("": its folder) is in the assets branch's tree, quoted for a URL."""
    return quote(f"{ASSETS_ROOT}/{path}" if path else ASSETS_ROOT)
