"""Bounded, logged retries of one HTTP request, for the GitHub and the GitLab client alike.

Both clients talk through `requests`, so retries happen per request inside
urllib3 (`BoundedRetry`, mounted on the client's session), as each forge asks:
wait out `Retry-After`, or until the rate limit resets (`x-ratelimit-reset` on
GitHub, `RateLimit-Reset` on GitLab); back off exponentially on 5xx and
dropped connections. No single wait exceeds `RetryPolicy.max_wait` and all
waits of one publish together stay under `max_total_wait`: a limit that
resets later ends the publish with a message instead of a stalled job. A
connection that cannot be made at all is retried fewer times. Every wait is
logged, once: urllib3's own retry line is silenced by the CLI.

A POST that creates what cannot be deleted (`LOOK_FIRST`: a GitHub check run)
is retried here only when the forge said it did nothing (a rate limit); after
a 5xx or a lost answer its caller looks whether the first try took effect.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from urllib3.exceptions import ConnectTimeoutError, MaxRetryError
from urllib3.util.retry import Retry

if TYPE_CHECKING:
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

logger = logging.getLogger(__name__)

LOOK_FIRST = ("/check-runs",)
"""Paths (their ends) of POSTs that are not sent again blindly: GitHub has no way to delete
a check run, so a retry whose first try had created one would leave two."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long publishing may wait for the forge; the defaults suit a CI job."""

    retries: int = 5
    """Retries of one request after its first try."""
    connect_retries: int = 3
    """Of those, retries of a connection that cannot be made at all (no network, refused,
    unknown host): 2 + 4 + 8 = 14 s of waiting, not the 62 s of five."""
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


@dataclass(frozen=True)
class RateLimits:
    """How a forge signals a rate limit."""

    service: str
    """`GitHub` or `GitLab`, for the log."""
    statuses: tuple[int, ...]
    """Answers that may be a rate limit."""
    needs_headers: bool
    """Such an answer is a rate limit only when its headers say so (GitHub's 403)."""

    def limited(self, status: int, headers: Any) -> bool:
        if status not in self.statuses:
            return False
        if not self.needs_headers:
            return True
        return bool(headers.get("retry-after")) or headers.get("x-ratelimit-remaining") == "0"


GITHUB_LIMITS = RateLimits("GitHub", (403, 429), needs_headers=True)
GITLAB_LIMITS = RateLimits("GitLab", (429,), needs_headers=False)
BITBUCKET_LIMITS = RateLimits("Bitbucket", (429,), needs_headers=False)


class _WaitBudget:
    """Seconds waited so far, shared by the copies urllib3 makes of a Retry."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.spent = 0.0


class BoundedRetry(Retry):
    """urllib3 `Retry` that waits the way the forge asks, within a budget, and logs each wait."""

    def __init__(
        self,
        *args: Any,
        max_wait: float = 90.0,
        first_backoff: float = 2.0,
        budget: _WaitBudget | None = None,
        limits: RateLimits = GITHUB_LIMITS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_wait = max_wait
        self.first_backoff = first_backoff
        self.budget = budget if budget is not None else _WaitBudget(300.0)
        self.limits = limits
        self.planned_wait = 0.0

    @classmethod
    def for_policy(cls, policy: RetryPolicy, limits: RateLimits = GITHUB_LIMITS) -> BoundedRetry:
        return cls(
            total=policy.retries,
            connect=min(policy.connect_retries, policy.retries),
            status_forcelist=[*limits.statuses, *range(500, 600)],
            allowed_methods=None,  # every verb: a duplicate POST is cleaned up by its caller
            raise_on_status=False,  # hand the last answer to the client library, which raises
            respect_retry_after_header=True,
            max_wait=policy.max_wait,
            first_backoff=policy.backoff,
            budget=_WaitBudget(policy.max_total_wait),
            limits=limits,
        )

    def new(self, **kw: Any) -> BoundedRetry:
        kw.setdefault("max_wait", self.max_wait)
        kw.setdefault("first_backoff", self.first_backoff)
        kw.setdefault("budget", self.budget)
        kw.setdefault("limits", self.limits)
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
            and response.status in self.limits.statuses
            and not self.limits.limited(response.status, response.headers)
        ):
            raise _gave_up(_pool, url, None)  # a real 403: not ours to retry
        limited = response is not None and self.limits.limited(response.status, response.headers)
        if method == "POST" and _path(url).endswith(LOOK_FIRST) and not limited:
            logger.warning(
                "%s %s: %s; not sent again here", method, _path(url), _said(response, error)
            )
            raise _gave_up(_pool, url, error)  # the answer (5xx) or the error goes to the caller
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        what = _said(response, error, self.limits.service)
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
        left = retry.total or 0
        if isinstance(error, ConnectTimeoutError) and retry.connect is not None:
            left = min(left, retry.connect)  # a connection that could not be made
        logger.warning(
            "%s %s: %s; retry %d of %d in %.1f s",
            method,
            _path(url),
            what,
            len(retry.history),
            len(retry.history) + left,
            wait,
        )
        return retry

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.planned_wait > 0:
            time.sleep(self.planned_wait)

    def _wait_for(self, response: BaseHTTPResponse | None, *, attempt: int) -> float:
        """Seconds to wait before the next try, as the forge's documentation asks."""
        if response is not None:
            retry_after = _retry_after(response.headers.get("retry-after"))
            if retry_after is not None:
                return retry_after
            if response.status in self.limits.statuses:
                reset = response.headers.get("x-ratelimit-reset")
                return _until_reset(reset or response.headers.get("ratelimit-reset"))
        return self.first_backoff * 2.0 ** max(attempt - 1, 0)


def _gave_up(
    pool: ConnectionPool | None, url: str | None, error: Exception | None
) -> MaxRetryError:
    """What urllib3 raises when retrying stops; it passes no pool either when it has none."""
    return MaxRetryError(cast("ConnectionPool", pool), url or "", error)


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


def _said(
    response: BaseHTTPResponse | None, error: Exception | None, service: str = "the forge"
) -> str:
    if response is not None:
        return f"{service} answered {response.status} {response.reason}"
    return f"the connection failed ({_short(error)})"


def _short(error: Exception | None) -> str:
    return type(error).__name__ if error is not None else "nothing"
