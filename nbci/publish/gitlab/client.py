"""The GitLab client: python-gitlab with bounded, logged retries, and its errors translated.

python-gitlab's own retry waits whatever `Retry-After` says and logs nothing,
so it is switched off and the `BoundedRetry` of `nbci.publish.retry` is mounted
on its `requests` session instead: 5xx, dropped connections and 429 (with
`Retry-After` or `RateLimit-Reset`) are retried within the `RetryPolicy`'s
bounds, every wait logged, exactly as on GitHub. (This module is imported only when
publishing to GitLab, so python-gitlab is imported at its top.)

The token is a project access token (role Developer, scope `api`) in
`$GITLAB_TOKEN`. `CI_JOB_TOKEN` cannot write merge request notes or commit
statuses, so a job that has only that is told, in one line and before any
request, what to create. Every python-gitlab or network error leaves as one
`PublishError` line naming, for 401/403/404, the scope or role the token
needs. The token never appears in a message or a log line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import gitlab
import requests
from requests.adapters import HTTPAdapter

from nbci import __version__
from nbci._text import one_line
from nbci.errors import PublishError
from nbci.publish.forge import PermissionDenied
from nbci.publish.retry import GITLAB_LIMITS, BoundedRetry, RetryPolicy

DEFAULT_TOKEN_ENV = "GITLAB_TOKEN"
READ = "the `read_api` scope and at least the Reporter role"
WRITE = "the `api` scope and at least the Developer role"
CREATE_TOKEN = (
    "create a project access token (Settings > Access tokens) with the Developer role and "
    "the `api` scope, and store it as a masked CI/CD variable named {name}"
)


def missing_token(env: Mapping[str, str], name: str) -> PublishError:
    """What to create when `$name` holds no token (and say so if CI_JOB_TOKEN is all there is)."""
    create = CREATE_TOKEN.format(name=name)
    if env.get("CI_JOB_TOKEN"):
        return PublishError(
            f"no GitLab token in ${name}, only CI_JOB_TOKEN, which cannot write merge "
            f"request notes or commit statuses: {create}"
        )
    return PublishError(f"no GitLab token in ${name}: {create} (or use --token-env)")


class GitLabSession:
    """One project on one GitLab, with the token kept out of every message."""

    def __init__(
        self, *, server_url: str, project: str, token: str, token_env: str, policy: RetryPolicy
    ) -> None:
        self.server_url = server_url
        self.project_name = project
        self.token_env = token_env
        self._token = token
        self.gitlab = _connect(server_url, token, policy)
        self.project = self.gitlab.projects.get(project, lazy=True)  # lazy: no request yet

    def scrub(self, text: str) -> str:
        """`text` with the token (should a server ever echo it) blanked out."""
        return text.replace(self._token, "***") if len(self._token) >= 4 else text

    @contextmanager
    def errors(self, action: str, needs: str) -> Iterator[None]:
        """Translate what python-gitlab or the network raises while doing `action`.

        `action` reads after "to" ("edit nbci's note"); `needs` is what the token
        needs for it (`WRITE`).
        """
        try:
            yield
        except gitlab.GitlabError as exc:
            message = self.scrub(self.describe(exc, action, needs))
            if exc.response_code == 403:
                raise PermissionDenied(message, needs) from None
            raise PublishError(message) from None
        except requests.RequestException as exc:
            reason = exc.args[0] if exc.args else exc
            reason = getattr(reason, "reason", reason)  # MaxRetryError -> the underlying error
            raise PublishError(
                self.scrub(
                    f"could not reach GitLab at {self.server_url} to {action}: "
                    f"{type(exc).__name__} ({type(reason).__name__})"
                )
            ) from None

    def describe(self, exc: Any, action: str, needs: str) -> str:
        status = getattr(exc, "response_code", None)
        said = f"{status} {_message(getattr(exc, 'error_message', ''))}".strip()
        if status == 401:
            return (
                f"GitLab rejected the token in ${self.token_env} ({said}) when nbci tried to "
                f"{action}: {CREATE_TOKEN.format(name=self.token_env)}"
            )
        if status == 403:
            return (
                f"GitLab refused to let nbci {action} ({said}): the token needs {needs} in "
                f"{self.project_name} (a project access token; CI_JOB_TOKEN cannot do this)"
            )
        if status == 404:
            return (
                f"GitLab answered 404 Not Found when nbci tried to {action} in "
                f"{self.project_name}: check --repo/--pr/--sha, and that the token can see the "
                f"project and has {needs} (GitLab hides what a token may not read)"
            )
        if status == 429:
            return (
                f"GitLab's rate limit stopped nbci from trying to {action} ({said}): "
                "nbci does not wait that long; run the job again later"
            )
        if status is not None and status >= 500:
            return f"GitLab kept failing ({said}) when nbci tried to {action}; try again later"
        return f"GitLab rejected nbci's request to {action} ({said})"


class _BoundedGitlab(gitlab.Gitlab):
    """python-gitlab without its own 429 sleep: the session's BoundedRetry waits, within bounds."""

    def http_request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["obey_rate_limit"] = False
        return super().http_request(*args, **kwargs)


def _connect(server_url: str, token: str, policy: RetryPolicy) -> gitlab.Gitlab:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=BoundedRetry.for_policy(policy, GITLAB_LIMITS))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return _BoundedGitlab(
        url=server_url,
        private_token=token,
        timeout=policy.timeout,
        user_agent=f"nbci/{__version__}",
        per_page=100,
        retry_transient_errors=False,
        keep_base_url=True,  # follow pagination links on the configured address
        session=session,
    )


def _message(value: Any) -> str:
    """GitLab's own words from an error: `message` or `error`, on one line."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
    return one_line(text)
