"""A stand-in for the GitHub REST API, served over real HTTP on 127.0.0.1.

It answers the endpoints `nbci publish` uses with the shapes, status codes and
headers GitHub documents (docs.github.com/rest), keeps state (comments, git
objects with real git SHA-1s, refs, statuses, check runs), checks the token and
its permissions, and records every request. Tests inject faults: N failures
with a status, rate limits (`x-ratelimit-remaining: 0` + reset, or
`retry-after`), connection resets.

The API is served under `/api/v3` like GitHub Enterprise Server
(`GITHUB_API_URL=https://HOST/api/v3`), GraphQL at `/api/graphql`
(`github_graphql_stub`: `createCommitOnBranch`), the web side (`/{owner}/{repo}/raw/
{sha}/{path}`) at the root, like `GITHUB_SERVER_URL`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from github_graphql_stub import GRAPHQL_PATH
from github_graphql_stub import answer as graphql_answer
from http_stub import Answer, Recorded, Reply, StandIn, git_blob_sha, json_bytes

API_PREFIX = "/api/v3"
DOCS = "https://docs.github.com/rest"
COMMENT_LIMIT = 65_536
CHECK_TEXT_LIMIT = 65_535
STATUS_DESCRIPTION_LIMIT = 140
CONTENTS_INLINE_LIMIT = 1024 * 1024
LEVELS = {"none": 0, "read": 1, "write": 2}
ALL_WRITE = {"contents": "write", "pull-requests": "write", "statuses": "write", "checks": "write"}
CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success", "skipped")
READ_ONLY = {"contents": "read", "pull-requests": "read", "statuses": "read", "checks": "read"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {
            "message": message,
            "documentation_url": DOCS,
            "status": str(status),
            **extra,
        }
        self.headers: dict[str, str] = {}


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    times: int
    respond: Callable[[], tuple[int, dict[str, str], dict[str, Any] | None]]
    """Status, headers, JSON body; a None body resets the connection instead."""
    after: bool = False
    """Carry the request out first, then answer with the fault (a lost answer)."""
    delay: float = 0.0
    """Seconds to wait before answering (longer than the client's timeout: a stall)."""

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method in (self.method, "*") and bool(self.pattern.search(path))


@dataclass
class Pull:
    number: int
    head_sha: str
    head_ref: str
    base_sha: str
    base_ref: str
    head_repo: str
    merge_sha: str


@dataclass
class _Tree:
    """A mutable tree while it is being built: name -> (mode, type, sha) or subtree."""

    entries: dict[str, tuple[str, str, str] | _Tree] = field(default_factory=dict)

    def folder(self, *names: str) -> _Tree:
        """The subtree at `names` (a test that rewrites a branch by hand walks down to it)."""
        node = self
        for name in names:
            child = node.entries[name]
            assert isinstance(child, _Tree), f"{name} is not a folder"
            node = child
        return node


class GitHubStub(StandIn):
    """State and behaviour; `serve()` puts it on a free port of 127.0.0.1."""

    server_version = "GitHub.com"

    def __init__(
        self,
        repo: str = "octo/notebooks",
        *,
        token: str = "ghs_stubTokenDoNotLeak0123456789abcdef",
        default_branch: str = "main",
        permissions: dict[str, str] | None = None,
        private: bool = False,
    ) -> None:
        super().__init__()
        self.repo = repo
        self.token = token
        self.default_branch = default_branch
        self.permissions = dict(ALL_WRITE if permissions is None else permissions)
        self.private = private
        self.faults: list[Fault] = []
        self.interleaved: list[tuple[str, re.Pattern[str], Callable[[], object]]] = []
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[
            str, list[tuple[str, str, str, str]]
        ] = {}  # sha -> (mode, type, sha, name)
        self.commits: dict[str, dict[str, Any]] = {}
        self.refs: dict[str, str] = {}
        self.pulls: dict[int, Pull] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.check_runs: list[dict[str, Any]] = []
        self.bot_login = "github-actions[bot]"
        self.tree_listing_limit = 100_000
        """GitHub cuts a recursive tree listing at 100,000 entries (`truncated: true`)."""
        self._ids = iter(range(1_000_001, 10**9))
        self._clock = 0
        self._lock = threading.RLock()
        self.stalls = [0, 0]
        """Stalled requests: how many began, how many have been carried out."""
        self._stall_ended = threading.Condition()

    # -- server ----------------------------------------------------------------

    def response_headers(self, extra: dict[str, str]) -> dict[str, str]:
        """A JSON answer carries GitHub's media type, a request id and the rate limit."""
        if extra.get("content-type"):
            return extra
        return {
            "content-type": "application/json; charset=utf-8",
            "x-github-media-type": "github.v3; format=json",
            "x-github-request-id": f"STUB:{len(self.requests)}",
            "x-ratelimit-limit": "1000",
            "x-ratelimit-remaining": "999",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-used": "1",
            "x-ratelimit-resource": "core",
            **extra,
        }

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def server_url(self) -> str:
        return self.base_url

    # -- test set-up -------------------------------------------------------------

    def add_history(self, count: int, *, branch: str | None = None) -> list[str]:
        """`count` linear commits on `branch` (the default branch), oldest first."""
        branch = branch or self.default_branch
        with self._lock:
            parent = self.refs.get(f"refs/heads/{branch}")
            shas = []
            for i in range(count):
                blob = self._store_blob(f"version {len(self.commits)} {i}\n".encode())
                tree = self._write_tree(_Tree({"README.md": ("100644", "blob", blob)}))
                parent = self._store_commit(
                    f"commit {i} on {branch}", tree, [parent] if parent else []
                )
                shas.append(parent)
            self.refs[f"refs/heads/{branch}"] = parent or ""
            return shas

    def put_file(self, branch: str, path: str, data: bytes) -> str:
        """`path` written on `branch` in one commit, as another tool (or an earlier nbci)
        would; returns the commit."""
        return self.put_files(branch, {path: data}, message=f"put {path}")

    def put_files(self, branch: str, files: dict[str, bytes], *, message: str = "put") -> str:
        """Every file of `files` (path -> content) written on `branch` in one commit."""
        with self._lock:
            tip = self.refs.get(f"refs/heads/{branch}")
            tree = self._load_tree(self.commits[tip]["tree"]) if tip else _Tree()
            for path, data in files.items():
                *folders, name = path.split("/")
                here = tree
                for folder in folders:
                    entry = here.entries.setdefault(folder, _Tree())
                    assert isinstance(entry, _Tree), f"{folder} is a file"
                    here = entry
                here.entries[name] = ("100644", "blob", self._store_blob(data))
            commit = self._store_commit(message, self._write_tree(tree), [tip] if tip else [])
            self.refs[f"refs/heads/{branch}"] = commit
            return commit

    def add_merged_branch(self, count: int, *, main_commits: int = 1) -> tuple[list[str], str]:
        """A feature branch of `count` commits off the default branch, `main_commits` more
        on the default branch meanwhile, then the merge commit (first parent: the default
        branch). Returns the feature's commits (oldest first) and the merge commit."""
        with self._lock:
            fork = self.refs[f"refs/heads/{self.default_branch}"]
            feature, parent = [], fork
            for i in range(count):
                blob = self._store_blob(f"feature {len(self.commits)} {i}\n".encode())
                tree = self._write_tree(_Tree({"README.md": ("100644", "blob", blob)}))
                parent = self._store_commit(f"feature commit {i}", tree, [parent])
                feature.append(parent)
            main = self.add_history(main_commits)[-1] if main_commits else fork
            merge = self._store_commit(
                "Merge branch 'feature'", self.commits[feature[-1]]["tree"], [main, feature[-1]]
            )
            self.refs[f"refs/heads/{self.default_branch}"] = merge
            return feature, merge

    def add_pull(
        self,
        number: int,
        *,
        base_sha: str,
        head_sha: str | None = None,
        head_ref: str = "feature",
        head_repo: str | None = None,
    ) -> Pull:
        """A pull request from `head_ref` (one commit on `base_sha`) into the default branch."""
        with self._lock:
            if head_sha is None:
                tree = self.commits[base_sha]["tree"]
                head_sha = self._store_commit(f"work on #{number}", tree, [base_sha])
            merge_sha = self._store_commit(
                f"Merge {head_sha} into {base_sha}",
                self.commits[head_sha]["tree"],
                [base_sha, head_sha],
            )
            pull = Pull(
                number,
                head_sha,
                head_ref,
                base_sha,
                self.default_branch,
                head_repo or self.repo,
                merge_sha,
            )
            self.pulls[number] = pull
            self.comments.setdefault(number, [])
            return pull

    def add_comment(
        self, number: int, body: str, *, user: str = "someone", bot: bool = False
    ) -> dict[str, Any]:
        with self._lock:
            comment = self._new_comment(number, body, user, "Bot" if bot else "User")
            self.comments.setdefault(number, []).append(comment)
            return comment

    def fail(self, method: str, path: str, status: int = 502, *, times: int = 1) -> None:
        """The next `times` requests matching `method` and the `path` regex get `status`."""
        message = {500: "Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(
            status, "Error"
        )
        self._add_fault(method, path, times, lambda: (status, {}, {"message": message}))

    def fail_after_doing(
        self, method: str, path: str, status: int = 502, *, times: int = 1
    ) -> None:
        """Like `fail`, but the request takes effect first: the client only loses the answer."""
        self._add_fault(method, path, times, lambda: (status, {}, {"message": "Bad Gateway"}))
        self.faults[-1].after = True

    def move_branch_before(self, method: str, path: str, branch: str) -> None:
        """Just before the next request matching `method` and `path` is answered, another
        writer commits to `branch` (a concurrent publish)."""
        marker = f"concurrent/{len(self.interleaved)}.txt"
        self.interleaved.append(
            (method, re.compile(path), lambda: self.put_file(branch, marker, b"another writer\n"))
        )

    def stall(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` matching requests get their answer only after `seconds`."""
        self._add_fault(method, path, times, lambda: (0, {}, None))
        self.faults[-1].delay = seconds

    def wait_for_stalls(self, timeout: float = 30.0) -> None:
        """Return once every stalled request has been carried out: after a client gave up on
        one, the server still does the work (a stall's whole delay at most)."""
        with self._stall_ended:
            if not self._stall_ended.wait_for(lambda: self.stalls[0] == self.stalls[1], timeout):
                raise AssertionError(f"a stalled request is still unanswered after {timeout} s")

    def reset_connection(self, method: str, path: str, *, times: int = 1) -> None:
        """The next `times` matching requests get their connection closed without an answer."""
        self._add_fault(method, path, times, lambda: (0, {}, None))

    def rate_limit(
        self,
        method: str,
        path: str,
        *,
        reset_in: float | None = None,
        retry_after: int | None = None,
        status: int = 403,
        times: int = 1,
    ) -> None:
        """A primary rate limit (`reset_in` seconds ahead) or a secondary one (`retry_after`)."""

        def respond() -> tuple[int, dict[str, str], dict[str, Any]]:
            headers = {"x-ratelimit-limit": "1000", "x-ratelimit-used": "1000"}
            headers["x-ratelimit-resource"] = "core"
            if retry_after is not None:
                headers["retry-after"] = str(retry_after)
                headers["x-ratelimit-remaining"] = "412"
                message = (
                    "You have exceeded a secondary rate limit. Please wait a few minutes "
                    "before you try again."
                )
            else:
                headers["x-ratelimit-remaining"] = "0"
                message = "API rate limit exceeded for installation ID 4242."
            reset = time.time() + (reset_in if reset_in is not None else 3600)
            headers["x-ratelimit-reset"] = str(int(reset + 0.999))
            return status, headers, {"message": message, "documentation_url": DOCS}

        self._add_fault(method, path, times, respond)

    def graphql_rate_limit(self, kind: str, *, reset_in: float = 3600, times: int = 1) -> None:
        """The next `times` GraphQL requests exceed the GraphQL rate limit: HTTP 200 with an
        error of type `kind` (GitHub has been seen sending `RATE_LIMITED` and `RATE_LIMIT`)."""

        def respond() -> tuple[int, dict[str, str], dict[str, Any]]:
            headers = {"x-ratelimit-limit": "5000", "x-ratelimit-used": "5000"}
            headers["x-ratelimit-remaining"] = "0"
            headers["x-ratelimit-resource"] = "graphql"
            headers["x-ratelimit-reset"] = str(int(time.time() + reset_in + 0.999))
            message = "API rate limit already exceeded for user ID 4242."
            error = {"type": kind, "code": "graphql_rate_limit", "message": message}
            return 200, headers, {"errors": [error]}

        self._add_fault("POST", GRAPHQL_PATH + "$", times, respond)

    def _add_fault(
        self,
        method: str,
        path: str,
        times: int,
        respond: Callable[[], tuple[int, dict[str, str], dict[str, Any] | None]],
    ) -> None:
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path), times, respond))

    # -- inspection --------------------------------------------------------------

    def graphql_commits(self) -> list[dict[str, Any]]:
        """The `createCommitOnBranch` inputs sent, in order (answered or not)."""
        return [
            r.body["variables"]["input"]
            for r in self.calls("POST", r"^/api/graphql$")
            if isinstance(r.body, dict) and "createCommitOnBranch" in str(r.body.get("query"))
        ]

    def commit_requests(self) -> int:
        """Requests that asked for a commit: REST `POST /git/commits` and GraphQL mutations."""
        return len(self.calls("POST", r"/git/commits$")) + len(self.graphql_commits())

    def writes(self) -> list[Recorded]:
        return [r for r in list(self.requests) if r.method != "GET"]

    def ref_sha(self, branch: str) -> str | None:
        return self.refs.get(f"refs/heads/{branch}")

    def file_at(self, commitish: str, path: str) -> bytes | None:
        """The bytes of `path` in a commit (or branch), None when absent."""
        with self._lock:
            sha = self.refs.get(f"refs/heads/{commitish}", commitish)
            commit = self.commits.get(sha)
            if commit is None:
                return None
            entry = self._lookup(commit["tree"], path)
            if entry is None or entry[1] != "blob":
                return None
            return self.blobs[entry[2]]

    def paths_at(self, commitish: str) -> dict[str, str]:
        """Every file path of a commit (or branch) -> its blob sha."""
        sha = self.refs.get(f"refs/heads/{commitish}", commitish)
        return {
            path: blob
            for path, _mode, kind, blob in self._walk(self.commits[sha]["tree"])
            if kind == "blob"
        }

    def pr_comments(self, number: int) -> list[dict[str, Any]]:
        return list(self.comments.get(number, []))

    # -- request handling ----------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        """(status, headers, body bytes) — or (0, {}, None) to reset the connection."""
        with self._lock:
            fault = next((f for f in self.faults if f.matches(method, _api_path(target))), None)
            if fault is not None and fault.delay:
                fault.times -= 1
        if fault is not None and fault.delay:
            with self._stall_ended:
                self.stalls[0] += 1
            try:
                time.sleep(fault.delay)  # outside the lock: other requests go on
                return self._handle(method, target, headers, raw, skip_faults=True)
            finally:
                with self._stall_ended:
                    self.stalls[1] += 1
                    self._stall_ended.notify_all()
        return self._handle(method, target, headers, raw)

    def _handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        raw: bytes,
        *,
        skip_faults: bool = False,
    ) -> Answer:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query))
        path = unquote(split.path)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = Recorded(method, path.removeprefix(API_PREFIX), query, headers, body)
        with self._lock:
            self.requests.append(record)
            for hook in [
                h for h in self.interleaved if h[0] == method and h[1].search(record.path)
            ]:
                self.interleaved.remove(hook)
                hook[2]()
            fault = next((f for f in self.faults if f.matches(method, record.path)), None)
            if fault is not None and not skip_faults:
                fault.times -= 1
                if fault.after:
                    self._answer(method, record, split.path, query, headers, body)
                status, extra, payload = fault.respond()
                record.status = status
                if payload is None:
                    return 0, {}, None
                return status, extra, json_bytes(payload)
            return self._answer(method, record, split.path, query, headers, body)

    def _answer(
        self,
        method: str,
        record: Recorded,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            try:
                if path == GRAPHQL_PATH and method == "POST":
                    self._authenticate(headers)
                    status, payload = graphql_answer(self, body)
                    data = json_bytes(payload)
                    extra: dict[str, str] = {}
                elif path.startswith(API_PREFIX + "/"):
                    status, payload, extra = self._api(method, record.path, query, headers, body)
                    data = b"" if payload is None else json_bytes(payload)
                else:
                    status, data, extra = self._web(method, path)
            except ApiError as exc:
                status, data, extra = exc.status, json_bytes(exc.body), exc.headers
            record.status = status
            return status, extra, data

    def _web(self, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
        # `raw` serves the file, `blob` stands for GitHub's page showing it (a notebook rendered).
        match = re.fullmatch(r"/([^/]+/[^/]+)/(?:raw|blob)/([0-9a-f]{40})/(.+)", path)
        if method != "GET" or not match or match[1] != self.repo:
            return 404, b"Not Found", {"content-type": "text/plain"}
        data = self.file_at(match[2], unquote(match[3]))
        if data is None:
            return 404, b"Not Found", {"content-type": "text/plain"}
        return 200, data, {"content-type": "application/octet-stream"}

    def _api(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        self._authenticate(headers)
        prefix = f"/repos/{self.repo}"
        if path == prefix and method == "GET":
            return 200, self._repo_json(), {}
        if not path.startswith(prefix + "/"):
            raise ApiError(404, "Not Found")
        rest = path[len(prefix) :]
        for verb, pattern, permission, handler in self._routes():
            match = re.fullmatch(pattern, rest)
            if match and verb == method:
                self._authorize(*permission)
                return handler(match, query, body)
        raise ApiError(404, "Not Found")

    def _routes(self) -> list[tuple[str, str, tuple[str, str], Callable[..., Reply]]]:
        return [
            ("GET", r"/pulls/(\d+)", ("pull-requests", "read"), self._get_pull),
            ("GET", r"/issues/(\d+)/comments", ("pull-requests", "read"), self._list_comments),
            ("POST", r"/issues/(\d+)/comments", ("pull-requests", "write"), self._create_comment),
            ("PATCH", r"/issues/comments/(\d+)", ("pull-requests", "write"), self._edit_comment),
            ("DELETE", r"/issues/comments/(\d+)", ("pull-requests", "write"), self._delete_comment),
            ("GET", r"/git/ref/(.+)", ("contents", "read"), self._get_ref),
            ("POST", r"/git/refs", ("contents", "write"), self._create_ref),
            ("PATCH", r"/git/refs/(.+)", ("contents", "write"), self._update_ref),
            ("POST", r"/git/blobs", ("contents", "write"), self._create_blob),
            ("GET", r"/git/blobs/([0-9a-f]{40})", ("contents", "read"), self._get_blob),
            ("POST", r"/git/trees", ("contents", "write"), self._create_tree),
            ("GET", r"/git/trees/([^/]+)", ("contents", "read"), self._get_tree),
            ("POST", r"/git/commits", ("contents", "write"), self._create_commit),
            ("GET", r"/git/commits/([0-9a-f]{40})", ("contents", "read"), self._get_commit),
            ("GET", r"/contents/(.*)", ("contents", "read"), self._get_contents),
            ("GET", r"/commits", ("contents", "read"), self._list_commits),
            ("POST", r"/statuses/([0-9a-f]{40})", ("statuses", "write"), self._create_status),
            ("POST", r"/check-runs", ("checks", "write"), self._create_check_run),
            ("PATCH", r"/check-runs/(\d+)", ("checks", "write"), self._update_check_run),
            (
                "GET",
                r"/commits/([0-9a-f]{40})/check-runs",
                ("checks", "read"),
                self._list_check_runs,
            ),
        ]

    def _authenticate(self, headers: dict[str, str]) -> None:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if not value:
            raise ApiError(401, "Requires authentication")
        if scheme.lower() not in ("token", "bearer") or token != self.token:
            raise ApiError(401, "Bad credentials")

    def _authorize(self, scope: str, level: str) -> None:
        if LEVELS[self.permissions.get(scope, "none")] < LEVELS[level]:
            raise ApiError(403, "Resource not accessible by integration")

    # -- repository and pulls --------------------------------------------------------

    def _url(self, rest: str = "") -> str:
        return f"{self.api_url}/repos/{self.repo}{rest}"

    def _repo_json(self) -> dict[str, Any]:
        owner, name = self.repo.split("/")
        return {
            "id": 4242,
            "node_id": "R_4242",
            "name": name,
            "full_name": self.repo,
            "private": self.private,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "html_url": f"{self.server_url}/{self.repo}",
            "url": self._url(),
            "default_branch": self.default_branch,
        }

    def _get_pull(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        pull = self.pulls.get(int(match[1]))
        if pull is None:
            raise ApiError(404, "Not Found")
        n = pull.number

        def side(ref: str, sha: str, repo: str) -> dict[str, Any]:
            owner = repo.split("/")[0]
            return {
                "label": f"{owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "repo": {
                    "full_name": repo,
                    "name": repo.split("/")[1],
                    "url": f"{self.api_url}/repos/{repo}",
                },
                "user": {"login": owner},
            }

        return (
            200,
            {
                "url": self._url(f"/pulls/{n}"),
                "id": 9000 + n,
                "number": n,
                "state": "open",
                "title": f"PR {n}",
                "html_url": f"{self.server_url}/{self.repo}/pull/{n}",
                "issue_url": self._url(f"/issues/{n}"),
                "comments_url": self._url(f"/issues/{n}/comments"),
                "statuses_url": self._url(f"/statuses/{pull.head_sha}"),
                "head": side(pull.head_ref, pull.head_sha, pull.head_repo),
                "base": side(pull.base_ref, pull.base_sha, self.repo),
                "merge_commit_sha": pull.merge_sha,
                "user": {"login": "contributor"},
            },
            {},
        )

    # -- comments ------------------------------------------------------------------

    def _new_comment(self, number: int, body: str, login: str, kind: str) -> dict[str, Any]:
        comment_id = next(self._ids)
        self._clock += 1
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + self._clock))
        return {
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "url": self._url(f"/issues/comments/{comment_id}"),
            "html_url": f"{self.server_url}/{self.repo}/pull/{number}#issuecomment-{comment_id}",
            "issue_url": self._url(f"/issues/{number}"),
            "body": body,
            "user": {"login": login, "id": 41898282 if kind == "Bot" else 7, "type": kind},
            "created_at": stamp,
            "updated_at": stamp,
            "author_association": "NONE",
        }

    def _find_comment(self, comment_id: int) -> tuple[int, dict[str, Any]]:
        for number, comments in self.comments.items():
            for comment in comments:
                if comment["id"] == comment_id:
                    return number, comment
        raise ApiError(404, "Not Found")

    def _check_body(self, body: Any) -> str:
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise ApiError(422, 'Invalid request.\n\n"body" wasn\'t supplied.')
        if len(text) > COMMENT_LIMIT:
            raise ApiError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "IssueComment",
                        "code": "custom",
                        "field": "body",
                        "message": f"Body is too long (maximum is {COMMENT_LIMIT} characters)",
                    }
                ],
            )
        return text

    def _list_comments(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        number = int(match[1])
        if number not in self.pulls:
            raise ApiError(404, "Not Found")
        items = self.comments.get(number, [])
        return self._paginate(items, query, self._url(f"/issues/{number}/comments"))

    def _paginate(self, items: list[Any], query: dict[str, str], url: str) -> Reply:
        per_page = max(1, min(int(query.get("per_page", 30)), 100))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        extra = {k: v for k, v in query.items() if k not in ("page", "per_page")}

        def link(n: int, rel: str) -> str:
            params = "&".join(
                f"{k}={quote(str(v))}"
                for k, v in {**extra, "per_page": per_page, "page": n}.items()
            )
            return f'<{url}?{params}>; rel="{rel}"'

        links = []
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        return 200, chunk, ({"link": ", ".join(links)} if links else {})

    def _create_comment(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        number = int(match[1])
        if number not in self.pulls:
            raise ApiError(404, "Not Found")
        comment = self._new_comment(number, self._check_body(body), self.bot_login, "Bot")
        self.comments[number].append(comment)
        return 201, comment, {"location": comment["url"]}

    def _edit_comment(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        _number, comment = self._find_comment(int(match[1]))
        if comment["user"]["login"] != self.bot_login:
            raise ApiError(403, "Resource not accessible by integration")
        comment["body"] = self._check_body(body)
        self._clock += 1
        comment["updated_at"] = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + self._clock)
        )
        return 200, comment, {}

    def _delete_comment(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        number, comment = self._find_comment(int(match[1]))
        self.comments[number].remove(comment)
        return 204, None, {}

    # -- git database ----------------------------------------------------------------

    def _store_blob(self, data: bytes) -> str:
        sha = git_blob_sha(data)
        self.blobs[sha] = data
        return sha

    def _write_tree(self, tree: _Tree) -> str:
        rows = []
        for name, entry in tree.entries.items():
            if isinstance(entry, _Tree):
                if not entry.entries:
                    continue
                rows.append(("040000", "tree", self._write_tree(entry), name))
            else:
                rows.append((entry[0], entry[1], entry[2], name))
        rows.sort(key=lambda r: r[3] + ("/" if r[1] == "tree" else ""))
        raw = b"".join(
            f"{mode.lstrip('0')} {name}".encode() + b"\0" + bytes.fromhex(sha)
            for mode, _kind, sha, name in rows
        )
        sha = hashlib.sha1(b"tree %d\0" % len(raw) + raw).hexdigest()
        self.trees[sha] = rows
        return sha

    def _load_tree(self, sha: str) -> _Tree:
        tree = _Tree()
        for mode, kind, entry_sha, name in self.trees[sha]:
            tree.entries[name] = (
                self._load_tree(entry_sha) if kind == "tree" else (mode, kind, entry_sha)
            )
        return tree

    def _store_commit(self, message: str, tree: str, parents: list[str]) -> str:
        self._clock += 1
        date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + self._clock))
        who = {"name": "GitHub Actions", "email": "actions@github.com", "date": date}
        raw = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents)
        stamp = f"A <a> {1_700_000_000 + self._clock} +0000"
        raw += f"author {stamp}\ncommitter {stamp}\n\n{message}"
        data = raw.encode()
        sha = hashlib.sha1(b"commit %d\0" % len(data) + data).hexdigest()
        self.commits[sha] = {
            "tree": tree,
            "parents": parents,
            "message": message,
            "author": who,
            "committer": who,
        }
        return sha

    def _reachable(self, sha: str) -> list[str]:
        """Every ancestor of `sha` (itself included), newest first, as `git log` lists them."""
        seen: set[str] = set()
        todo = [sha]
        while todo and len(seen) < 10_000:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.commits[current]["parents"])
        return sorted(seen, key=lambda c: self.commits[c]["committer"]["date"], reverse=True)

    def _commit_json(self, sha: str) -> dict[str, Any]:
        commit = self.commits[sha]
        return {
            "sha": sha,
            "node_id": f"C_{sha[:8]}",
            "url": self._url(f"/git/commits/{sha}"),
            "html_url": f"{self.server_url}/{self.repo}/commit/{sha}",
            "author": commit["author"],
            "committer": commit["committer"],
            "message": commit["message"],
            "tree": {"sha": commit["tree"], "url": self._url(f"/git/trees/{commit['tree']}")},
            "parents": [
                {
                    "sha": p,
                    "url": self._url(f"/git/commits/{p}"),
                    "html_url": f"{self.server_url}/{self.repo}/commit/{p}",
                }
                for p in commit["parents"]
            ],
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
            },
        }

    def _ref_json(self, ref: str) -> dict[str, Any]:
        sha = self.refs[ref]
        return {
            "ref": ref,
            "node_id": f"REF_{ref}",
            "url": self._url(f"/git/{ref}"),
            "object": {"type": "commit", "sha": sha, "url": self._url(f"/git/commits/{sha}")},
        }

    def _get_ref(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        ref = "refs/" + match[1]
        if ref not in self.refs:
            raise ApiError(404, "Not Found")
        return 200, self._ref_json(ref), {}

    def _create_ref(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        ref, sha = (body or {}).get("ref"), (body or {}).get("sha")
        if not isinstance(ref, str) or not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name is invalid")
        if sha not in self.commits:
            raise ApiError(422, "Object does not exist")
        if ref in self.refs:
            raise ApiError(422, "Reference already exists")
        self.refs[ref] = sha
        return 201, self._ref_json(ref), {"location": self._url(f"/git/{ref}")}

    def _update_ref(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        ref = "refs/" + match[1]
        sha, force = (body or {}).get("sha"), bool((body or {}).get("force", False))
        if ref not in self.refs:
            raise ApiError(422, "Reference does not exist")
        if sha not in self.commits:
            raise ApiError(422, "Object does not exist")
        if not force and not self._is_ancestor(self.refs[ref], sha):
            raise ApiError(422, "Update is not a fast forward")
        self.refs[ref] = sha
        return 200, self._ref_json(ref), {}

    def _is_ancestor(self, old: str, new: str) -> bool:
        seen, todo = set(), [new]
        while todo:
            sha = todo.pop()
            if sha == old:
                return True
            if sha not in seen:
                seen.add(sha)
                todo.extend(self.commits[sha]["parents"])
        return False

    def _create_blob(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        content, encoding = (body or {}).get("content"), (body or {}).get("encoding", "utf-8")
        if not isinstance(content, str) or encoding not in ("utf-8", "base64"):
            raise ApiError(422, "Invalid request.")
        data = (
            base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
        )
        sha = self._store_blob(data)
        return 201, {"url": self._url(f"/git/blobs/{sha}"), "sha": sha}, {}

    def _get_blob(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        data = self.blobs.get(match[1])
        if data is None:
            raise ApiError(404, "Not Found")
        return (
            200,
            {
                "sha": match[1],
                "node_id": f"B_{match[1][:8]}",
                "size": len(data),
                "url": self._url(f"/git/blobs/{match[1]}"),
                "content": base64.encodebytes(data).decode(),
                "encoding": "base64",
            },
            {},
        )

    def _create_tree(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        entries, base = (body or {}).get("tree"), (body or {}).get("base_tree")
        if not isinstance(entries, list):
            raise ApiError(422, "Invalid tree info")
        if base is not None and base not in self.trees:
            raise ApiError(422, "base_tree is not a valid tree oid")
        tree = self._load_tree(base) if base else _Tree()
        for entry in entries:
            self._apply(tree, entry)
        sha = self._write_tree(tree)
        return 201, self._tree_json(sha, recursive=False), {}

    def _apply(self, tree: _Tree, entry: dict[str, Any]) -> None:
        path, mode, kind = entry.get("path"), entry.get("mode"), entry.get("type")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            raise ApiError(
                422, "Invalid tree info", errors=["tree.path contains a malformed path component"]
            )
        *folders, name = path.split("/")
        node = tree
        for folder in folders:
            child = node.entries.get(folder)
            if not isinstance(child, _Tree):
                child = node.entries[folder] = _Tree()
            node = child
        if "sha" in entry and entry["sha"] is None:
            if name not in node.entries:
                raise ApiError(422, "GitRPC::BadObjectState")
            del node.entries[name]
            return
        if "content" in entry:
            sha = self._store_blob(str(entry["content"]).encode())
        else:
            given = entry.get("sha")
            known = self.trees if kind == "tree" else self.blobs
            if not isinstance(given, str) or given not in known:
                raise ApiError(
                    422, "Invalid tree info", errors=[f"tree.sha {given} is not a valid {kind}"]
                )
            sha = given
        if kind == "tree":
            node.entries[name] = self._load_tree(sha)
        elif kind == "blob" and mode in ("100644", "100755"):
            node.entries[name] = (mode, "blob", sha)
        else:
            raise ApiError(422, "Invalid tree info")

    def _walk(self, tree_sha: str, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
        for mode, kind, sha, name in self.trees[tree_sha]:
            yield prefix + name, mode, kind, sha
            if kind == "tree":
                yield from self._walk(sha, prefix + name + "/")

    def _tree_json(self, sha: str, *, recursive: bool) -> dict[str, Any]:
        rows = (
            self._walk(sha)
            if recursive
            else ((name, mode, kind, s) for mode, kind, s, name in self.trees[sha])
        )
        entries = []
        for path, mode, kind, entry_sha in rows:
            item: dict[str, str | int] = {
                "path": path,
                "mode": mode,
                "type": kind,
                "sha": entry_sha,
            }
            if kind == "blob":
                item["size"] = len(self.blobs[entry_sha])
                item["url"] = self._url(f"/git/blobs/{entry_sha}")
            else:
                item["url"] = self._url(f"/git/trees/{entry_sha}")
            entries.append(item)
        return {
            "sha": sha,
            "url": self._url(f"/git/trees/{sha}"),
            "tree": entries[: self.tree_listing_limit],
            "truncated": len(entries) > self.tree_listing_limit,
        }

    def _get_tree(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        sha = self._resolve_tree(match[1])
        recursive = query.get("recursive") not in (None, "", "0", "false")
        return 200, self._tree_json(sha, recursive=recursive), {}

    def _resolve_tree(self, name: str) -> str:
        """A tree sha, a commit sha or a branch name -> the tree sha (GitHub accepts each)."""
        if name in self.trees:
            return name
        sha = self.refs.get(f"refs/heads/{name}", name)
        if sha in self.commits:
            tree: str = self.commits[sha]["tree"]
            return tree
        raise ApiError(404, "Not Found")

    def _lookup(self, tree_sha: str, path: str) -> tuple[str, str, str] | None:
        node: str | None = tree_sha
        kind, mode = "tree", "040000"
        for part in [p for p in path.split("/") if p]:
            if node is None or kind != "tree":
                return None
            row = next((r for r in self.trees[node] if r[3] == part), None)
            if row is None:
                return None
            mode, kind, node = row[0], row[1], row[2]
        return (mode, kind, node) if node else None

    def _create_commit(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        body = body or {}
        tree, parents, message = body.get("tree"), body.get("parents", []), body.get("message")
        if not isinstance(message, str) or tree not in self.trees:
            raise ApiError(422, "Tree SHA does not exist")
        if not isinstance(parents, list) or any(p not in self.commits for p in parents):
            raise ApiError(422, "Parent SHA does not exist or is not a commit object")
        sha = self._store_commit(message, tree, parents)
        return 201, self._commit_json(sha), {"location": self._url(f"/git/commits/{sha}")}

    def _get_commit(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        if match[1] not in self.commits:
            raise ApiError(404, "Not Found")
        return 200, self._commit_json(match[1]), {}

    def _get_contents(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        ref = query.get("ref", self.default_branch)
        sha = self.refs.get(f"refs/heads/{ref}", ref)
        if sha not in self.commits:
            raise ApiError(404, f"No commit found for the ref {ref}")
        path = match[1].strip("/")
        entry = (
            self._lookup(self.commits[sha]["tree"], path)
            if path
            else ("040000", "tree", self.commits[sha]["tree"])
        )
        if entry is None:
            raise ApiError(404, "Not Found")
        if entry[1] == "tree":
            items = [
                self._content_json(f"{path}/{name}".lstrip("/"), kind, s, with_content=False)
                for _m, kind, s, name in self.trees[entry[2]]
            ]
            return 200, items, {}
        return 200, self._content_json(path, "blob", entry[2], with_content=True), {}

    def _content_json(
        self, path: str, kind: str, sha: str, *, with_content: bool
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": "file" if kind == "blob" else "dir",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "size": len(self.blobs[sha]) if kind == "blob" else 0,
            "url": self._url(f"/contents/{quote(path)}"),
            "git_url": self._url(f"/git/{'blobs' if kind == 'blob' else 'trees'}/{sha}"),
            "html_url": f"{self.server_url}/{self.repo}/blob/{sha}/{quote(path)}",
            "download_url": None,
        }
        if with_content and kind == "blob":
            data = self.blobs[sha]
            inline = len(data) <= CONTENTS_INLINE_LIMIT
            item["encoding"] = "base64" if inline else "none"
            item["content"] = base64.encodebytes(data).decode() if inline else ""
        return item

    def _list_commits(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        start = query.get("sha", self.default_branch)
        sha = self.refs.get(f"refs/heads/{start}", start)
        if sha not in self.commits:
            raise ApiError(404, f"No commit found for SHA: {start}")
        chain = self._reachable(sha)  # like GitHub: every ancestor, newest first
        items = []
        for c in chain:
            commit = self._commit_json(c)
            items.append(
                {
                    "sha": c,
                    "node_id": commit["node_id"],
                    "url": self._url(f"/commits/{c}"),
                    "html_url": commit["html_url"],
                    "commit": {
                        k: commit[k] for k in ("author", "committer", "message", "tree", "url")
                    },
                    "parents": commit["parents"],
                }
            )
        return self._paginate(items, query, self._url("/commits"))

    # -- verdicts ----------------------------------------------------------------------

    def _create_status(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        body = body or {}
        if match[1] not in self.commits:
            raise ApiError(422, f"No commit found for SHA: {match[1]}")
        if body.get("state") not in ("error", "failure", "pending", "success"):
            raise ApiError(
                422,
                "Validation Failed",
                errors=[{"resource": "Status", "field": "state", "code": "invalid"}],
            )
        description = body.get("description") or ""
        if len(description) > STATUS_DESCRIPTION_LIMIT:
            raise ApiError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "Status",
                        "code": "custom",
                        "field": "description",
                        "message": "description is too long (maximum is 140 characters)",
                    }
                ],
            )
        status = {
            "id": next(self._ids),
            "sha": match[1],
            "url": self._url(f"/statuses/{match[1]}"),
            "state": body["state"],
            "description": description,
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
            "creator": {"login": self.bot_login, "type": "Bot"},
        }
        self.statuses.append(status)
        return 201, status, {}

    def _create_check_run(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        body = body or {}
        if not isinstance(body.get("name"), str) or body.get("head_sha") not in self.commits:
            raise ApiError(422, "Validation Failed")
        output = body.get("output") or {}
        for key in ("summary", "text"):
            if len(output.get(key) or "") > CHECK_TEXT_LIMIT:
                raise ApiError(
                    422,
                    "Invalid request.",
                    errors=[f"Only {CHECK_TEXT_LIMIT} characters are allowed"],
                )
        if body.get("status") == "completed" and body.get("conclusion") not in CONCLUSIONS:
            raise ApiError(422, "Validation Failed")
        run_id = next(self._ids)
        run = {
            "id": run_id,
            "url": self._url(f"/check-runs/{run_id}"),
            "html_url": f"{self.server_url}/{self.repo}/runs/{run_id}",
            "started_at": body.get("started_at") or _now(),
            **body,
        }
        self.check_runs.append(run)
        return 201, run, {}

    def _update_check_run(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        for run in self.check_runs:
            if run["id"] == int(match[1]):
                run.update(body or {})
                return 200, run, {}
        raise ApiError(404, "Not Found")

    def _list_check_runs(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        runs = [
            run
            for run in reversed(self.check_runs)
            if run["head_sha"] == match[1] and query.get("check_name", run["name"]) == run["name"]
        ]
        return 200, {"total_count": len(runs), "check_runs": runs}, {}


def _now() -> str:
    """Check runs start at the real time: nbci compares it with its own clock."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _api_path(target: str) -> str:
    return unquote(urlsplit(target).path).removeprefix(API_PREFIX)
