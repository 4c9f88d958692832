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

from nbci._files import safe_name
from nbci.errors import ResultsError, UsageError
from nbci.publish.assets import Tip, stored_source
from nbci.publish.bitbucket.client import BitbucketSession, Cut
from nbci.publish.bitbucket.context import BitbucketContext
from nbci.publish.bitbucket.markdown_dialect import MARKER_GROWTH
from nbci.publish.forge import Listing, Target, first_parent_line
from nbci.publish.insights import Insight
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


def dig(data: Any, *keys: str) -> Any:
    """`data[k1][k2]...`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
