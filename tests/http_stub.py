"""What the GitHub and GitLab stand-ins share: a threaded HTTP/1.1 server on 127.0.0.1
that hands every request to the stand-in, the record of requests, and git's blob ids.

A stand-in subclasses `StandIn` and answers in `handle`; `with Stand(...) as s:`
serves it on a free port for the block.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Answer = tuple[int, dict[str, str], bytes | None]
"""Status, extra headers, body; a None body resets the connection instead of answering."""

Reply = tuple[int, Any, dict[str, str]]
"""A route handler's answer: status, the JSON payload (or raw bytes), extra headers."""


@dataclass
class Recorded:
    """One request as the stand-in received it (the path without the API prefix)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0


def json_bytes(payload: Any) -> bytes:
    """An answer's JSON body."""
    return json.dumps(payload).encode()


def git_blob_sha(data: bytes) -> str:
    """The id git gives a file with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class StandIn:
    """A stateful API stand-in served over real HTTP."""

    server_version = "stand-in"
    """The `Server` header."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.base_url = ""
        self._server: ThreadingHTTPServer | None = None

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        """Answer one request (`headers` with lower-case names)."""
        raise NotImplementedError

    def response_headers(self, extra: dict[str, str]) -> dict[str, str]:
        """Every header of an answer, from those `handle` gave."""
        return extra

    def serve(self) -> Self:
        server = _QuietServer(("127.0.0.1", 0), _Handler)
        server.stand_in = self
        server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{server.server_port}"
        self._server = server
        threading.Thread(  # close() waits up to one poll interval: 10 ms, in every stub's test
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.serve()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def calls(self, method: str = "*", path: str = "") -> list[Recorded]:
        """The requests so far with this method (`*`: any) whose path matches the regex."""
        pattern = re.compile(path)
        return [
            r for r in list(self.requests) if method in ("*", r.method) and pattern.search(r.path)
        ]


class _QuietServer(ThreadingHTTPServer):
    stand_in: StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A reset connection, or a client that gave up on a stalled answer, is expected here."""


class _Handler(BaseHTTPRequestHandler):
    server: _QuietServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed ACK

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        return

    def version_string(self) -> str:
        return self.server.stand_in.server_version

    def _serve(self) -> None:
        stand_in = self.server.stand_in
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, data = stand_in.handle(self.command, self.path, headers, raw)
        if data is None:  # injected connection reset
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(status)
        for key, value in stand_in.response_headers(dict(extra)).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
