"""Where a publish goes on GitLab: the project, merge request and commit, from GitLab CI.

GitLab CI describes the pipeline in predefined variables (docs.gitlab.com/ci/
variables/predefined_variables); the flags mean what they mean on GitHub and
override each value: `--repo` is the project's path (`group/sub/name`) or id,
`--pr` the merge request's iid, `--api-url` the server (or its `/api/v4`).

Which commit gets the verdict: in a merge request pipeline, the source
branch's head. A merged-results pipeline tests a merge commit
(`CI_COMMIT_SHA`), so there the head is `CI_MERGE_REQUEST_SOURCE_BRANCH_SHA`,
or the merge request's `sha` as the API reports it.

A merge request from a fork whose pipeline runs in the fork has none of the
parent project's CI/CD variables (no token to publish with): `fork_of` names
the parent, and `publish` leaves the report in the job's artifacts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from nbci.errors import UsageError
from nbci.publish.forge import checked_sha, checked_url, is_full_sha

DEFAULT_SERVER_URL = "https://gitlab.com"
API_SUFFIX = "/api/v4"
_PROJECT = re.compile(
    r"[1-9][0-9]{0,18}|[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}(/[A-Za-z0-9_.-]{1,255}){1,20}"
)
_MERGE_COMMIT_EVENTS = ("merged_result", "merge_train")


@dataclass(frozen=True)
class GitLabContext:
    server_url: str
    """`https://gitlab.com`, or a self-managed instance."""
    project: str
    """The project's full path, or its numeric id."""
    mr_iid: int | None = None
    sha: str | None = None
    """The tested commit when the variables say it (never a merged-results merge commit)."""
    base_sha: str | None = None
    """`CI_MERGE_REQUEST_DIFF_BASE_SHA`: where the baseline search starts."""
    branch: str | None = None
    """`CI_COMMIT_BRANCH`: the branch pushed to (branch pipelines only)."""
    default_branch: str | None = None
    pipeline_url: str | None = None
    fork_of: str | None = None
    """The parent project, when this is a fork's merge request pipeline running in the fork."""

    @property
    def project_url(self) -> str:
        return f"{self.server_url}/{self.project}"


def is_gitlab_ci(env: Mapping[str, str]) -> bool:
    """GitLab CI sets `GITLAB_CI=true` in every job."""
    return env.get("GITLAB_CI", "").strip().lower() == "true"


def resolve_gitlab_context(
    env: Mapping[str, str],
    *,
    repo: str | None = None,
    pr: int | None = None,
    sha: str | None = None,
    api_url: str | None = None,
) -> GitLabContext:
    """The publish target from GitLab CI's variables, each flag overriding its value."""
    in_mr = bool(env.get("CI_MERGE_REQUEST_IID"))
    project = (
        repo
        or (env.get("CI_MERGE_REQUEST_PROJECT_PATH") if in_mr else None)
        or env.get("CI_PROJECT_PATH")
        or env.get("CI_PROJECT_ID")
        or ""
    ).strip()
    if not _PROJECT.fullmatch(project):
        shown = f" (got {project!r})" if project else ""
        raise UsageError(
            f"no GitLab project to publish to{shown}: pass --repo GROUP/NAME (or the project id), "
            "or run inside GitLab CI (CI_PROJECT_PATH)"
        )
    mr_iid = pr if pr is not None else _iid(env.get("CI_MERGE_REQUEST_IID"))
    commit = checked_sha(sha or _tested_commit(env, in_mr=in_mr))
    base = env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or None
    return GitLabContext(
        server_url=_server(api_url, env),
        project=project,
        mr_iid=mr_iid,
        sha=commit,
        base_sha=base if base and is_full_sha(base) else None,
        branch=None if in_mr else (env.get("CI_COMMIT_BRANCH") or None),
        default_branch=env.get("CI_DEFAULT_BRANCH") or None,
        pipeline_url=_web_url(env.get("CI_PIPELINE_URL")),
        fork_of=_fork_parent(env) if repo is None else None,
    )


def _tested_commit(env: Mapping[str, str], *, in_mr: bool) -> str | None:
    if in_mr:
        head = env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA")
        if head:
            return head
        if env.get("CI_MERGE_REQUEST_EVENT_TYPE") in _MERGE_COMMIT_EVENTS:
            return None  # CI_COMMIT_SHA is the merge commit: ask the API for the head
    return env.get("CI_COMMIT_SHA") or None


def _fork_parent(env: Mapping[str, str]) -> str | None:
    """The parent project when the pipeline runs in a fork for a merge request into the parent."""
    source = env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
    target = env.get("CI_MERGE_REQUEST_PROJECT_ID")
    here = env.get("CI_PROJECT_ID")
    if source and target and source != target and here == source:
        return env.get("CI_MERGE_REQUEST_PROJECT_PATH") or target
    return None


def _server(api_url: str | None, env: Mapping[str, str]) -> str:
    """The server's web address: python-gitlab adds `/api/v4` itself."""
    where = "--api-url" if api_url else "CI_API_V4_URL"
    value = api_url or env.get("CI_API_V4_URL")
    if not value:
        where, value = "CI_SERVER_URL", env.get("CI_SERVER_URL") or DEFAULT_SERVER_URL
    return checked_url(value, where).removesuffix(API_SUFFIX)


def _web_url(value: str | None) -> str | None:
    return value if value and re.fullmatch(r"https?://[^\s]+", value) else None


def _iid(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None
