"""Stand-ins for Bitbucket Cloud (REST 2.0) and Bitbucket Data Center (REST 1.0), over HTTP.

Both keep one repository's git history (commits, branches, blobs), its pull
requests with their comments, build statuses and Code Insights reports with
annotations, and answer the endpoints `nbci publish` uses with the shapes and
status codes Bitbucket documents (developer.atlassian.com/cloud/bitbucket/rest,
developer.atlassian.com/server/bitbucket/rest):

- Cloud: `/2.0/repositories/{workspace}/{slug}/...`; lists paged with
  `page`/`pagelen` (at most 100) and an absolute `next` link; a pull request
  names its commits by 12 digits; `POST .../src` writes several files (and
  deletes those named in `files` without content) in one commit, 409 when
  `parents` is not the branch's head; tokens carry scopes, and a 403 lists the
  required ones (`error.detail.required`); `GET .../src/{sha}/{folder}/` lists
  a folder's files (to `max_depth`, paged); the web side serves
  `/{workspace}/{slug}/raw/{sha}/{path}`.
- Data Center: `/rest/api/1.0/projects/{KEY}/repos/{slug}/...` and
  `/rest/insights/1.0/...`; lists paged with `start`/`limit`, `isLastPage` and
  `nextPageStart`; `PUT .../browse/{path}` writes one file per commit (409 when
  the file exists without `sourceCommitId`, or changed since it) and nothing
  deletes a file; `files/{folder}?at=` lists paths, paged; comments are
  read from `activities` and carry a `version`; a token without a permission
  gets 401 with an `AuthorisationException`, as Data Center answers.

Every request is recorded; tests inject faults (a status N times, 429 with
`Retry-After`, connection resets) and races (`before_next`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from http_stub import Answer, Recorded, Reply, StandIn, git_blob_sha, json_bytes

CLOUD_PREFIX = "/2.0"
DC_API = "/rest/api/1.0"
DC_INSIGHTS = "/rest/insights/1.0"
COMMENT_LIMIT = 32_767


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    times: int
    status: int
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method in (self.method, "*") and bool(self.pattern.search(path))


@dataclass
class PullRequest:
    id: int
    head: str
    base: str
    source_branch: str = "feature"
    destination_branch: str = "main"


class _Repository(StandIn):
    """The git history, pull requests and verdicts both stand-ins keep, and fault injection."""

    def __init__(self, *, token: str, default_branch: str, user: str) -> None:
        super().__init__()
        self.token = token
        self.default_branch = default_branch
        self.max_per_page = 100
        self.tokens: dict[str, tuple[str, ...]] = {}
        self.users: dict[str, str] = {token: user}
        self.faults: list[Fault] = []
        self.hooks: list[tuple[str, re.Pattern[str], Callable[[], object]]] = []
        self.blobs: dict[str, bytes] = {}
        self.commits: dict[str, dict[str, Any]] = {}
        self.branches: dict[str, str] = {}
        self.pull_requests: dict[int, PullRequest] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.reports: dict[tuple[str, str], dict[str, Any]] = {}
        self.annotations: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._ids = iter(range(700_001, 10**9))
        self._clock = 0
        self._lock = threading.RLock()

    # -- set-up ------------------------------------------------------------------------

    def add_history(self, count: int, *, branch: str | None = None) -> list[str]:
        """`count` linear commits on `branch` (the default branch), oldest first."""
        branch = branch or self.default_branch
        with self._lock:
            parent = self.branches.get(branch)
            files = dict(self.commits[parent]["files"]) if parent else {}
            shas = []
            for i in range(count):
                files["README.md"] = self.store_blob(f"version {len(self.commits)} {i}\n".encode())
                parent = self.store_commit(f"commit {i}", dict(files), [parent] if parent else [])
                shas.append(parent)
            self.branches[branch] = shas[-1]
            return shas

    def add_merged_branch(self, count: int) -> tuple[list[str], str]:
        """A feature branch of `count` commits merged into the default branch (first parent:
        the default branch). Returns the feature's commits and the merge commit."""
        with self._lock:
            fork = self.branches[self.default_branch]
            files = dict(self.commits[fork]["files"])
            feature, parent = [], fork
            for i in range(count):
                files["README.md"] = self.store_blob(f"feature {len(self.commits)} {i}\n".encode())
                parent = self.store_commit(f"feature commit {i}", dict(files), [parent])
                feature.append(parent)
            merge = self.store_commit("Merge branch 'feature'", files, [fork, feature[-1]])
            self.branches[self.default_branch] = merge
            return feature, merge

    def add_pull_request(self, number: int, *, base: str) -> PullRequest:
        """A pull request of one commit on `base` into the default branch."""
        with self._lock:
            head = self.store_commit(
                f"work on #{number}", dict(self.commits[base]["files"]), [base]
            )
            pull = PullRequest(number, head, base, destination_branch=self.default_branch)
            self.pull_requests[number] = pull
            self.comments.setdefault(number, [])
            return pull

    def add_comment(self, number: int, body: str, *, user: str = "someone") -> dict[str, Any]:
        with self._lock:
            comment = self._new_comment(body, user)
            self.comments.setdefault(number, []).append(comment)
            return comment

    def before_next(self, method: str, path: str, action: Callable[[], object]) -> None:
        """Run `action` just before the next matching request is carried out (a race)."""
        with self._lock:
            self.hooks.append((method.upper(), re.compile(path), action))

    def fail(self, method: str, path: str, status: int = 502, *, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path), times, status))

    def rate_limit(self, method: str, path: str, *, retry_after: int, times: int = 1) -> None:
        with self._lock:
            headers = {"Retry-After": str(retry_after)}
            self.faults.append(Fault(method.upper(), re.compile(path), times, 429, headers))

    def reset_connection(self, method: str, path: str, *, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path), times, 0))

    # -- inspection ----------------------------------------------------------------------

    def file_at(self, commitish: str, path: str) -> bytes | None:
        sha = self.branches.get(commitish, commitish)
        commit = self.commits.get(sha)
        blob = commit["files"].get(path) if commit else None
        return self.blobs[blob] if blob else None

    def put_files(self, branch: str, files: dict[str, bytes], *, message: str = "put") -> str:
        """Every file of `files` (path -> content) written on `branch` in one commit, the
        branch cut from the default branch if it is new; returns the commit."""
        with self._lock:
            parent = self.branches.get(branch) or self.branches[self.default_branch]
            self.branches[branch] = self.store_commit(
                message, self._paths(parent, set(), files), [parent]
            )
            return self.branches[branch]

    def pr_comments(self, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.get(number, []) if not c.get("deleted")]

    def writes(self) -> list[Recorded]:
        return [r for r in list(self.requests) if r.method not in ("GET", "HEAD")]

    # -- git ----------------------------------------------------------------------------

    def store_blob(self, data: bytes) -> str:
        sha = git_blob_sha(data)
        self.blobs[sha] = data
        return sha

    def store_commit(self, message: str, files: dict[str, str], parents: list[str]) -> str:
        self._clock += 1
        payload = json.dumps([message, sorted(files.items()), parents, self._clock])
        sha = hashlib.sha1(payload.encode()).hexdigest()
        self.commits[sha] = {"message": message, "files": files, "parents": parents}
        self.commits[sha]["clock"] = self._clock
        return sha

    def _ancestors(self, sha: str) -> list[str]:
        """Every ancestor of `sha`, newest first (as both APIs list history)."""
        seen: set[str] = set()
        todo = [sha]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.commits[current]["parents"])
        return sorted(seen, key=lambda c: self.commits[c]["clock"], reverse=True)

    def _new_comment(self, body: str, user: str) -> dict[str, Any]:
        self._clock += 1
        return {"id": next(self._ids), "body": body, "user": user, "clock": self._clock}

    # -- requests ------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query))
        path = unquote(split.path)
        body: Any = raw
        if headers.get("content-type", "").startswith("application/json") and raw:
            body = json.loads(raw)
        elif headers.get("content-type", "").startswith("multipart/form-data"):
            body = _multipart(headers["content-type"], raw)
        record = Recorded(method, path, query, headers, body)
        with self._lock:
            self.requests.append(record)
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
                record.status = fault.status
                if fault.status == 0:
                    return 0, {}, None
                return fault.status, dict(fault.headers), b"<h1>Bad Gateway</h1>"
            hook = next((h for h in self.hooks if h[0] == method and h[1].search(path)), None)
            if hook is not None:
                self.hooks.remove(hook)
                hook[2]()
            try:
                status, payload, extra = self.route(method, path, query, headers, body)
            except ApiError as exc:
                status, payload, extra = exc.status, exc.body, {}
            record.status = status
            if isinstance(payload, bytes):
                return status, extra, payload
            extra = {"Content-Type": "application/json", **extra}
            return status, extra, b"" if payload is None else json_bytes(payload)

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        raise NotImplementedError

    def _user(self, headers: dict[str, str]) -> str:
        return self.users[headers.get("authorization", "").removeprefix("Bearer ")]

    def _paths(self, commit: str, removed: set[str], written: dict[str, bytes]) -> dict[str, str]:
        files = {p: b for p, b in self.commits[commit]["files"].items() if p not in removed}
        files.update({p: self.store_blob(data) for p, data in written.items()})
        return files


class BitbucketCloudStub(_Repository):
    """Bitbucket Cloud's REST 2.0 for one repository (`workspace/slug`)."""

    server_version = "nginx"

    def __init__(
        self,
        repo: str = "ml-team/notebooks",
        *,
        token: str = "ATCTT3xFfGN0stubTokenDoNotLeak0123456789",
        default_branch: str = "main",
    ) -> None:
        super().__init__(token=token, default_branch=default_branch, user="{bot-uuid-1}")
        self.repo = repo
        self.tokens[token] = ("repository:write", "pullrequest:write")

    @property
    def web_url(self) -> str:
        return f"{self.base_url}/{self.repo}"

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        if not path.startswith(CLOUD_PREFIX + "/"):
            return self._web(method, path)
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            raise ApiError(401, {"type": "error", "error": {"message": "Unauthorized"}})
        prefix = f"{CLOUD_PREFIX}/repositories/{self.repo}"
        if not (path == prefix or path.startswith(prefix + "/")):
            raise ApiError(404, {"type": "error", "error": {"message": "Repository not found"}})
        rest = path[len(prefix) :]
        for verb, pattern, scope, handler in self._routes():
            match = re.fullmatch(pattern, rest)
            if match and verb == method:
                self._authorize(self.tokens[token], scope)
                return handler(match, query, headers, body)
        raise ApiError(404, {"type": "error", "error": {"message": "Resource not found"}})

    def _routes(self) -> list[tuple[str, str, str, Callable[..., Reply]]]:
        pr = r"/pullrequests/(\d+)"
        return [
            ("GET", r"", "repository", self._get_repo),
            ("GET", pr, "pullrequest", self._get_pr),
            ("GET", pr + r"/comments", "pullrequest", self._list_comments),
            ("POST", pr + r"/comments", "pullrequest:write", self._create_comment),
            ("PUT", pr + r"/comments/(\d+)", "pullrequest:write", self._update_comment),
            ("DELETE", pr + r"/comments/(\d+)", "pullrequest:write", self._delete_comment),
            ("GET", r"/commit/([0-9a-f]{7,40})", "repository", self._get_commit),
            ("GET", r"/refs/branches/(.+)", "repository", self._get_branch),
            ("GET", r"/src/([0-9a-f]{40})/(.+)", "repository", self._get_src),
            ("POST", r"/src", "repository:write", self._post_src),
            ("GET", r"/commits/(.+)", "repository", self._list_commits),
            ("POST", r"/commit/([0-9a-f]{40})/statuses/build", "repository:write", self._status),
            ("PUT", r"/commit/([0-9a-f]{40})/reports/([^/]+)", "repository:write", self._report),
            (
                "POST",
                r"/commit/([0-9a-f]{40})/reports/([^/]+)/annotations",
                "repository:write",
                self._annotate,
            ),
        ]

    def _authorize(self, granted: tuple[str, ...], scope: str) -> None:
        have = set(granted) | {s.removesuffix(":write") for s in granted}
        if scope not in have:
            raise ApiError(
                403,
                {
                    "type": "error",
                    "error": {
                        "message": "Your credentials lack one or more required privilege scopes.",
                        "detail": {"granted": list(granted), "required": [scope]},
                    },
                },
            )

    def _web(self, method: str, path: str) -> Reply:
        match = re.fullmatch(rf"/{re.escape(self.repo)}/raw/([0-9a-f]{{40}})/(.+)", path)
        data = self.file_at(match[1], match[2]) if match and method == "GET" else None
        if data is None:
            return 404, b"Not Found", {"Content-Type": "text/plain"}
        return 200, data, {"Content-Type": "image/png"}

    def _page(self, items: list[Any], query: dict[str, str], path: str) -> Reply:
        pagelen = max(1, min(int(query.get("pagelen", "10")), self.max_per_page))
        page = max(1, int(query.get("page", "1")))
        chunk = items[(page - 1) * pagelen : page * pagelen]
        answer: dict[str, Any] = {"pagelen": pagelen, "page": page, "values": chunk}
        answer["size"] = len(items)
        if page * pagelen < len(items):
            following = urlencode({**query, "page": page + 1, "pagelen": pagelen})
            answer["next"] = f"{self.base_url}{path}?{following}"
        return 200, answer, {}

    def _full(self, prefix: str) -> str:
        found = [sha for sha in self.commits if sha.startswith(prefix)]
        if len(found) != 1:
            raise ApiError(404, {"type": "error", "error": {"message": "Commit not found"}})
        return found[0]

    def _commit_json(self, sha: str) -> dict[str, Any]:
        parents = self.commits[sha]["parents"]
        return {"type": "commit", "hash": sha, "parents": [{"hash": p} for p in parents]}

    # -- handlers ------------------------------------------------------------------------

    def _get_repo(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        repo = {"full_name": self.repo, "mainbranch": {"name": self.default_branch}}
        return 200, repo, {}

    def _pr(self, number: str) -> PullRequest:
        pull = self.pull_requests.get(int(number))
        if pull is None:
            raise ApiError(404, {"type": "error", "error": {"message": "Pull request not found"}})
        return pull

    def _get_pr(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        pull = self._pr(match[1])
        return (
            200,
            {
                "id": pull.id,
                "source": {
                    "branch": {"name": pull.source_branch},
                    "commit": {"hash": pull.head[:12]},
                    "repository": {"full_name": self.repo},
                },
                "destination": {
                    "branch": {"name": pull.destination_branch},
                    "commit": {"hash": pull.base[:12]},
                    "repository": {"full_name": self.repo},
                },
            },
            {},
        )

    def _comment_json(self, number: int, comment: dict[str, Any]) -> dict[str, Any]:
        href = f"{self.web_url}/pull-requests/{number}#comment-{comment['id']}"
        return {
            "id": comment["id"],
            "content": {"raw": comment["body"], "markup": "markdown"},
            "user": {"uuid": comment["user"], "display_name": comment["user"]},
            "created_on": f"2026-12-01T00:00:{comment['clock']:06d}+00:00",
            "deleted": bool(comment.get("deleted")),
            "links": {"html": {"href": href}},
        }

    def _list_comments(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        number = self._pr(match[1]).id
        listed = [self._comment_json(number, c) for c in self.comments[number]]
        return self._page(listed, query, f"{CLOUD_PREFIX}/repositories/{self.repo}{match[0]}")

    def _raw_text(self, body: Any) -> str:
        text = body.get("content", {}).get("raw") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text or len(text) > COMMENT_LIMIT:
            raise ApiError(400, {"type": "error", "error": {"message": "Bad request"}})
        return text

    def _create_comment(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        number = self._pr(match[1]).id
        comment = self._new_comment(self._raw_text(body), self._user(headers))
        self.comments[number].append(comment)
        return 201, self._comment_json(number, comment), {}

    def _find(self, number: int, comment_id: str) -> dict[str, Any]:
        for comment in self.comments[number]:
            if comment["id"] == int(comment_id) and not comment.get("deleted"):
                return comment
        raise ApiError(404, {"type": "error", "error": {"message": "Comment not found"}})

    def _update_comment(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        number = self._pr(match[1]).id
        comment = self._find(number, match[2])
        comment["body"] = self._raw_text(body)
        return 200, self._comment_json(number, comment), {}

    def _delete_comment(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        number = self._pr(match[1]).id
        self._find(number, match[2])["deleted"] = True  # Cloud keeps it, marked deleted
        return 204, b"", {}

    def _get_commit(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        return 200, self._commit_json(self._full(match[1])), {}

    def _get_branch(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        name = match[1]
        if name not in self.branches:
            raise ApiError(404, {"type": "error", "error": {"message": "Branch not found"}})
        return 200, {"name": name, "target": self._commit_json(self.branches[name])}, {}

    def _get_src(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        data = None if match[2].endswith("/") else self.file_at(match[1], match[2])
        if data is not None:
            return 200, data, {"Content-Type": "application/octet-stream"}
        folder = match[2].rstrip("/") + "/"
        depth = int(query.get("max_depth", "1"))
        listed = [
            {"type": "commit_file", "path": path, "size": len(self.blobs[blob])}
            for path, blob in sorted(self.commits[match[1]]["files"].items())
            if path.startswith(folder) and path[len(folder) :].count("/") < depth
        ]
        if not listed:
            raise ApiError(404, {"type": "error", "error": {"message": "No such file"}})
        quoted = f"{CLOUD_PREFIX}/repositories/{self.repo}/src/{match[1]}/{quote(match[2])}"
        return self._page(listed, query, quoted)  # files only: nbci asks for nothing else

    def _post_src(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        parts = body if isinstance(body, list) else []
        fields = {name: data for name, _file, data in parts if _file is None}
        written = {name: data for name, _file, data in parts if _file is not None}
        deleted = {data.decode() for name, _file, data in parts if name == "files"}
        branch = fields.get("branch", b"").decode() or self.default_branch
        parents = [data.decode() for name, _f, data in parts if name == "parents"]
        if branch in self.branches:
            if parents and parents[0] != self.branches[branch]:
                raise ApiError(409, {"type": "error", "error": {"message": "Conflict"}})
            parent = self.branches[branch]
        else:
            parent = parents[0] if parents else self.branches[self.default_branch]
        message = fields.get("message", b"").decode()
        sha = self.store_commit(
            message, self._paths(parent, deleted - set(written), written), [parent]
        )
        self.branches[branch] = sha
        location = f"{self.base_url}{CLOUD_PREFIX}/repositories/{self.repo}/commit/{sha}"
        return 201, b"", {"Location": location}

    def _list_commits(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        start = self.branches.get(match[1]) or self._full(match[1])
        listed = [self._commit_json(c) for c in self._ancestors(start)]
        return self._page(listed, query, f"{CLOUD_PREFIX}/repositories/{self.repo}{match[0]}")

    def _status(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        if match[1] not in self.commits:
            raise ApiError(404, {"type": "error", "error": {"message": "Commit not found"}})
        if not isinstance(body, dict) or body.get("state") not in (
            "SUCCESSFUL",
            "FAILED",
            "INPROGRESS",
            "STOPPED",
        ):
            raise ApiError(400, {"type": "error", "error": {"message": "state is invalid"}})
        if not body.get("url") or not body.get("key"):
            raise ApiError(400, {"type": "error", "error": {"message": "url and key required"}})
        self.statuses.append({**body, "sha": match[1]})
        return 201, {"type": "build", **body}, {}

    def _report(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        if not isinstance(body, dict) or body.get("result") not in ("PASSED", "FAILED", "PENDING"):
            raise ApiError(400, {"type": "error", "error": {"message": "result is invalid"}})
        if len(body.get("data") or []) > 10 or len(body.get("details") or "") > 2000:
            raise ApiError(400, {"type": "error", "error": {"message": "report too big"}})
        key = (match[1], match[2])
        self.reports[key] = body
        self.annotations[key] = []  # a replaced report loses its annotations
        return 200, {"external_id": match[2], **body}, {}

    def _annotate(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        key = (match[1], match[2])
        if key not in self.reports:
            raise ApiError(404, {"type": "error", "error": {"message": "Report not found"}})
        if not isinstance(body, list) or len(body) > 100:
            raise ApiError(400, {"type": "error", "error": {"message": "at most 100"}})
        for item in body:
            if len(item.get("summary") or "") > 450 or not item.get("external_id"):
                raise ApiError(400, {"type": "error", "error": {"message": "bad annotation"}})
        self.annotations[key] += body
        return 200, body, {}


class BitbucketDataCenterStub(_Repository):
    """Bitbucket Data Center's REST 1.0 for one repository (`PROJECT/slug`)."""

    server_version = "Apache-Coyote/1.1"

    def __init__(
        self,
        project: str = "ML",
        slug: str = "notebooks",
        *,
        token: str = "BBDC-stubTokenDoNotLeakMzQ1Njc4OTAxMjM0NTY3",
        default_branch: str = "main",
    ) -> None:
        super().__init__(token=token, default_branch=default_branch, user="nbci-bot")
        self.project = project
        self.slug = slug
        self.tokens[token] = ("REPO_WRITE",)
        self.max_per_page = 25

    @property
    def repo_path(self) -> str:
        return f"/projects/{self.project}/repos/{self.slug}"

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        if not path.startswith("/rest/"):
            return self._web(method, path, query)
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            raise ApiError(401, _errors("Authentication failed.", "AuthenticationException"))
        for api in (DC_API, DC_INSIGHTS):
            prefix = api + self.repo_path
            if path == prefix or path.startswith(prefix + "/"):
                rest = api + "|" + path[len(prefix) :]
                break
        else:
            raise ApiError(404, _errors("Repository does not exist.", "NoSuchRepositoryException"))
        for verb, pattern, permission, handler in self._routes():
            match = re.fullmatch(pattern, rest)
            if match and verb == method:
                self._authorize(self.tokens[token], permission)
                return handler(match, query, headers, body)
        raise ApiError(404, _errors("Not found.", "NotFoundException"))

    def _routes(self) -> list[tuple[str, str, str, Callable[..., Reply]]]:
        api, insights = re.escape(DC_API + "|"), re.escape(DC_INSIGHTS + "|")
        pr = api + r"/pull-requests/(\d+)"
        report = insights + r"/commits/([0-9a-f]{40})/reports/([^/]+)"
        return [
            ("GET", api + r"/default-branch", "REPO_READ", self._default),
            ("GET", api + r"/branches", "REPO_READ", self._branches),
            ("GET", api + r"/raw/(.+)", "REPO_READ", self._raw),
            ("GET", api + r"/files/(.+)", "REPO_READ", self._files),
            ("PUT", api + r"/browse/(.+)", "REPO_WRITE", self._browse_put),
            ("GET", api + r"/commits", "REPO_READ", self._commits),
            ("POST", api + r"/commits/([0-9a-f]{40})/builds", "REPO_READ", self._build),
            ("GET", pr, "REPO_READ", self._get_pr),
            ("GET", pr + r"/activities", "REPO_READ", self._activities),
            ("POST", pr + r"/comments", "REPO_READ", self._create_comment),
            ("GET", pr + r"/comments/(\d+)", "REPO_READ", self._get_comment),
            ("PUT", pr + r"/comments/(\d+)", "REPO_READ", self._update_comment),
            ("DELETE", pr + r"/comments/(\d+)", "REPO_READ", self._delete_comment),
            ("PUT", report, "REPO_READ", self._report),
            ("DELETE", report + r"/annotations", "REPO_READ", self._clear_annotations),
            ("POST", report + r"/annotations", "REPO_READ", self._annotate),
        ]

    def _authorize(self, granted: tuple[str, ...], permission: str) -> None:
        have = set(granted) | ({"REPO_READ"} if "REPO_WRITE" in granted else set())
        if permission not in have:
            raise ApiError(
                401,
                _errors(
                    "You are not permitted to access this resource",
                    "com.atlassian.bitbucket.AuthorisationException",
                ),
            )

    def _web(self, method: str, path: str, query: dict[str, str]) -> Reply:
        match = re.fullmatch(rf"{re.escape(self.repo_path)}/raw/(.+)", path)
        data = self.file_at(query.get("at", ""), match[1]) if match and method == "GET" else None
        if data is None:
            return 404, b"Not Found", {"Content-Type": "text/plain"}
        return 200, data, {"Content-Type": "image/png"}

    def _page(self, items: list[Any], query: dict[str, str]) -> Reply:
        limit = max(1, min(int(query.get("limit", "25")), self.max_per_page))
        start = max(0, int(query.get("start", "0")))
        chunk = items[start : start + limit]
        last = start + limit >= len(items)
        answer: dict[str, Any] = {"size": len(chunk), "limit": limit, "start": start}
        answer.update({"isLastPage": last, "values": chunk})
        if not last:
            answer["nextPageStart"] = start + limit
        return 200, answer, {}

    def _resolve(self, ref: str) -> str:
        sha = self.branches.get(ref.removeprefix("refs/heads/"), ref)
        if sha not in self.commits:
            raise ApiError(404, _errors(f"Commit '{ref}' does not exist.", "NoSuchCommitException"))
        return sha

    # -- handlers ------------------------------------------------------------------------

    def _default(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        name = self.default_branch
        head = self.branches[name]
        return 200, {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": head}, {}

    def _branches(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        text = query.get("filterText", "")
        found = [
            {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": sha}
            for name, sha in sorted(self.branches.items())
            if text in name
        ]
        return self._page(found, query)

    def _raw(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        data = self.file_at(self._resolve(query.get("at") or self.default_branch), match[1])
        if data is None:
            raise ApiError(
                404, _errors(f'The path "{match[1]}" does not exist', "NoSuchPathException")
            )
        return 200, data, {"Content-Type": "text/plain"}

    def _files(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        folder = match[1].rstrip("/") + "/"
        files = self.commits[self._resolve(query.get("at") or self.default_branch)]["files"]
        listed = [p.removeprefix(folder) for p in sorted(files) if p.startswith(folder)]
        if not listed:
            raise ApiError(
                404, _errors(f'The path "{match[1]}" does not exist', "NoSuchPathException")
            )
        return self._page(listed, query)

    def _browse_put(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        parts = body if isinstance(body, list) else []
        fields = {name: data.decode() for name, _file, data in parts if _file is None}
        content = next((data for name, _f, data in parts if name == "content"), None)
        branch, path = fields.get("branch", ""), match[1]
        if content is None:
            raise ApiError(400, _errors("content is required", "ArgumentValidationException"))
        if branch not in self.branches:
            source = fields.get("sourceBranch")
            if source not in self.branches:
                raise ApiError(400, _errors("branch does not exist", "NoSuchBranchException"))
            self.branches[branch] = self.branches[source]
        head = self.branches[branch]
        current = self.commits[head]["files"].get(path)
        since = fields.get("sourceCommitId")
        if since is None and current is not None:
            raise ApiError(409, _errors("The file already exists", "FileAlreadyExistsException"))
        if (
            since is not None
            and self.commits.get(since, {"files": {}})["files"].get(path) != current
        ):
            raise ApiError(409, _errors("The file has changed", "FileContentOutOfDateException"))
        sha = self.store_commit(
            fields.get("message", ""), self._paths(head, set(), {path: content}), [head]
        )
        self.branches[branch] = sha
        return 200, {"id": sha, "displayId": sha[:11], "parents": [{"id": head}]}, {}

    def _commits(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        start = self._resolve(query.get("until") or self.default_branch)
        listed = [
            {"id": c, "parents": [{"id": p} for p in self.commits[c]["parents"]]}
            for c in self._ancestors(start)
        ]
        return self._page(listed, query)

    def _build(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        if not isinstance(body, dict) or body.get("state") not in (
            "SUCCESSFUL",
            "FAILED",
            "INPROGRESS",
        ):
            raise ApiError(400, _errors("state is invalid", "ArgumentValidationException"))
        if not body.get("url") or not body.get("key"):
            raise ApiError(400, _errors("url and key are required", "ArgumentValidationException"))
        self.statuses.append({**body, "sha": match[1]})
        return 204, b"", {}

    def _pr(self, number: str) -> PullRequest:
        pull = self.pull_requests.get(int(number))
        if pull is None:
            raise ApiError(
                404, _errors("Pull request does not exist.", "NoSuchPullRequestException")
            )
        return pull

    def _get_pr(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        pull = self._pr(match[1])
        return (
            200,
            {
                "id": pull.id,
                "version": 0,
                "fromRef": {"id": f"refs/heads/{pull.source_branch}", "latestCommit": pull.head},
                "toRef": {
                    "id": f"refs/heads/{pull.destination_branch}",
                    "displayId": pull.destination_branch,
                    "latestCommit": pull.base,
                },
            },
            {},
        )

    def _comment_json(self, comment: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": comment["id"],
            "version": comment.get("version", 0),
            "text": comment["body"],
            "author": {"name": comment["user"], "slug": comment["user"]},
            "createdDate": 1_764_547_200_000 + comment["clock"],
        }

    def _activities(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        number = self._pr(match[1]).id
        activities = [
            {"id": c["id"] + 1, "action": "COMMENTED", "commentAction": "ADDED",
             "comment": self._comment_json(c)}
            for c in self.pr_comments(number)
        ]  # fmt: skip
        activities.reverse()  # newest first, as Data Center lists them
        return self._page(activities, query)

    def _text(self, body: Any) -> str:
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text or len(text) > COMMENT_LIMIT:
            raise ApiError(
                400, _errors("Please enter a non-empty value less than 32768 characters", None)
            )
        return text

    def _create_comment(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        number = self._pr(match[1]).id
        comment = self._new_comment(self._text(body), self._user(headers))
        self.comments[number].append(comment)
        return 201, self._comment_json(comment), {}

    def _find(self, number: int, comment_id: str) -> dict[str, Any]:
        for comment in self.pr_comments(number):
            if comment["id"] == int(comment_id):
                return comment
        raise ApiError(404, _errors("Comment does not exist.", "NoSuchCommentException"))

    def _get_comment(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        return 200, self._comment_json(self._find(self._pr(match[1]).id, match[2])), {}

    def _update_comment(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        comment = self._find(self._pr(match[1]).id, match[2])
        if body.get("version") != comment.get("version", 0):
            raise ApiError(409, _errors("The comment was modified", "CommentOutOfDateException"))
        comment["body"] = self._text(body)
        comment["version"] = comment.get("version", 0) + 1
        return 200, self._comment_json(comment), {}

    def _delete_comment(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        number = self._pr(match[1]).id
        comment = self._find(number, match[2])
        if query.get("version") != str(comment.get("version", 0)):
            raise ApiError(409, _errors("The comment was modified", "CommentOutOfDateException"))
        self.comments[number].remove(comment)
        return 204, b"", {}

    def _report(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        if not isinstance(body, dict) or body.get("result") not in ("PASS", "FAIL", None):
            raise ApiError(400, _errors("result is invalid", "ArgumentValidationException"))
        if not body.get("title") or len(body.get("data") or []) > 6:
            raise ApiError(
                400, _errors("title required; at most 6 data", "ArgumentValidationException")
            )
        key = (match[1], match[2])
        self.reports[key] = body
        self.annotations.setdefault(key, [])  # kept until deleted
        return 200, {"key": match[2], **body}, {}

    def _clear_annotations(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        self.annotations[(match[1], match[2])] = []
        return 204, b"", {}

    def _annotate(
        self, match: re.Match[str], query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        key = (match[1], match[2])
        if key not in self.reports:
            raise ApiError(404, _errors("Report does not exist.", "NoSuchReportException"))
        items = body.get("annotations") if isinstance(body, dict) else None
        if not isinstance(items, list) or len(self.annotations[key]) + len(items) > 1000:
            raise ApiError(400, _errors("at most 1000 annotations", "ArgumentValidationException"))
        for item in items:
            if item.get("severity") not in ("LOW", "MEDIUM", "HIGH") or not item.get("message"):
                raise ApiError(400, _errors("bad annotation", "ArgumentValidationException"))
        self.annotations[key] += items
        return 204, b"", {}


def _errors(message: str, exception: str | None) -> dict[str, Any]:
    return {"errors": [{"context": None, "message": message, "exceptionName": exception}]}


def _multipart(content_type: str, raw: bytes) -> list[tuple[str, str | None, bytes]]:
    """The parts of a multipart/form-data body: (field name, file name or None, bytes)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        return []
    parts = []
    for chunk in raw.split(b"--" + boundary[1].encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.decode("utf-8", "replace")
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name:
            parts.append((name[1], filename[1] if filename else None, data.removesuffix(b"\r\n")))
    return parts
