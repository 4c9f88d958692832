"""The steps of a publish after the target is known, each degrading rather than failing.

`nbci.publish.publish` calls them in order: read the assets branch, find the
baseline, compare and judge, host the figures (and store the baseline), set the
verdict, write the job summary. A step that lacks a permission adds a note (shown
under the report) instead of ending the publish, except storing a baseline, whose
error `publish` raises once everything else is done.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from nbci._files import safe_name
from nbci.errors import ResultsError, UsageError
from nbci.judge import Criteria, Judgement, judge
from nbci.model import Comparison, Run, Verdict, passed
from nbci.publish.assets import (
    Asset,
    Figures,
    Hosting,
    Tip,
    figure_assets,
    read_tip,
    store,
    with_folder,
)
from nbci.publish.baseline import Baseline, find_baseline, run_folder
from nbci.publish.branch_history import History, read_history
from nbci.publish.forge import PermissionDenied, Target
from nbci.publish.index import REVIEWS, Pruning
from nbci.publish.insights import PostsInsights, build_insight
from nbci.publish.status import DESCRIPTION_LIMIT, describe, fit
from nbci.results import RESULTS_FILE, run_json

if TYPE_CHECKING:
    from nbci.publish import PublishOptions
    from nbci.publish.forge import Forge

logger = logging.getLogger(__name__)

_BRANCH = re.compile(r"(?!.*\.\.)(?!.*//)[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}(?<![./])(?<!\.lock)")


def check_branch(name: str) -> None:
    if not _BRANCH.fullmatch(name):
        raise UsageError(f"--assets-branch: {name!r} is not a usable branch name")


def read_assets_tip(forge: Forge, branch: str, notes: list[str]) -> Tip:
    try:
        return read_tip(forge, branch, notes)
    except PermissionDenied as exc:
        notes.append(f"the {branch} branch could not be read ({exc.permission} missing)")
        logger.warning("%s", exc)
        return Tip(branch)


def baseline_for(
    forge: Forge, tip: Tip, target: Target, options: PublishOptions, notes: list[str]
) -> Baseline | None:
    if target.base_sha is None:
        return None
    try:
        return find_baseline(
            forge,
            tip,
            target.base_sha,
            report=options.name,
            notes=notes,
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


def with_baseline_files(
    forge: Forge, tip: Tip, target: Target, baseline: Baseline | None, notes: list[str]
) -> Tip:
    """On a review, `tip` knowing the baseline's files (its figures, compared and shown)."""
    if baseline is None or target.kind != "pull_request":
        return tip
    try:
        return with_folder(forge, tip, baseline.folder)
    except PermissionDenied as exc:
        notes.append(f"the baseline's figures could not be listed ({exc.permission} missing)")
        logger.warning("%s", exc)
        return tip


def history_for(
    forge: Forge,
    tip: Tip,
    target: Target,
    baseline: Baseline | None,
    options: PublishOptions,
    notes: list[str],
) -> History:
    """On a review, the stored runs of the base branch's last commits (`publish.history`)."""
    if target.kind != "pull_request" or target.base_sha is None or baseline is None:
        return History()
    known = {baseline.sha: baseline.run}
    return read_history(
        forge,
        tip,
        target.base_sha,
        commits=options.history,
        report=options.name,
        notes=notes,
        known=known,
    )


def judge_run(
    run: Run,
    baseline: Baseline | None,
    target: Target | None,
    options: PublishOptions,
    history: History | None = None,
) -> Judgement:
    """The run against the stored baseline (if any) and the base branch's history, then
    the gates: `nbci.judge.judge`."""
    return judge(
        run,
        baseline.run if baseline else None,
        label=_baseline_label(baseline, target) if baseline and target else "",
        criteria=Criteria(options.gates, options.higher_is_better, options.lower_is_better),
        history=history.runs if history else (),
    )


def _baseline_label(baseline: Baseline, target: Target) -> str:
    short = baseline.sha[:12]
    if target.kind == "baseline":
        return f"{short}, " + ("the parent commit" if baseline.distance == 1 else "an ancestor")
    if baseline.distance == 0:
        return f"{short}, the base commit"
    plural = "s" if baseline.distance > 1 else ""
    return f"{short}, {baseline.distance} commit{plural} before the base commit"


# -- figures and the stored baseline -----------------------------------------------


def assets_folder(target: Target, report: str) -> str | None:
    """Where the target's files go on the assets branch; None: nothing is stored. Each
    report has its own folder, on a review as on the default branch: two reports
    publishing on one pull request never delete each other's files."""
    if target.kind == "pull_request":
        return f"{REVIEWS}/{target.pr}/{safe_name(report)}"
    if target.kind == "baseline":
        return run_folder(target.sha, report)
    return None


def host(
    forge: Forge,
    tip: Tip,
    target: Target,
    run: Run,
    figures: Figures,
    notes: list[str],
    extra: Sequence[Asset] = (),
    *,
    report: str,
    pruning: Pruning | None = None,
) -> Hosting:
    """Commit what the target needs (figures, `extra` files) to the assets branch, in one
    commit; on the default branch that commit also prunes as `pruning` says."""
    folder = assets_folder(target, report)
    if folder is None:
        return Hosting(tip)
    assets = [*figure_assets(figures.files, folder), *extra]
    if target.kind == "pull_request":
        message = f"nbci: figures of #{target.pr} at {target.sha[:12]}"
    else:
        stored = replace(run, report=report)  # whose run it is, for whoever reads it
        assets.append(_results_asset(stored, folder))
        message = f"nbci: results of {target.sha[:12]} (baseline)"
    try:
        tip = store(
            forge,
            tip,
            assets,
            folder=folder,
            message=message,
            notes=notes,
            pruning=pruning if target.kind == "baseline" else None,
        )
    except PermissionDenied as exc:
        logger.warning("%s", exc)
        notes.append(f"figures not hosted: the token lacks `{exc.permission}`")
        return Hosting(tip, error=exc if target.kind == "baseline" else None)
    return Hosting(tip, folder)


def _results_asset(run: Run, folder: str) -> Asset:
    return Asset(f"{folder}/{RESULTS_FILE}", run_json(run).encode("utf-8"))


# -- verdict and job summary ------------------------------------------------------


def post_verdict(
    forge: Forge,
    options: PublishOptions,
    target: Target,
    run: Run,
    verdict: Verdict,
    comparison: Comparison | None,
    report: str,
) -> str | None:
    """The commit status (or check run) on the target commit; returns a check run's address."""
    success = passed(run, verdict)
    description = describe(run, verdict, comparison)
    if options.check:
        return forge.create_check(
            target.sha, name=options.name, success=success, title=description, summary=report
        )
    forge.set_status(
        target.sha,
        name=options.name,
        success=success,
        description=fit(description, DESCRIPTION_LIMIT),
        target_url=forge.run_url,
    )
    if isinstance(forge, PostsInsights):  # Bitbucket: a Code Insights report as well
        insight = build_insight(run, verdict, comparison)
        forge.post_insights(target.sha, name=options.name, insight=insight)
    return None


def write_job_summary(env: Mapping[str, str], report: str) -> None:
    """Append the report to the Actions job summary, when there is one (`nbci.actions`
    is the one writer: the same size rule as `nbci run`'s)."""
    from pathlib import Path

    from nbci.actions import append_step_summary

    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        append_step_summary(report, path=Path(path))
