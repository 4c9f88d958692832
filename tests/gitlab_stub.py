"""A stand-in for the GitLab REST API v4, served over real HTTP on 127.0.0.1.

It answers the endpoints `nbci publish` uses with the shapes, status codes and
headers GitLab documents (docs.gitlab.com/api/rest): projects by id or
URL-encoded path, merge requests and their notes, branches, the repository
tree, commits (created with `actions`, listed with `first_parent`), raw blobs,
commit statuses, and the web side's `/{project}/-/raw/{sha}/{path}`. Lists are
paginated like GitLab's offset pagination (`page`/`per_page`, at most 100;
`X-Page`, `X-Per-Page`, `X-Next-Page`, `X-Prev-Page`, `X-Total`,
`X-Total-Pages` and a `Link` header). Tokens carry scopes and a role
(`PRIVATE-TOKEN`); every request is recorded. Tests inject faults: a status
N times, 429 with `Retry-After`, connection resets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from http_stub import Answer, Recorded, Reply, StandIn, git_blob_sha, json_bytes

API_PREFIX = "/api/v4"
NOTE_LIMIT = 1_000_000
ROLES = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40}
STATES = ("pending", "running", "success", "failed", "canceled")
PROJECT_ID = 4242


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = headers or {}


def _message(status: int, text: str) -> ApiError:
    return ApiError(status, {"message": text})


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    times: int
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    """status 0: reset the connection instead of answering."""

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method in (self.method, "*") and bool(self.pattern.search(path))


@dataclass
class Token:
    scopes: tuple[str, ...] = ("api",)
    role: str = "developer"
    username: str = "project_4242_bot_nbci"


@dataclass
class MergeRequest:
    iid: int
    sha: str
    base_sha: str
    source_branch: str = "feature"
    source_project_id: int = PROJECT_ID


class GitLabStub(StandIn):
    """State and behaviour; `serve()` puts it on a free port of 127.0.0.1.

    Recorded request paths are without /api/v4, URL-decoded.
    """

    server_version = "nginx"

    def __init__(
        self,
        project: str = "ml-team/notebooks",
        *,
        token: str = "glpat-stubTokenDoNotLeak0123456789",
        default_branch: str = "main",
    ) -> None:
        super().__init__()
        self.project = project
        self.token = token
        self.default_branch = default_branch
        self.max_per_page = 100
        """GitLab serves at most 100 items a page, whatever `per_page` asks."""
        self.tokens: dict[str, Token] = {token: Token()}
        self.faults: list[Fault] = []
        self.hooks: list[tuple[str, re.Pattern[str], Callable[[], object]]] = []
        self.blobs: dict[str, bytes] = {}
        self.commits: dict[str, dict[str, Any]] = {}
        self.branches: dict[str, str] = {}
        self.merge_requests: dict[int, MergeRequest] = {}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.statuses: list[dict[str, Any]] = []
        self._ids = iter(range(5_000_001, 10**9))
        self.honours_first_parent = True
        """False: list every ancestor whatever `first_parent` says, as older GitLab does."""
        self._clock = 0
        self._lock = threading.RLock()

    # -- server ------------------------------------------------------------------

    def response_headers(self, extra: dict[str, str]) -> dict[str, str]:
        return {"Content-Type": "application/json", **extra}

    # -- test set-up -------------------------------------------------------------

    def add_history(self, count: int, *, branch: str | None = None) -> list[str]:
        """`count` linear commits on `branch` (the default branch), oldest first."""
        branch = branch or self.default_branch
        with self._lock:
            parent = self.branches.get(branch)
            files = dict(self.commits[parent]["files"]) if parent else {}
            shas = []
            for i in range(count):
                files["README.md"] = self._store_blob(f"version {len(self.commits)} {i}\n".encode())
                parent = self._store_commit(f"commit {i}", dict(files), [parent] if parent else [])
                shas.append(parent)
            self.branches[branch] = shas[-1]
            return shas

    def put_files(self, branch: str, files: dict[str, bytes], *, message: str = "put") -> str:
        """Every file of `files` (path -> content) written on `branch` in one commit, the
        branch cut from the default branch if it is new; returns the commit."""
        with self._lock:
            parent = self.branches.get(branch) or self.branches[self.default_branch]
            tree = dict(self.commits[parent]["files"])
            tree.update({path: self._store_blob(data) for path, data in files.items()})
            self.branches[branch] = self._store_commit(message, tree, [parent])
            return self.branches[branch]

    def add_merged_branch(self, count: int, *, main_commits: int = 1) -> tuple[list[str], str]:
        """A feature branch of `count` commits off the default branch, `main_commits` more
        on the default branch meanwhile, then the merge commit (first parent: the default
        branch). Returns the feature's commits (oldest first) and the merge commit."""
        with self._lock:
            fork = self.branches[self.default_branch]
            files = dict(self.commits[fork]["files"])
            feature, parent = [], fork
            for i in range(count):
                files["README.md"] = self._store_blob(f"feature {len(self.commits)} {i}\n".encode())
                parent = self._store_commit(f"feature commit {i}", dict(files), [parent])
                feature.append(parent)
            main = self.add_history(main_commits)[-1] if main_commits else fork
            merge = self._store_commit("Merge branch 'feature'", files, [main, feature[-1]])
            self.branches[self.default_branch] = merge
            return feature, merge

    def add_merge_request(self, iid: int, *, base_sha: str) -> MergeRequest:
        """A merge request of one commit on `base_sha` into the default branch."""
        with self._lock:
            files = dict(self.commits[base_sha]["files"])
            head = self._store_commit(f"work on !{iid}", files, [base_sha])
            mr = MergeRequest(iid, head, base_sha)
            self.merge_requests[iid] = mr
            self.notes.setdefault(iid, [])
            return mr

    def add_note(
        self, iid: int, body: str, *, user: str = "someone", system: bool = False
    ) -> dict[str, Any]:
        with self._lock:
            note = self._new_note(body, user, system=system)
            self.notes.setdefault(iid, []).append(note)
            return note

    def before_next(self, method: str, path: str, action: Callable[[], object]) -> None:
        """Run `action` just before the next matching request is carried out (a race)."""
        with self._lock:
            self.hooks.append((method.upper(), re.compile(path), action))

    def fail(self, method: str, path: str, status: int = 502, *, times: int = 1) -> None:
        """The next `times` requests matching `method` and the `path` regex get `status`."""
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path), times, status))

    def rate_limit(self, method: str, path: str, *, retry_after: int, times: int = 1) -> None:
        headers = {
            "Retry-After": str(retry_after),
            "RateLimit-Limit": "600",
            "RateLimit-Observed": "601",
            "RateLimit-Remaining": "0",
        }
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path), times, 429, headers))

    def reset_connection(self, method: str, path: str, *, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path), times, 0))

    # -- inspection ----------------------------------------------------------------

    def writes(self) -> list[Recorded]:
        return [r for r in list(self.requests) if r.method != "GET"]

    def file_at(self, commitish: str, path: str) -> bytes | None:
        sha = self.branches.get(commitish, commitish)
        commit = self.commits.get(sha)
        blob = commit["files"].get(path) if commit else None
        return self.blobs[blob] if blob else None

    def mr_notes(self, iid: int) -> list[dict[str, Any]]:
        return list(self.notes.get(iid, []))

    @property
    def web_url(self) -> str:
        return f"{self.base_url}/{self.project}"

    # -- request handling ------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        """(status, headers, body bytes), or (0, {}, None) to reset the connection."""
        split = urlsplit(target)
        query = dict(parse_qsl(split.query))
        path = split.path  # still URL-encoded: a project path is one encoded segment
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = Recorded(method, unquote(path).removeprefix(API_PREFIX), query, headers, body)
        with self._lock:
            self.requests.append(record)
            fault = next((f for f in self.faults if f.matches(method, record.path)), None)
            if fault is not None:
                fault.times -= 1
                record.status = fault.status
                if fault.status == 0:
                    return 0, {}, None
                text = {429: "Retry later", 502: "502 Bad Gateway"}.get(fault.status, "error")
                return fault.status, dict(fault.headers), json_bytes({"message": text})
            hook = next(
                (h for h in self.hooks if h[0] == method and h[1].search(record.path)), None
            )
            if hook is not None:
                self.hooks.remove(hook)
                hook[2]()
            try:
                if path.startswith(API_PREFIX + "/"):
                    status, payload, extra = self._api(
                        method, path[len(API_PREFIX) :], query, headers, body
                    )
                    data = payload if isinstance(payload, bytes) else json_bytes(payload)
                else:
                    status, data, extra = self._web(method, unquote(path))
            except ApiError as exc:
                status, data, extra = exc.status, json_bytes(exc.body), exc.headers
            record.status = status
            return status, extra, data

    def _web(self, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
        match = re.fullmatch(r"/(.+)/-/raw/([0-9a-f]{40})/(.+)", path)
        if method != "GET" or not match or match[1] != self.project:
            return 404, b"Not Found", {"Content-Type": "text/plain"}
        data = self.file_at(match[2], match[3])
        if data is None:
            return 404, b"Not Found", {"Content-Type": "text/plain"}
        return 200, data, {"Content-Type": "image/png"}

    def _api(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        token = self._authenticate(headers)
        match = re.fullmatch(r"/projects/([^/]+)(/.*)?", path)
        if not match or unquote(match[1]) not in (self.project, str(PROJECT_ID)):
            raise _message(404, "404 Project Not Found")
        rest = match[2] or ""
        for verb, pattern, write, handler in self._routes():
            found = re.fullmatch(pattern, rest)
            if found and verb == method:
                self._authorize(token, write=write)
                return handler(found, query, body)
        raise _message(404, "404 Not Found")

    def _routes(self) -> list[tuple[str, str, bool, Callable[..., Reply]]]:
        mr = r"/merge_requests/(\d+)"
        return [
            ("GET", r"", False, self._get_project),
            ("GET", mr, False, self._get_mr),
            ("GET", mr + r"/notes", False, self._list_notes),
            ("POST", mr + r"/notes", True, self._create_note),
            ("PUT", mr + r"/notes/(\d+)", True, self._update_note),
            ("DELETE", mr + r"/notes/(\d+)", True, self._delete_note),
            ("GET", r"/repository/branches/(.+)", False, self._get_branch),
            ("GET", r"/repository/tree", False, self._tree),
            ("GET", r"/repository/commits", False, self._list_commits),
            ("POST", r"/repository/commits", True, self._create_commit),
            ("GET", r"/repository/blobs/([0-9a-f]{40})/raw", False, self._raw_blob),
            ("GET", r"/repository/files/([^/]+)", False, self._get_file),
            ("POST", r"/statuses/([0-9a-f]{40})", True, self._create_status),
        ]

    def _authenticate(self, headers: dict[str, str]) -> Token:
        if "job-token" in headers:
            raise _message(401, "401 Unauthorized")  # job tokens reach neither notes nor statuses
        token = self.tokens.get(headers.get("private-token", ""))
        if token is None:
            raise _message(401, "401 Unauthorized")
        return token

    def _authorize(self, token: Token, *, write: bool) -> None:
        scopes = {"api"} if write else {"api", "read_api"}
        if not scopes & set(token.scopes):
            raise ApiError(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": "The request requires higher privileges than "
                    "provided by the access token.",
                    "scope": "api",
                },
            )
        if ROLES[token.role] < ROLES["developer" if write else "reporter"]:
            raise _message(403, "403 Forbidden")

    # -- projects, merge requests, notes ---------------------------------------------

    def _get_project(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        return (
            200,
            {
                "id": PROJECT_ID,
                "path_with_namespace": self.project,
                "default_branch": self.default_branch,
                "web_url": self.web_url,
                "visibility": "private",
            },
            {},
        )

    def _mr(self, iid: str) -> MergeRequest:
        mr = self.merge_requests.get(int(iid))
        if mr is None:
            raise _message(404, "404 Not found")
        return mr

    def _get_mr(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        mr = self._mr(match[1])
        return (
            200,
            {
                "id": 90000 + mr.iid,
                "iid": mr.iid,
                "project_id": PROJECT_ID,
                "target_project_id": PROJECT_ID,
                "source_project_id": mr.source_project_id,
                "source_branch": mr.source_branch,
                "target_branch": self.default_branch,
                "state": "opened",
                "sha": mr.sha,
                "merge_commit_sha": None,
                "diff_refs": {
                    "base_sha": mr.base_sha,
                    "head_sha": mr.sha,
                    "start_sha": mr.base_sha,
                },
                "web_url": f"{self.web_url}/-/merge_requests/{mr.iid}",
            },
            {},
        )

    def _new_note(self, body: str, user: str, *, system: bool = False) -> dict[str, Any]:
        self._clock += 1
        note_id = next(self._ids)
        hours, rest = divmod(self._clock, 3600)
        stamp = f"2026-12-01T{hours % 24:02d}:{rest // 60:02d}:{rest % 60:02d}.000Z"
        return {
            "id": note_id,
            "type": None,
            "body": body,
            "author": {"id": abs(hash(user)) % 10**6, "username": user, "name": user},
            "created_at": stamp,
            "updated_at": stamp,
            "system": system,
            "noteable_type": "MergeRequest",
        }

    def _list_notes(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        self._mr(match[1])
        notes = list(self.notes[int(match[1])])
        if query.get("sort", "desc") == "desc":
            notes.reverse()
        return self._paginate(notes, query, f"/merge_requests/{match[1]}/notes")

    def _paginate(self, items: list[Any], query: dict[str, str], rest: str) -> Reply:
        per_page = max(1, min(int(query.get("per_page", "20")), self.max_per_page))
        page = max(1, int(query.get("page", "1")))
        pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        base = f"{self.base_url}{API_PREFIX}/projects/{quote(self.project, safe='')}{rest}"

        def link(n: int) -> str:
            return f"{base}?{urlencode({**query, 'page': n, 'per_page': per_page})}"

        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(len(items)),
            "X-Total-Pages": str(pages),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        links = [f'<{link(page + 1)}>; rel="next"'] if page < pages else []
        links += [f'<{link(page - 1)}>; rel="prev"'] if page > 1 else []
        links += [f'<{link(1)}>; rel="first"', f'<{link(pages)}>; rel="last"']
        headers["Link"] = ", ".join(links)
        return 200, chunk, headers

    def _note_body(self, body: Any) -> str:
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            raise _message(400, "400 Bad request - body is missing")
        if len(text) > NOTE_LIMIT:
            raise _message(400, 'Note {:note=>["is too long (maximum is 1000000 characters)"]}')
        return text

    def _create_note(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        self._mr(match[1])
        note = self._new_note(self._note_body(body), self._username())
        self.notes[int(match[1])].append(note)
        return 201, note, {}

    def _find_note(self, iid: str, note_id: str) -> dict[str, Any]:
        self._mr(iid)
        for note in self.notes[int(iid)]:
            if note["id"] == int(note_id):
                return note
        raise _message(404, "404 Not found")

    def _update_note(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        note = self._find_note(match[1], match[2])
        note["body"] = self._note_body(body)
        return 200, note, {}

    def _delete_note(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        note = self._find_note(match[1], match[2])
        self.notes[int(match[1])].remove(note)
        return 204, b"", {}

    def _username(self) -> str:
        record = self.requests[-1]
        return self.tokens[record.headers.get("private-token", "")].username

    # -- repository --------------------------------------------------------------------

    def _store_blob(self, data: bytes) -> str:
        sha = git_blob_sha(data)
        self.blobs[sha] = data
        return sha

    def _store_commit(self, message: str, files: dict[str, str], parents: list[str]) -> str:
        self._clock += 1
        payload = json.dumps([message, sorted(files.items()), parents, self._clock])
        sha = hashlib.sha1(payload.encode()).hexdigest()
        self.commits[sha] = {
            "id": sha,
            "message": message,
            "files": files,
            "parents": parents,
            "clock": self._clock,
        }
        return sha

    def _commit_json(self, sha: str) -> dict[str, Any]:
        commit = self.commits[sha]
        return {
            "id": sha,
            "short_id": sha[:8],
            "title": commit["message"].splitlines()[0],
            "message": commit["message"],
            "parent_ids": commit["parents"],
            "web_url": f"{self.web_url}/-/commit/{sha}",
        }

    def _resolve(self, ref: str) -> str:
        sha = self.branches.get(ref, ref)
        if sha not in self.commits:
            raise _message(404, "404 Commit Not Found")
        return sha

    def _get_branch(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        name = unquote(match[1])
        if name not in self.branches:
            raise _message(404, "404 Branch Not Found")
        return 200, {"name": name, "commit": self._commit_json(self.branches[name])}, {}

    def _tree(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        sha = self._resolve(query.get("ref") or self.default_branch)
        prefix = query.get("path", "").strip("/")
        recursive = _flag(query.get("recursive"))
        files = self.commits[sha]["files"]
        under = {p: b for p, b in files.items() if not prefix or p.startswith(prefix + "/")}
        if prefix and not under:
            raise _message(404, "404 Tree Not Found")
        entries: dict[str, dict[str, Any]] = {}
        for path, blob in sorted(under.items()):
            parts = path.split("/")
            start = len(prefix.split("/")) if prefix else 0
            for depth in range(start + 1, len(parts)):
                folder = "/".join(parts[:depth])
                if recursive or depth == start + 1:
                    entries.setdefault(folder, _entry(folder, "tree", "0" * 40, "040000"))
            if recursive or len(parts) == start + 1:
                entries[path] = _entry(path, "blob", blob, "100644")
        return self._paginate(list(entries.values()), query, "/repository/tree")

    def _list_commits(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        sha = self._resolve(query.get("ref_name") or self.default_branch)
        first_parent = _flag(query.get("first_parent")) and self.honours_first_parent
        seen: set[str] = set()
        todo = [sha]
        while todo:  # first parents only when asked, else every ancestor
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                parents = self.commits[current]["parents"]
                todo.extend(parents[:1] if first_parent else parents)
        newest_first = sorted(seen, key=lambda c: self.commits[c]["clock"], reverse=True)
        history = [self._commit_json(c) for c in newest_first]
        return self._paginate(history, query, "/repository/commits")

    def _create_commit(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
            raise _message(400, "400 Bad request - actions is missing")
        branch = body.get("branch")
        if not isinstance(branch, str):
            raise _message(400, "400 Bad request - branch is missing")
        start: str = body.get("start_branch") or ""
        if branch in self.branches and start and start != branch:
            raise _message(
                400,
                f"A branch called '{branch}' already exists. "
                "Switch to that branch in order to make changes",
            )
        if branch not in self.branches and not start:
            raise _message(400, "You can only create or edit files when you are on a branch")
        parent = self.branches[branch if branch in self.branches else self._start(start)]
        files = dict(self.commits[parent]["files"])
        for action in body["actions"]:
            path = action.get("file_path", "")
            kind = action.get("action")
            if kind == "create" and path in files:
                raise _message(400, "A file with this name already exists")
            if kind in ("update", "delete") and path not in files:
                raise _message(400, "A file with this name doesn't exist")
            last = action.get("last_commit_id")
            if kind in ("update", "delete") and last and last != self._last_change(parent, path):
                raise _message(
                    400,
                    "You are attempting to update a file that has changed since you started "
                    "editing it.",
                )
            if kind == "delete":
                del files[path]
                continue
            content = action.get("content", "")
            data = (
                base64.b64decode(content)
                if action.get("encoding") == "base64"
                else content.encode()
            )
            files[path] = self._store_blob(data)
        sha = self._store_commit(body.get("commit_message", ""), files, [parent])
        self.branches[branch] = sha
        return 201, self._commit_json(sha), {}

    def _start(self, name: str) -> str:
        if name not in self.branches:
            raise _message(400, "Invalid start branch")
        return name

    def _last_change(self, sha: str, path: str) -> str:
        """The commit that last changed `path`, along first parents from `sha`."""
        blob = self.commits[sha]["files"].get(path)
        while self.commits[sha]["parents"]:
            parent = self.commits[sha]["parents"][0]
            if self.commits[parent]["files"].get(path) != blob:
                break
            sha = parent
        return sha

    def _get_file(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        """`GET /projects/:id/repository/files/:file_path?ref=`: the file, base64, with the
        commit that last changed it."""
        sha = self._resolve(query.get("ref") or self.default_branch)
        path = unquote(match[1])
        blob = self.commits[sha]["files"].get(path)
        if blob is None:
            raise _message(404, "404 File Not Found")
        data = self.blobs[blob]
        return (
            200,
            {
                "file_name": path.rsplit("/", 1)[-1],
                "file_path": path,
                "size": len(data),
                "encoding": "base64",
                "content": base64.b64encode(data).decode("ascii"),
                "content_sha256": hashlib.sha256(data).hexdigest(),
                "ref": query.get("ref") or self.default_branch,
                "blob_id": blob,
                "commit_id": sha,
                "last_commit_id": self._last_change(sha, path),
            },
            {},
        )

    def _raw_blob(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        data = self.blobs.get(match[1])
        if data is None:
            raise _message(404, "404 Blob Not Found")
        return 200, data, {"Content-Type": "text/plain; charset=utf-8"}

    def _create_status(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        sha = match[1]
        if sha not in self.commits:
            raise _message(404, "404 Commit Not Found")
        if not isinstance(body, dict) or body.get("state") not in STATES:
            raise _message(400, "400 Bad request - state does not have a valid value")
        description = body.get("description") or ""
        if len(description) > 255:
            raise _message(400, "Description is too long")
        status = {
            "id": next(self._ids),
            "sha": sha,
            "status": body["state"],
            "name": body.get("name") or body.get("context") or "default",
            "description": description,
            "target_url": body.get("target_url"),
        }
        self.statuses.append(status)
        return 201, status, {}


def _flag(value: str | None) -> bool:
    """A boolean parameter as GitLab's Grape API coerces it (python-gitlab sends `True`)."""
    return (value or "").lower() in ("1", "on", "t", "true", "y", "yes")


def _entry(path: str, kind: str, sha: str, mode: str) -> dict[str, Any]:
    return {"id": sha, "name": path.rsplit("/", 1)[-1], "type": kind, "path": path, "mode": mode}
