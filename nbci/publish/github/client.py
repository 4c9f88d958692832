"""The GitHub client: PyGithub with bounded, logged retries, and its errors translated.

Retries happen per HTTP request inside urllib3 (`nbci.publish.retry`), following
GitHub's rate-limit guidance: wait out `retry-after`, or until
`x-ratelimit-reset` when `x-ratelimit-remaining` is 0; back off exponentially
on 5xx and dropped connections, within the `RetryPolicy`'s bounds.

Every PyGithub or network error leaves this package as one `PublishError` line
that says what nbci was doing and, for 401/403/404, which permission the
token needs. The token never appears in a message or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nbci import __version__
from nbci._text import one_line
from nbci.errors import PublishError
from nbci.publish.forge import PermissionDenied
from nbci.publish.retry import GITHUB_LIMITS, BoundedRetry, RetryPolicy

if TYPE_CHECKING:
    from github import Github
    from github.Repository import Repository

logger = logging.getLogger(__name__)

TOKEN_HELP = "in GitHub Actions: `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`"
"""How a workflow hands the token over, quoted in messages."""


# -- the session -----------------------------------------------------------------


def missing_token(name: str) -> PublishError:
    """What to do when `$name` holds no token."""
    return PublishError(
        f"no GitHub token in ${name}: set it (in GitHub Actions: "
        f"`env: {name}: ${{{{ secrets.GITHUB_TOKEN }}}}`) or name another variable "
        "with --token-env"
    )


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
    status = getattr(exc, "status", None)
    if status not in GITHUB_LIMITS.statuses:
        return False
    said = _message(getattr(exc, "data", None)).lower()
    return GITHUB_LIMITS.limited(status, _lower(getattr(exc, "headers", None))) or (
        "rate limit" in said
    )


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
    return one_line(message)


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
