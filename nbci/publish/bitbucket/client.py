"""The Bitbucket client: one `requests` session with bounded, logged retries, errors translated.

Bitbucket Cloud (REST 2.0) and Bitbucket Data Center / Server (REST 1.0) are
reached over plain HTTP with `requests`, the library the GitHub and GitLab
clients already ride on, and the `BoundedRetry` of `nbci.publish.retry`
mounted on the session: 5xx, dropped connections and 429 (with `Retry-After`)
are retried within the `RetryPolicy`'s bounds, every wait logged. Not
atlassian-python-api: its Cloud half has neither Code Insights nor the `src`
endpoint that commits several files at once, its own retry sleeps up to 30
minutes a wait, and it logs every request body and answer at DEBUG.

The token (`$BITBUCKET_TOKEN`: a repository, project or workspace access
token, or an API token) goes in the `Authorization: Bearer` header only, never
in a URL; a pagination link to another host is not followed, so it is never
sent elsewhere. Every HTTP or network error leaves as one `PublishError` line
naming, for 401/403/404, the scope (Cloud) or permission (Data Center) the
token needs — Bitbucket Cloud's own list of required scopes when its 403 gives
one. The token never appears in a message or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from nbci import __version__
from nbci.errors import PublishError
from nbci.publish.forge import PermissionDenied
from nbci.publish.retry import BITBUCKET_LIMITS, BoundedRetry, RetryPolicy

logger = logging.getLogger(__name__)

DEFAULT_TOKEN_ENV = "BITBUCKET_TOKEN"
PAGE_SIZE = 100
"""Items asked for a page (Bitbucket Cloud serves at most 100)."""
MAX_PAGES = 1000
"""A listing longer than this many pages is cut (a server that keeps linking onwards)."""
CREATE_TOKEN = (
    "create a repository access token (Repository settings > Access tokens) with the "
    "`repository:write` and `pullrequest:write` scopes, or on Data Center an HTTP access token "
    "with Repository write permission, and store it as a secured repository variable named {name}"
)


def missing_token(name: str, *, in_pipelines: bool) -> PublishError:
    """What to create when `$name` holds no token."""
    where = " (Repository settings > Repository variables, Secured)" if in_pipelines else ""
    return PublishError(
        f"no Bitbucket token in ${name}: {CREATE_TOKEN.format(name=name)}{where}, "
        "or name another variable with --token-env"
    )


class BitbucketSession:
    """One Bitbucket server's API, with the token kept out of every message."""

    def __init__(
        self, *, api_url: str, repo: str, token: str, token_env: str, policy: RetryPolicy
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.repo_name = repo
        self.token_env = token_env
        self._token = token
        self._timeout = policy.timeout
        self._origin = _origin(self.api_url)
        self.http = requests.Session()
        adapter = HTTPAdapter(max_retries=BoundedRetry.for_policy(policy, BITBUCKET_LIMITS))
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        self.http.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"nbci/{__version__}",
            }
        )

    def scrub(self, text: str) -> str:
        """`text` with the token (should a server ever echo it) blanked out."""
        return text.replace(self._token, "***") if len(self._token) >= 4 else text

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.api_url + path

    def send(
        self,
        method: str,
        path: str,
        *,
        action: str,
        needs: str,
        ok: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> requests.Response:
        """One request; an answer of 400 or more (and not in `ok`) raises PublishError.

        `action` reads after "to" ("edit nbci's comment"); `needs` is the scope or
        permission the token needs for it.
        """
        url = self.url(path)
        if _origin(url) != self._origin:
            raise PublishError(f"Bitbucket linked to another host ({_origin(url)}): not followed")
        try:
            answer = self.http.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise PublishError(self.scrub(self._unreachable(exc, action))) from None
        if answer.status_code >= 400 and answer.status_code not in ok:
            message = self.scrub(self.describe(answer, action, needs))
            if answer.status_code == 403 or _not_permitted(answer):
                raise PermissionDenied(message, " and ".join(_required(answer)) or needs)
            raise PublishError(message)
        return answer

    def json(self, method: str, path: str, *, action: str, needs: str, **kwargs: Any) -> Any:
        """The JSON answer of one request (None when it has no body)."""
        answer = self.send(method, path, action=action, needs=needs, **kwargs)
        if not answer.content:
            return None
        try:
            return answer.json()
        except ValueError:
            raise PublishError(
                f"Bitbucket answered with something other than JSON when nbci tried to {action}"
            ) from None

    def cloud_pages(
        self, path: str, *, action: str, needs: str, cut: Cut | None = None, **params: Any
    ) -> Iterator[Any]:
        """Every item of a Bitbucket Cloud listing, following its `next` links lazily; with
        `cut`, a listing that is not there (404) is empty and `cut.cut` says it was cut."""
        url: str | None = path
        query: dict[str, Any] | None = {"pagelen": PAGE_SIZE, **params}
        for _page in range(MAX_PAGES):
            if url is None:
                return
            page = self.json("GET", url, action=action, needs=needs, ok=_absent(cut), params=query)
            yield from _values(page)
            url = page.get("next") if isinstance(page, dict) else None
            query = None  # the next link carries the query
        _cut(cut, path)

    def server_pages(
        self, path: str, *, action: str, needs: str, cut: Cut | None = None, **params: Any
    ) -> Iterator[Any]:
        """Every item of a Data Center listing (`start`/`limit`, `isLastPage`), lazily; `cut`
        as for `cloud_pages`."""
        start = 0
        for _page in range(MAX_PAGES):
            query = {**params, "start": start, "limit": PAGE_SIZE}
            page = self.json("GET", path, action=action, needs=needs, ok=_absent(cut), params=query)
            yield from _values(page)
            if not isinstance(page, dict) or page.get("isLastPage", True):
                return
            following = page.get("nextPageStart")
            if not isinstance(following, int) or following <= start:
                return
            start = following
        _cut(cut, path)

    def describe(self, answer: requests.Response, action: str, needs: str) -> str:
        status = answer.status_code
        said = f"{status} {_message(answer)}".strip()
        if status == 403 or _not_permitted(answer):
            required = _required(answer)
            scopes = " and ".join(f"`{s}`" for s in required)
            return (
                f"Bitbucket refused to let nbci {action} ({said}): the token needs "
                + (f"the {scopes} scope{'s' if len(required) > 1 else ''}" if required else needs)
                + f" in {self.repo_name}"
            )
        if status == 401:
            return (
                f"Bitbucket rejected the token in ${self.token_env} ({said}) when nbci tried to "
                f"{action}: {CREATE_TOKEN.format(name=self.token_env)}"
            )
        if status == 404:
            return (
                f"Bitbucket answered 404 Not Found when nbci tried to {action} in "
                f"{self.repo_name}: check --repo/--pr/--sha, and that the token can see the "
                f"repository and has {needs} (Bitbucket hides what a token may not read)"
            )
        if status == 429:
            return (
                f"Bitbucket's rate limit stopped nbci from trying to {action} ({said}): "
                "nbci does not wait that long; run the job again later"
            )
        if status >= 500:
            return f"Bitbucket kept failing ({said}) when nbci tried to {action}; try again later"
        return f"Bitbucket rejected nbci's request to {action} ({said})"

    def _unreachable(self, exc: requests.RequestException, action: str) -> str:
        reason = exc.args[0] if exc.args else exc
        reason = getattr(reason, "reason", reason)  # MaxRetryError -> the underlying error
        if reason is None:  # BoundedRetry gave up: the answer asked for a longer wait
            return (
                f"Bitbucket's rate limit (or a fault) stopped nbci from trying to {action}: "
                "it asked for a longer wait than nbci allows; run the job again later"
            )
        return (
            f"could not reach Bitbucket at {self._origin} to {action}: "
            f"{type(exc).__name__} ({type(reason).__name__})"
        )


@dataclass
class Cut:
    """Whether a listing was cut after `MAX_PAGES` pages (a server that keeps linking on)."""

    cut: bool = False


def _absent(cut: Cut | None) -> tuple[int, ...]:
    """A listing read with a `Cut` may be absent: its 404 (an error body, no values) is empty."""
    return (404,) if cut is not None else ()


def _cut(cut: Cut | None, path: str) -> None:
    logger.warning("listing cut after %d pages: %s", MAX_PAGES, path)
    if cut is not None:
        cut.cut = True


def _origin(url: str) -> str:
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}"


def _values(page: Any) -> list[Any]:
    values = page.get("values") if isinstance(page, dict) else None
    return values if isinstance(values, list) else []


def _body(answer: requests.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def _message(answer: requests.Response) -> str:
    """Bitbucket's own words: Cloud's `error.message`, Data Center's `errors[0].message`."""
    body = _body(answer)
    text = ""
    if isinstance(body, Mapping):
        error = body.get("error")
        errors = body.get("errors")
        if isinstance(error, Mapping):
            text = str(error.get("message") or "")
        elif isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            text = str(errors[0].get("message") or "")
        elif body.get("message"):
            text = str(body["message"])
    elif answer.text and len(answer.text) < 300 and "<" not in answer.text:
        text = answer.text
    return " ".join(text.split())[:300]


def _required(answer: requests.Response) -> list[str]:
    """The scopes Bitbucket Cloud's 403 says it wanted (`error.detail.required`)."""
    body = _body(answer)
    error = body.get("error") if isinstance(body, Mapping) else None
    detail = error.get("detail") if isinstance(error, Mapping) else None
    required = detail.get("required") if isinstance(detail, Mapping) else None
    if isinstance(required, list) and all(isinstance(s, str) for s in required):
        return [" ".join(s.split())[:50] for s in required[:5]]
    return []


def _not_permitted(answer: requests.Response) -> bool:
    """Data Center answers 401 with an `AuthorisationException` to a token lacking a permission."""
    body = _body(answer) if answer.status_code == 401 else None
    errors = body.get("errors") if isinstance(body, Mapping) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    name = first.get("exceptionName") if isinstance(first, Mapping) else None
    return isinstance(name, str) and name.endswith("AuthorisationException")
