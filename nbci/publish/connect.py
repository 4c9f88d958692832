"""Which forge a publish goes to, and its client ready to use (no request made yet).

GitLab CI is recognised by `GITLAB_CI=true`; anything else is GitHub (Actions
or a local run with flags). `--forge github|gitlab` overrides. The token comes
from `$GITHUB_TOKEN` or `$GITLAB_TOKEN` unless `--token-env` names another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from nbci.errors import PublishError, UsageError

if TYPE_CHECKING:
    from nbci.publish import PublishOptions
    from nbci.publish.forge import Forge

ForgeName = Literal["github", "gitlab"]
FORGES: tuple[ForgeName, ...] = ("github", "gitlab")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


class ForkPipeline(Exception):
    """A fork's merge request pipeline, without the parent's secrets: nothing to publish to."""


def detect_forge(env: Mapping[str, str], flag: str | None = None) -> ForgeName:
    from nbci.publish.gitlab_context import is_gitlab_ci

    if flag is not None:
        if flag not in FORGES:
            raise UsageError(f"--forge: expected github or gitlab, got {flag!r}")
        return "gitlab" if flag == "gitlab" else "github"
    return "gitlab" if is_gitlab_ci(env) else "github"


def connect(options: PublishOptions, env: Mapping[str, str], artifact_pr: int | None) -> Forge:
    """The forge `options` and `env` name, with its token checked; raises ForkPipeline."""
    if detect_forge(env, options.forge) == "gitlab":
        return _gitlab(options, env)
    return _github(options, env, artifact_pr)


def read_token(env: Mapping[str, str], name: str) -> str:
    """The token in the environment variable `name` ("" when unset), checked but never shown."""
    if not _ENV_NAME.fullmatch(name):
        raise UsageError(f"--token-env: {name!r} is not an environment variable name")
    token = env.get(name, "").strip()
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise PublishError(f"the token in ${name} contains spaces or control characters")
    return token


def _github(options: PublishOptions, env: Mapping[str, str], artifact_pr: int | None) -> Forge:
    from nbci.publish.client import Session, missing_token
    from nbci.publish.context import resolve_context
    from nbci.publish.github import GitHubForge

    ctx = resolve_context(
        env,
        repo=options.repo,
        pr=options.pr,
        sha=options.sha,
        api_url=options.api_url,
        artifact_pr=artifact_pr,
    )
    token_env = options.token_env or "GITHUB_TOKEN"
    token = read_token(env, token_env)
    if not token:
        raise missing_token(token_env)
    session = Session(
        api_url=ctx.api_url,
        repo=ctx.repo,
        token=token,
        token_env=token_env,
        policy=options.retry,
    )
    return GitHubForge(session, ctx)


def _gitlab(options: PublishOptions, env: Mapping[str, str]) -> Forge:
    from nbci.publish.gitlab import GitLabForge
    from nbci.publish.gitlab_client import DEFAULT_TOKEN_ENV, GitLabSession, missing_token
    from nbci.publish.gitlab_context import resolve_gitlab_context

    if options.check:
        raise UsageError("--check: GitLab has no check runs; its commit status carries the verdict")
    ctx = resolve_gitlab_context(
        env, repo=options.repo, pr=options.pr, sha=options.sha, api_url=options.api_url
    )
    if ctx.fork_of is not None:
        raise ForkPipeline(
            f"this merge request pipeline runs in a fork, without {ctx.fork_of}'s CI/CD "
            "variables, so nbci publishes nothing: the report is in this job's artifacts "
            f"(nbci-out/). A maintainer of {ctx.fork_of} can run the pipeline in the parent "
            "project (the merge request's Pipelines tab > Run pipeline) to publish it there"
        )
    token_env = options.token_env or DEFAULT_TOKEN_ENV
    token = read_token(env, token_env)
    if not token:
        raise missing_token(env, token_env)
    session = GitLabSession(
        server_url=ctx.server_url,
        project=ctx.project,
        token=token,
        token_env=token_env,
        policy=options.retry,
    )
    return GitLabForge(session, ctx)
