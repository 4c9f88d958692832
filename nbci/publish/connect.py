"""Which forge a publish goes to, and its client ready to use (no request made yet).

GitLab CI is recognised by `GITLAB_CI=true`, Bitbucket Pipelines by its
`BITBUCKET_BUILD_NUMBER`; anything else is GitHub (Actions or a local run with
flags). `--forge github|gitlab|bitbucket` overrides. The token comes from
`$GITHUB_TOKEN`, `$GITLAB_TOKEN` or `$BITBUCKET_TOKEN` unless `--token-env`
names another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from nbci.errors import PublishError, UsageError

if TYPE_CHECKING:
    from nbci.publish import PublishOptions
    from nbci.publish.forge import Forge

ForgeName = Literal["github", "gitlab", "bitbucket"]
FORGES: tuple[ForgeName, ...] = ("github", "gitlab", "bitbucket")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


class ForkPipeline(Exception):
    """A fork's merge request pipeline, without the parent's secrets: nothing to publish to."""


def detect_forge(env: Mapping[str, str], flag: str | None = None) -> ForgeName:
    from nbci.publish.bitbucket.context import is_bitbucket_pipelines
    from nbci.publish.gitlab.context import is_gitlab_ci

    if flag is not None:
        for name in FORGES:
            if flag == name:
                return name
        raise UsageError(f"--forge: expected github, gitlab or bitbucket, got {flag!r}")
    if is_gitlab_ci(env):
        return "gitlab"
    return "bitbucket" if is_bitbucket_pipelines(env) else "github"


def connect(options: PublishOptions, env: Mapping[str, str], artifact_pr: int | None) -> Forge:
    """The forge `options` and `env` name, with its token checked; raises ForkPipeline."""
    forge = detect_forge(env, options.forge)
    if forge == "gitlab":
        return _gitlab(options, env)
    if forge == "bitbucket":
        return _bitbucket(options, env)
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
    from nbci.publish.github.client import Session, missing_token
    from nbci.publish.github.context import resolve_context
    from nbci.publish.github.forge import GitHubForge

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
    from nbci.publish.gitlab.client import DEFAULT_TOKEN_ENV, GitLabSession, missing_token
    from nbci.publish.gitlab.context import resolve_gitlab_context
    from nbci.publish.gitlab.forge import GitLabForge

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


def _bitbucket(options: PublishOptions, env: Mapping[str, str]) -> Forge:
    """Bitbucket Cloud or Data Center (`bitbucket/context` tells which from --api-url)."""
    from nbci.publish.bitbucket.client import DEFAULT_TOKEN_ENV, BitbucketSession, missing_token
    from nbci.publish.bitbucket.cloud import CloudForge
    from nbci.publish.bitbucket.context import resolve_bitbucket_context
    from nbci.publish.bitbucket.data_center import DataCenterForge

    if options.check:
        raise UsageError(
            "--check: Bitbucket has no check runs; its build status and Code Insights report "
            "carry the verdict"
        )
    ctx = resolve_bitbucket_context(
        env,
        repo=options.repo,
        pr=options.pr,
        sha=options.sha,
        api_url=options.api_url,
        run_url=options.run_url,
    )
    token_env = options.token_env or DEFAULT_TOKEN_ENV
    token = read_token(env, token_env)
    if not token and ctx.in_pipelines and ctx.pr is not None and options.token_env is None:
        raise ForkPipeline(
            f"this pull request pipeline has no ${token_env}, so nbci publishes nothing: the "
            "report is in this step's artifacts (nbci-out/). Bitbucket gives no secured "
            "variables to pipelines of pull requests from forks; for a pull request from this "
            f"repository, add {token_env} as a secured repository variable (see the README)"
        )
    if not token:
        raise missing_token(token_env, in_pipelines=ctx.in_pipelines)
    session = BitbucketSession(
        api_url=ctx.api_url,
        repo=ctx.repo,
        token=token,
        token_env=token_env,
        policy=options.retry,
    )
    return CloudForge(session, ctx) if ctx.cloud else DataCenterForge(session, ctx)
