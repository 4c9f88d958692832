"""`nbci publish`: the report on the pull request, figures hosted, the verdict on the commit.

`publish` reads as its steps:

1. read the run directory — untrusted (a fork's artifact) — and validate it
   all, figures included, before any request to GitHub;
2. work out the target from the Actions environment: a pull request, a push to
   the default branch (which stores the baseline), or a bare commit;
3. find the baseline run and compare, then evaluate the gates;
4. commit the figures (and, on the default branch, the baseline) to the
   assets branch in one commit;
5. edit or create the sticky comment;
6. set the commit status (or a check run) on the tested commit;
7. append the report to the job summary.

Each GitHub step degrades rather than fails where it can: without
`contents: write` the comment links the run's artifact instead of showing
figures. What cannot be done ends in one `PublishError` line naming the
missing permission.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nbci.errors import PublishError, ResultsError, UsageError
from nbci.judge import Criteria, judge
from nbci.model import Comparison, Run, Verdict
from nbci.publish.assets import (
    Asset,
    Figures,
    Hosting,
    Tip,
    figure_assets,
    load_figures,
    read_tip,
    store,
)
from nbci.publish.baseline import DEFAULT_DEPTH, Baseline, find_baseline, run_folder
from nbci.publish.client import PermissionDenied, RetryPolicy, Session
from nbci.publish.comment import comment_body, upsert_comment
from nbci.publish.context import Context, read_artifact_pr, resolve_context
from nbci.publish.history import History, read_history, with_trend_charts
from nbci.publish.report import render_report
from nbci.publish.status import describe, passed, post_check, post_status
from nbci.results import RESULTS_FILE, read_run, run_to_dict

if TYPE_CHECKING:
    from nbci.gates import GateRule

__all__ = ["PublishError", "PublishOptions", "PublishOutcome", "RetryPolicy", "publish"]

logger = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_BRANCH = re.compile(r"(?!.*\.\.)(?!.*//)[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}(?<![./])(?<!\.lock)")


@dataclass(frozen=True)
class PublishOptions:
    out_dir: Path
    name: str = "nbci"
    """The report's name: the comment marker and the status context."""
    repo: str | None = None
    pr: int | None = None
    sha: str | None = None
    api_url: str | None = None
    token_env: str = "GITHUB_TOKEN"
    check: bool = False
    """A check run with the report, instead of a commit status."""
    assets_branch: str = "nbci-assets"
    higher_is_better: tuple[str, ...] = ()
    """Metric-name globs from the config; see `nbci.compare.direction_of`."""
    lower_is_better: tuple[str, ...] = ()
    gates: Sequence[GateRule] = ()
    """Parsed `[tool.nbci.gates]` rules."""
    templates: Path | None = None
    baseline_depth: int = DEFAULT_DEPTH
    """How many commits back to look for a stored baseline."""
    history: int = 20
    """On a pull request, how many base-branch commits' stored runs give each metric's
    range (`nbci.publish.history`); 0: none."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class PublishOutcome:
    kind: Literal["pull_request", "baseline", "commit"]
    """What was published to: a PR, the default branch (baseline stored), a bare commit."""
    sha: str
    """The commit that got the status or check run."""
    passed: bool
    """Every notebook ran and every gate passed (the verdict posted)."""
    pr: int | None = None
    comment_url: str | None = None
    check_url: str | None = None
    assets_commit: str | None = None
    """The assets-branch commit that holds the figures (None: not hosted)."""
    baseline_sha: str | None = None
    """The commit whose stored run this one was compared with."""
    stored_baseline: bool = False
    notes: tuple[str, ...] = ()
    """What was left out or could not be done, one line each."""

    @property
    def lines(self) -> list[str]:
        """What happened, one line each, for the CLI to print."""
        verdict = "passed" if self.passed else "failed"
        lines = []
        if self.comment_url:
            lines.append(f"Commented on pull request #{self.pr}: {self.comment_url}")
        if self.assets_commit:
            what = "Results and figures" if self.stored_baseline else "Figures"
            lines.append(f"{what} stored at {self.assets_commit[:12]} on the assets branch")
        if self.baseline_sha:
            lines.append(f"Compared with the stored run of {self.baseline_sha[:12]}")
        where = f"check run {self.check_url}" if self.check_url else "commit status"
        lines.append(f"Verdict ({verdict}) set as a {where} on {self.sha[:12]}")
        lines += [f"warning: {note}" for note in self.notes]
        return lines


@dataclass(frozen=True)
class _Target:
    kind: Literal["pull_request", "baseline", "commit"]
    sha: str
    pr: int | None = None
    base_sha: str | None = None
    """Where the baseline search starts."""


def publish(options: PublishOptions, env: Mapping[str, str] = os.environ) -> PublishOutcome:
    """Publish the run in `options.out_dir`; raises PublishError, ResultsError or UsageError."""
    _check_branch(options.assets_branch)
    run = read_run(options.out_dir)  # untrusted: everything is checked before any request
    figures = load_figures(run, options.out_dir)
    ctx = resolve_context(
        env,
        repo=options.repo,
        pr=options.pr,
        sha=options.sha,
        api_url=options.api_url,
        artifact_pr=read_artifact_pr(options.out_dir),
    )
    session = Session(
        api_url=ctx.api_url,
        repo=ctx.repo,
        token=_token(env, options.token_env),
        token_env=options.token_env,
        policy=options.retry,
    )
    target = _target(session, ctx)
    notes = list(figures.skipped)
    tip = _read_tip(session, options.assets_branch, notes)
    baseline = _baseline(session, tip, target, options, notes)
    history = History()
    if target.kind == "pull_request" and target.base_sha and baseline:
        known = {baseline.sha: baseline.run}
        history = read_history(
            session, tip, target.base_sha, commits=options.history, notes=notes, known=known
        )
    judged = judge(
        run,
        baseline.run if baseline else None,
        label=_baseline_label(baseline, target) if baseline else "",
        criteria=Criteria(options.gates, options.higher_is_better, options.lower_is_better),
        history=history.runs,
    )
    comparison, verdict = judged.comparison, judged.verdict
    figures = with_trend_charts(figures, comparison, verdict)
    hosting = _host(session, tip, target, run, figures, notes)
    report = render_report(
        run,
        comparison=comparison,
        verdict=verdict,
        name=options.name,
        templates=options.templates,
        ctx=ctx,
        hosting=hosting,
        figures=figures,
        baseline=baseline,
        notes=notes,
    )
    comment_url = None
    if target.pr is not None:
        body = comment_body(options.name, report)
        comment_url = upsert_comment(session, target.pr, options.name, body).url
    success = passed(run, verdict)
    check_url = _verdict(session, options, ctx, target, run, verdict, comparison, success, report)
    _job_summary(env, report)
    if hosting.error is not None:  # storing the baseline is the point of this publish
        raise hosting.error
    return PublishOutcome(
        kind=target.kind,
        sha=target.sha,
        passed=success,
        pr=target.pr,
        comment_url=comment_url,
        check_url=check_url,
        assets_commit=hosting.tip.commit if hosting.folder else None,
        baseline_sha=baseline.sha if baseline else None,
        stored_baseline=target.kind == "baseline" and hosting.folder is not None,
        notes=tuple(notes),
    )


# -- 1-2: inputs and target ----------------------------------------------------------


def _check_branch(name: str) -> None:
    if not _BRANCH.fullmatch(name):
        raise UsageError(f"--assets-branch: {name!r} is not a usable branch name")


def _token(env: Mapping[str, str], name: str) -> str:
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


def _target(session: Session, ctx: Context) -> _Target:
    if ctx.pr is not None:
        return _pull_request(session, ctx)
    if ctx.sha is None:
        raise UsageError(
            "nothing to publish to: no pull request or commit in the environment; "
            "pass --pr NUMBER or --sha SHA"
        )
    if ctx.branch is not None and ctx.branch == _default_branch(session, ctx):
        return _Target("baseline", ctx.sha, base_sha=ctx.sha)
    return _Target("commit", ctx.sha)


def _default_branch(session: Session, ctx: Context) -> str:
    if ctx.default_branch:
        return ctx.default_branch
    with session.errors(f"read the repository {ctx.repo}", "contents: read"):
        return session.repo.default_branch


def _pull_request(session: Session, ctx: Context) -> _Target:
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
    return _Target("pull_request", sha, pr=ctx.pr, base_sha=base_sha)


# -- 3: baseline, comparison, gates --------------------------------------------------


def _read_tip(session: Session, branch: str, notes: list[str]) -> Tip:
    try:
        return read_tip(session, branch)
    except PermissionDenied as exc:
        notes.append(f"the {branch} branch could not be read ({exc.permission} missing)")
        logger.warning("%s", exc)
        return Tip(branch)


def _baseline(
    session: Session, tip: Tip, target: _Target, options: PublishOptions, notes: list[str]
) -> Baseline | None:
    if target.base_sha is None or tip.truncated:
        return None
    try:
        return find_baseline(
            session,
            tip,
            target.base_sha,
            include_start=target.kind != "baseline",  # a push compares with its ancestors
            depth=options.baseline_depth,
        )
    except ResultsError as exc:
        notes.append(f"the stored baseline was rejected: {exc}")
        logger.warning("%s", exc)
    except PermissionDenied as exc:
        notes.append(f"the baseline could not be read ({exc.permission} missing)")
        logger.warning("%s", exc)
    return None


def _baseline_label(baseline: Baseline, target: _Target) -> str:
    short = baseline.sha[:12]
    if target.kind == "baseline":
        return f"{short}, " + ("the parent commit" if baseline.distance == 1 else "an ancestor")
    if baseline.distance == 0:
        return f"{short}, the base commit"
    plural = "s" if baseline.distance > 1 else ""
    return f"{short}, {baseline.distance} commit{plural} before the base commit"


# -- 4: figures and the stored baseline ----------------------------------------------


def _host(
    session: Session, tip: Tip, target: _Target, run: Run, figures: Figures, notes: list[str]
) -> Hosting:
    """Commit what the target needs to the assets branch."""
    if target.kind == "commit":
        return Hosting(tip)
    if target.kind == "pull_request":
        assert target.pr is not None
        folder = f"pr/{target.pr}"
        assets = figure_assets(figures.files, folder)
        message = f"nbci: figures of #{target.pr} at {target.sha[:12]}"
        replace: str | None = folder
    else:
        folder = run_folder(target.sha)
        assets = [*figure_assets(figures.files, folder), _results_asset(run, folder)]
        message = f"nbci: results of {target.sha[:12]} (baseline)"
        replace = None
    try:
        tip = store(session, tip, assets, replace=replace, message=message)
    except PermissionDenied as exc:
        logger.warning("%s", exc)
        notes.append(f"figures not hosted: the token lacks `{exc.permission}`")
        return Hosting(tip, error=exc if target.kind == "baseline" else None)
    return Hosting(tip, folder)


def _results_asset(run: Run, folder: str) -> Asset:
    text = json.dumps(run_to_dict(run), indent=1, ensure_ascii=False, allow_nan=False)
    return Asset(f"{folder}/{RESULTS_FILE}", (text + "\n").encode("utf-8"))


# -- 6-7: verdict and job summary (5, the comment, is in `publish` itself) -------------


def _verdict(
    session: Session,
    options: PublishOptions,
    ctx: Context,
    target: _Target,
    run: Run,
    verdict: Verdict,
    comparison: Comparison | None,
    success: bool,
    report: str,
) -> str | None:
    description = describe(run, verdict, comparison)
    if options.check:
        return post_check(
            session,
            target.sha,
            name=options.name,
            success=success,
            title=description,
            summary=report,
            details_url=ctx.run_url,
        )
    post_status(
        session,
        target.sha,
        context=options.name,
        success=success,
        description=description,
        target_url=ctx.run_url,
    )
    return None


def _job_summary(env: Mapping[str, str], report: str) -> None:
    """Append the report to the Actions job summary, when there is one."""
    from nbci.actions import append_step_summary

    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        append_step_summary(report, path=Path(path))
