"""The GitHub client: PyGithub with bounded, logged retries, and its errors translated.

Retries happen per HTTP request inside urllib3 (`BoundedRetry`), following
GitHub's rate-limit guidance: wait out `retry-after`, or until
`x-ratelimit-reset` when `x-ratelimit-remaining` is 0; back off exponentially
on 5xx and dropped connections. No single wait exceeds `RetryPolicy.max_wait`
and all waits of one publish together stay under `max_total_wait`: a limit
that resets later ends the publish with a message instead of a stalled job.

Every PyGithub or network error leaves this package as one `PublishError` line
that says what nbci was doing and, for 401/403/404, which permission the
token needs. The token never appears in a message or a log line.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from nbci import __version__
from nbci.errors import PublishError, UsageError

if TYPE_CHECKING:
    from github import Github
    from github.Repository import Repository
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

logger = logging.getLogger(__name__)

RATE_LIMIT_STATUSES = (403, 429)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
TOKEN_HELP = "in GitHub Actions: `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`"
"""How a workflow hands the token over, quoted in messages."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long publishing may wait for GitHub; the defaults suit a CI job."""

    retries: int = 5
    """Retries of one request after its first try."""
    backoff: float = 2.0
    """First wait after a 5xx or a dropped connection, doubling each time."""
    max_wait: float = 90.0
    """The longest single wait; a rate limit resetting later is not waited for."""
    max_total_wait: float = 300.0
    """All waits of one publish together."""
    timeout: int = 30
    """Seconds to connect and to read one answer."""
    pace: bool = True
    """Space requests as GitHub asks (0.25 s; 1 s between writes) to avoid secondary limits."""


class _WaitBudget:
    """Seconds waited so far, shared by the copies urllib3 makes of a Retry."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.spent = 0.0


class BoundedRetry(Retry):
    """urllib3 `Retry` that waits the way GitHub asks, within a budget, and logs each wait."""

    def __init__(
        self,
        *args: Any,
        max_wait: float = 90.0,
        first_backoff: float = 2.0,
        budget: _WaitBudget | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_wait = max_wait
        self.first_backoff = first_backoff
        self.budget = budget if budget is not None else _WaitBudget(300.0)
        self.planned_wait = 0.0

    @classmethod
    def for_policy(cls, policy: RetryPolicy) -> BoundedRetry:
        return cls(
            total=policy.retries,
            status_forcelist=[*RATE_LIMIT_STATUSES, *range(500, 600)],
            allowed_methods=None,  # every verb: a duplicate POST is cleaned up by its caller
            raise_on_status=False,  # hand the last answer to PyGithub, which raises for it
            respect_retry_after_header=True,
            max_wait=policy.max_wait,
            first_backoff=policy.backoff,
            budget=_WaitBudget(policy.max_total_wait),
        )

    def new(self, **kw: Any) -> BoundedRetry:
        kw.setdefault("max_wait", self.max_wait)
        kw.setdefault("first_backoff", self.first_backoff)
        kw.setdefault("budget", self.budget)
        return super().new(**kw)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if (
            response is not None
            and response.status in RATE_LIMIT_STATUSES
            and not _is_rate_limited(response.headers)
        ):
            raise _gave_up(_pool, url, None)  # a real 403: not ours to retry
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        what = (
            f"GitHub answered {response.status} {response.reason}"
            if response is not None
            else f"the connection failed ({_short(error)})"
        )
        wait = self._wait_for(response, attempt=len(retry.history))
        left = self.budget.total - self.budget.spent
        if wait > self.max_wait or wait > left:
            logger.warning(
                "%s %s: %s; not retrying: that needs a %.0f s wait, more than the %.0f s left",
                method,
                _path(url),
                what,
                wait,
                min(self.max_wait, left),
            )
            raise _gave_up(_pool, url, error)
        self.budget.spent += wait
        retry.planned_wait = wait
        logger.warning(
            "%s %s: %s; retry %d of %d in %.1f s",
            method,
            _path(url),
            what,
            len(retry.history),
            len(retry.history) + (retry.total or 0),
            wait,
        )
        return retry

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.planned_wait > 0:
            time.sleep(self.planned_wait)

    def _wait_for(self, response: BaseHTTPResponse | None, *, attempt: int) -> float:
        """Seconds to wait before the next try, as GitHub's documentation asks."""
        if response is not None:
            retry_after = _retry_after(response.headers.get("retry-after"))
            if retry_after is not None:
                return retry_after
            if response.status in RATE_LIMIT_STATUSES:
                return _until_reset(response.headers.get("x-ratelimit-reset"))
        return self.first_backoff * 2 ** max(attempt - 1, 0)


def _gave_up(
    pool: ConnectionPool | None, url: str | None, error: Exception | None
) -> MaxRetryError:
    """What urllib3 raises when retrying stops; it passes no pool either when it has none."""
    return MaxRetryError(cast("ConnectionPool", pool), url or "", error)


def _is_rate_limited(headers: Any) -> bool:
    return bool(headers.get("retry-after")) or headers.get("x-ratelimit-remaining") == "0"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _until_reset(value: str | None) -> float:
    try:
        reset = float(value or "")
    except ValueError:
        return 60.0  # GitHub: otherwise wait at least a minute
    return max(reset - time.time(), 0.0) + 1.0  # the reset happens somewhere in that second


def _path(url: str | None) -> str:
    return (url or "").split("?", 1)[0]


def _short(error: Exception | None) -> str:
    return type(error).__name__ if error is not None else "nothing"


# -- the session -----------------------------------------------------------------


def token_from_env(env: Mapping[str, str], name: str) -> str:
    """The token in the environment variable `name`, checked but never shown."""
    if not _ENV_NAME.fullmatch(name):
        raise UsageError(f"--token-env: {name!r} is not an environment variable name")
    token = env.get(name, "").strip()
    if not token:
        raise PublishError(
            f"no GitHub token in ${name}: set it (in GitHub Actions: "
            f"`env: {name}: ${{{{ secrets.GITHUB_TOKEN }}}}`) or name another variable "
            "with --token-env"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise PublishError(f"the token in ${name} contains spaces or control characters")
    return token


class PermissionDenied(PublishError):
    """GitHub answered 403: the token lacks `permission` (a fork's token is read-only)."""

    def __init__(self, message: str, permission: str) -> None:
        super().__init__(message)
        self.permission = permission


class Session:
    """One repository on one GitHub, with the token kept out of every message."""

    def __init__(
        self, *, api_url: str, repo: str, token: str, token_env: str, policy: RetryPolicy
    ) -> None:
        self.api_url = api_url
        self.repo_name = repo
        self.token_env = token_env
        self._token = token
        self._github = _connect(api_url, token, policy)
        self.repo: Repository = self._github.get_repo(repo)  # lazy: no request yet

    def scrub(self, text: str) -> str:
        """`text` with the token (should a server ever echo it) blanked out."""
        return text.replace(self._token, "***") if len(self._token) >= 4 else text

    @contextmanager
    def errors(self, action: str, permission: str) -> Iterator[None]:
        """Translate what GitHub or the network raises while doing `action` into PublishError.

        `action` reads after "to" ("post the PR comment"); `permission` is what
        the token needs for it (`pull-requests: write`).
        """
        from github import GithubException
        from requests import RequestException

        try:
            yield
        except GithubException as exc:
            message = self.scrub(self.describe(exc, action, permission))
            if exc.status == 403 and not _rate_limit_error(exc):
                raise PermissionDenied(message, permission) from None
            raise PublishError(message) from None
        except RequestException as exc:
            raise PublishError(
                self.scrub(f"could not reach GitHub at {self.api_url} to {action}: {_network(exc)}")
            ) from None

    def describe(self, exc: Any, action: str, permission: str) -> str:
        status = getattr(exc, "status", None)
        headers = _lower(getattr(exc, "headers", None))
        message = _message(getattr(exc, "data", None))
        said = f"{status} {message}".strip()
        if status == 401:
            return (
                f"GitHub rejected the token in ${self.token_env} ({said}) when nbci tried to "
                f"{action}: set ${self.token_env} to a valid token ({TOKEN_HELP}), "
                "or name another variable with --token-env"
            )
        if _rate_limit_error(exc):
            return (
                f"GitHub's rate limit stopped nbci from trying to {action} "
                f"({said}{_reset(headers)}): nbci does not wait that long; run the job again later"
            )
        if status == 403:
            return (
                f"GitHub refused to let nbci {action} ({said}): the token needs `{permission}`; "
                f"grant it with `permissions: {{{permission}}}` on the publishing job "
                "(a fork's pull_request token is read-only: publish from the workflow_run "
                "workflow that `nbci init` writes)"
            )
        if status == 404:
            return (
                f"GitHub answered 404 Not Found when nbci tried to {action} in {self.repo_name}: "
                f"check --repo/--pr/--sha, and that the token can see the repository and has "
                f"`{permission}` (GitHub hides what a token may not read)"
            )
        if status is not None and status >= 500:
            return f"GitHub kept failing ({said}) when nbci tried to {action}; try again later"
        return f"GitHub rejected nbci's request to {action} ({said})"


def _connect(api_url: str, token: str, policy: RetryPolicy) -> Github:
    from github import Auth, Github

    return Github(
        auth=Auth.Token(token),
        base_url=api_url,
        timeout=policy.timeout,
        user_agent=f"nbci/{__version__}",
        per_page=100,
        retry=BoundedRetry.for_policy(policy),
        seconds_between_requests=0.25 if policy.pace else None,
        seconds_between_writes=1.0 if policy.pace else None,
        lazy=True,
    )


def _rate_limit_error(exc: Any) -> bool:
    """A 403/429 that GitHub's headers or words say is a rate limit."""
    if getattr(exc, "status", None) not in RATE_LIMIT_STATUSES:
        return False
    said = _message(getattr(exc, "data", None)).lower()
    return _is_rate_limited(_lower(getattr(exc, "headers", None))) or "rate limit" in said


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def _message(data: Any) -> str:
    """GitHub's own words from an error body: the message and the first detail."""
    if not isinstance(data, dict):
        return str(data)[:200] if data else ""
    message = str(data.get("message") or "")
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        detail = first.get("message") or first.get("code") if isinstance(first, dict) else first
        if detail:
            message = f"{message}: {detail}" if message else str(detail)
    return " ".join(message.split())[:300]


def _reset(headers: dict[str, str]) -> str:
    if headers.get("retry-after"):
        return f"; retry after {headers['retry-after']} s"
    try:
        when = datetime.fromtimestamp(float(headers.get("x-ratelimit-reset", "")), UTC)
    except ValueError:
        return ""
    return f"; resets at {when:%H:%M:%S} UTC"


def _network(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)  # MaxRetryError -> the underlying error
    return f"{type(exc).__name__} ({type(reason).__name__})"
