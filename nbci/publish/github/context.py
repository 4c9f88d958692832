"""Where a publish goes: the repository, pull request and commit, from the Actions environment.

`resolve_context` reads what the environment and flags say (no request);
`resolve_target` then asks GitHub what that means: the pull request's head and
base commits, or whether a push went to the default branch.

GitHub Actions describes the run in `GITHUB_*` variables and the event payload
at `GITHUB_EVENT_PATH` (written by GitHub, so trusted). Flags override each
value. A pull request number that comes from a fork's artifact (`pr-number`
beside `results.json`) is untrusted: it is read strictly here and checked
against the workflow run later, once the pull request is fetched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbci._files import read_inside
from nbci.errors import PublishError, ResultsError, UsageError
from nbci.publish.forge import Target, checked_sha, checked_url, commit_target, dig

if TYPE_CHECKING:
    from nbci.publish.github.client import Session

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_SERVER_URL = "https://github.com"
PR_NUMBER_FILE = "pr-number"
"""Written by the `pull_request` workflow into the artifact: the pull request's number."""
MAX_EVENT_BYTES = 32 * 1024 * 1024
_REPO = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_PR_NUMBER = re.compile(r"[1-9][0-9]{0,9}")


@dataclass(frozen=True)
class WorkflowRun:
    """The run that produced the artifact (event `workflow_run`): what it tested."""

    event: str
    head_sha: str
    head_branch: str | None
    head_repo: str | None
    html_url: str | None


@dataclass(frozen=True)
class Context:
    repo: str
    """`owner/name`."""
    api_url: str
    server_url: str
    event: str | None = None
    sha: str | None = None
    """The commit the run tested; for a pull request its head, never the merge commit."""
    pr: int | None = None
    pr_from_artifact: bool = False
    branch: str | None = None
    """The branch pushed to (push events)."""
    default_branch: str | None = None
    run_url: str | None = None
    workflow_run: WorkflowRun | None = None


def resolve_context(
    env: Mapping[str, str],
    *,
    repo: str | None = None,
    pr: int | None = None,
    sha: str | None = None,
    api_url: str | None = None,
    artifact_pr: int | None = None,
) -> Context:
    """The publish target from `env` (the Actions variables), each flag overriding its value."""
    full_name = repo or env.get("GITHUB_REPOSITORY") or ""
    if not _REPO.fullmatch(full_name):
        shown = f" (got {full_name!r})" if full_name else ""
        raise UsageError(
            f"no repository to publish to{shown}: pass --repo OWNER/NAME, "
            "or run inside GitHub Actions (GITHUB_REPOSITORY)"
        )
    api = checked_url(api_url or env.get("GITHUB_API_URL") or DEFAULT_API_URL, "--api-url")
    server = checked_url(env.get("GITHUB_SERVER_URL") or _server_for(api), "GITHUB_SERVER_URL")
    event_name = env.get("GITHUB_EVENT_NAME") or None
    payload = _load_event(env.get("GITHUB_EVENT_PATH"))
    found = _from_event(event_name, payload, env)
    run_url = found.pop("run_url", None)
    if run_url is None and env.get("GITHUB_RUN_ID", "").isdigit():
        run_url = f"{server}/{full_name}/actions/runs/{env['GITHUB_RUN_ID']}"
    workflow_run: WorkflowRun | None = found.pop("workflow_run", None)
    pr_number = pr if pr is not None else found.pop("pr", None)
    from_artifact = False
    from_pull_request = workflow_run is not None and workflow_run.event.startswith("pull_request")
    if pr_number is None and from_pull_request:
        pr_number, from_artifact = artifact_pr, artifact_pr is not None
    if pr_number is not None and pr_number < 1:
        raise UsageError(f"--pr: expected a pull request number, got {pr_number}")
    commit = checked_sha(sha or found.pop("sha", None))
    return Context(
        repo=full_name,
        api_url=api,
        server_url=server,
        event=event_name,
        sha=commit,
        pr=pr_number,
        pr_from_artifact=from_artifact,
        branch=found.get("branch"),
        default_branch=found.get("default_branch"),
        run_url=run_url,
        workflow_run=workflow_run,
    )


def resolve_target(session: Session, ctx: Context) -> Target:
    """The target `ctx` names, asking GitHub for a pull request's commits or the default branch.

    A pull request number from a fork's artifact must name the pull request
    whose head the workflow run tested; otherwise PublishError.
    """
    if ctx.pr is not None:
        return _pull_request(session, ctx)
    return commit_target(
        ctx.sha,
        ctx.branch,
        lambda: _default_branch(session, ctx),
        review="pull request",
        pr_flag="--pr NUMBER",
    )


def _default_branch(session: Session, ctx: Context) -> str:
    if ctx.default_branch:
        return ctx.default_branch
    with session.errors(f"read the repository {ctx.repo}", "contents: read"):
        return session.repo.default_branch


def _pull_request(session: Session, ctx: Context) -> Target:
    assert ctx.pr is not None
    with session.errors(f"read pull request #{ctx.pr}", "pull-requests: read"):
        pull = session.repo.get_pull(ctx.pr)
        head_sha, head_ref, base_sha = pull.head.sha, pull.head.ref, pull.base.sha
        head_repo = pull.head.repo.full_name if pull.head.repo else None
    run = ctx.workflow_run
    if run is not None and run.head_sha:
        same_commit = head_sha == run.head_sha
        same_branch = (head_repo, head_ref) == (run.head_repo, run.head_branch)
        if not (same_commit or same_branch):
            origin = "the artifact's pr-number" if ctx.pr_from_artifact else "--pr"
            raise PublishError(
                f"{origin} names pull request #{ctx.pr}, but this workflow run tested "
                f"{run.head_sha[:12]} of {run.head_repo}:{run.head_branch}, which is not that "
                "pull request's head: refusing to publish there"
            )
    sha = ctx.sha or head_sha
    return Target("pull_request", sha, pr=ctx.pr, base_sha=base_sha)


def read_artifact_pr(out_dir: Path) -> int | None:
    """The pull request number the `pull_request` workflow stored in the artifact, if any.

    Untrusted: a regular file of a few bytes holding a positive integer, or an error.
    """
    path = out_dir / PR_NUMBER_FILE
    if not path.exists() and not path.is_symlink():
        return None
    data = read_inside(out_dir, PR_NUMBER_FILE, 32)
    if isinstance(data, str):
        raise ResultsError(f"{path}: expected a small file holding a pull request number ({data})")
    text = data.decode("ascii", "replace").strip()
    if not _PR_NUMBER.fullmatch(text):
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise ResultsError(f"{path}: expected a pull request number, got {shown!r}")
    return int(text)


def _server_for(api_url: str) -> str:
    """github.com's web address for its API; GitHub Enterprise serves the API under /api/v3."""
    if api_url == DEFAULT_API_URL:
        return DEFAULT_SERVER_URL
    return api_url.removesuffix("/api/v3")


def _load_event(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    file = Path(path)
    try:
        if file.stat().st_size > MAX_EVENT_BYTES:
            raise UsageError(f"GITHUB_EVENT_PATH: {file} is larger than {MAX_EVENT_BYTES} bytes")
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"GITHUB_EVENT_PATH: cannot read {file} ({exc.strerror})") from None
    except ValueError as exc:
        raise UsageError(f"GITHUB_EVENT_PATH: {file} is not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def _from_event(
    event: str | None, payload: dict[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    """What the event says: pr, sha, branch, default_branch, run_url, workflow_run."""
    found: dict[str, Any] = {"default_branch": dig(payload, "repository", "default_branch")}
    if event in ("pull_request", "pull_request_target"):
        found["pr"] = _int(dig(payload, "pull_request", "number"))
        found["sha"] = dig(payload, "pull_request", "head", "sha")
    elif event == "workflow_run":
        run = _dict(payload.get("workflow_run"))
        workflow_run = WorkflowRun(
            event=str(run.get("event") or ""),
            head_sha=str(run.get("head_sha") or ""),
            head_branch=_str(run.get("head_branch")),
            head_repo=_str(dig(run, "head_repository", "full_name")),
            html_url=_str(run.get("html_url")),
        )
        found.update(
            workflow_run=workflow_run,
            sha=workflow_run.head_sha or None,
            branch=workflow_run.head_branch if workflow_run.event == "push" else None,
            run_url=workflow_run.html_url,
        )
        pulls = run.get("pull_requests")
        if workflow_run.event.startswith("pull_request") and isinstance(pulls, list) and pulls:
            found["pr"] = _int(dig(pulls[0], "number"))  # same-repository PRs only; forks: []
    else:
        found["sha"] = _str(payload.get("after")) or env.get("GITHUB_SHA") or None
        ref = _str(payload.get("ref")) or env.get("GITHUB_REF") or ""
        if ref.startswith("refs/heads/"):
            found["branch"] = ref.removeprefix("refs/heads/")
    if found.get("sha") == "0" * 40:  # a deleted branch
        found["sha"] = None
    return found


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
