"""`nbci publish`: the report on the review, figures hosted, the verdict on the commit.

The same on GitHub (pull requests, through PyGithub), GitLab (merge
requests, through python-gitlab) and Bitbucket Cloud and Data Center (pull
requests, over REST with requests): `connect` picks the forge and the flow is
written once against `forge.Forge`. `publish` reads as its steps:

1. read the run directory — untrusted (a fork's artifact) — and validate it
   all, figures included, before any request;
2. work out the target from the CI environment: a review, a push to the
   default branch (which stores the baseline), or a bare commit;
3. find the baseline run and compare, then evaluate the gates;
4. commit the figures (and, on the default branch, the baseline) to the
   assets branch in one commit;
5. edit or create the sticky comment;
6. set the commit status (or on GitHub a check run) on the tested commit;
7. append the report to the job summary (GitHub Actions).

Each step degrades rather than fails where it can: without write access to
the repository the comment links the run's artifact instead of showing
figures. What cannot be done ends in one `PublishError` line naming the
missing permission. A fork's GitLab pipeline, which has no token, publishes
nothing and says how a maintainer runs it in the parent project.

The target is resolved by the forge (each forge's `context`: `github/`, `gitlab/`,
`bitbucket/`); the steps themselves live in `steps`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nbci.errors import PublishError
from nbci.headline import Headline, Leads
from nbci.model import Comparison, Run, passed
from nbci.publish import steps
from nbci.publish.assets import Figures, Tip, load_figures
from nbci.publish.baseline import DEFAULT_DEPTH, Baseline
from nbci.publish.branch_history import with_trend_charts
from nbci.publish.branch_visuals import Prepared, prepare
from nbci.publish.comment import comment_body, comment_limit, upsert_comment
from nbci.publish.connect import ForgeName, ForkPipeline, connect
from nbci.publish.forge import Forge, Target, TargetKind
from nbci.publish.github.context import read_artifact_pr
from nbci.publish.index import Pruning
from nbci.publish.posted_report import render_report
from nbci.publish.retry import RetryPolicy
from nbci.render.visuals import Drawn
from nbci.results import read_run

if TYPE_CHECKING:
    from nbci.gates import GateRule

__all__ = ["PublishError", "PublishOptions", "PublishOutcome", "RetryPolicy", "publish"]


@dataclass(frozen=True)
class PublishOptions:
    out_dir: Path
    name: str = "nbci"
    """The report's name: the comment marker and the status context."""
    forge: ForgeName | None = None
    """`github`, `gitlab` or `bitbucket`; None: GitLab inside GitLab CI, Bitbucket inside
    Bitbucket Pipelines, else GitHub."""
    repo: str | None = None
    """GitHub: `owner/name`; GitLab: the project's path or id; Bitbucket: `workspace/slug`
    (Data Center: `PROJECT/slug`)."""
    pr: int | None = None
    """The pull request number, or the merge request iid."""
    sha: str | None = None
    api_url: str | None = None
    token_env: str | None = None
    """The variable holding the token; None: GITHUB_TOKEN, GITLAB_TOKEN or BITBUCKET_TOKEN."""
    run_url: str | None = None
    """The CI run the status links to, where the environment does not say (Bitbucket)."""
    check: bool = False
    """A check run with the report, instead of a commit status."""
    assets_branch: str = "nbci-assets"
    higher_is_better: tuple[str, ...] = ()
    """Metric-name globs from the config; see `nbci.compare.direction_of`."""
    lower_is_better: tuple[str, ...] = ()
    headline: Headline | None = None
    """Which metrics lead the comment's tables (`nbci.headline`)."""
    gates: Sequence[GateRule] = ()
    """Parsed `[tool.nbci.gates]` rules."""
    templates: Path | None = None
    baseline_depth: int = DEFAULT_DEPTH
    """How many commits back to look for a stored baseline."""
    history: int = 20
    """On a review, how many base-branch commits' stored runs give each metric's range
    (`nbci.publish.branch_history`); 0: none."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    notebooks: bool = True
    """Commit the executed notebooks to the assets branch (config `publish_notebooks`)."""
    keep_runs: int = 200
    """Stored runs each report keeps on the assets branch (never fewer than `history`);
    0: every one. A default-branch publish prunes the rest (`nbci.publish.index`)."""
    keep_pr_days: float = 30
    """Review folders not written for this many days are pruned; 0: never."""


@dataclass(frozen=True)
class PublishOutcome:
    kind: TargetKind | Literal["artifact"]
    """What was published to: a review, the default branch (baseline stored), a bare commit;
    `artifact`: nothing (a fork's GitLab pipeline), the report stays in the artifacts."""
    sha: str
    """The commit that got the status or check run ("" for `artifact`)."""
    passed: bool
    """Every notebook ran and every gate passed (the verdict posted)."""
    pr: int | None = None
    review: str | None = None
    """`pull request #7` or `merge request !7`."""
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
        if self.kind == "artifact":
            return [f"Not published: {note}" for note in self.notes]
        lines = []
        if self.comment_url:
            review = self.review or f"pull request #{self.pr}"
            lines.append(f"Commented on {review}: {self.comment_url}")
        if self.assets_commit:
            what = "Results and figures" if self.stored_baseline else "Figures"
            lines.append(f"{what} stored at {self.assets_commit[:12]} on the assets branch")
        if self.baseline_sha:
            lines.append(f"Compared with the stored run of {self.baseline_sha[:12]}")
        where = f"check run {self.check_url}" if self.check_url else "commit status"
        lines.append(f"Verdict ({verdict}) set as a {where} on {self.sha[:12]}")
        lines += [f"warning: {note}" for note in self.notes]
        return lines


def publish(options: PublishOptions, env: Mapping[str, str] = os.environ) -> PublishOutcome:
    """Publish the run in `options.out_dir`; raises PublishError, ResultsError or UsageError."""
    steps.check_branch(options.assets_branch)
    run = read_run(options.out_dir)  # untrusted: everything is checked before any request
    figures = load_figures(run, options.out_dir)
    try:
        forge = connect(options, env, read_artifact_pr(options.out_dir))
    except ForkPipeline as exc:  # nothing to publish to: the report stays in the artifacts
        verdict = steps.judge_run(run, None, None, options).verdict
        return PublishOutcome("artifact", "", passed(run, verdict), notes=(str(exc),))
    if options.run_url:
        forge.run_url = options.run_url
    target = forge.resolve_target()
    notes = list(figures.skipped)
    noted = len(notes)  # a note from here on: something stored could not be read
    tip = steps.read_assets_tip(forge, options.assets_branch, notes)
    baseline = steps.baseline_for(forge, tip, target, options, notes)
    baseline_unread = baseline is None and len(notes) > noted
    history = steps.history_for(forge, tip, target, baseline, options, notes)
    tip = steps.with_baseline_files(forge, tip, target, baseline, notes)
    judged = steps.judge_run(run, baseline, target, options, history)
    comparison, verdict = judged.comparison, judged.verdict
    leads = Leads.of(run, options.headline, verdict)
    figures = with_trend_charts(figures, comparison, verdict, leads)
    with tempfile.TemporaryDirectory(prefix="nbci-publish-") as work_dir:
        review = _prepare(
            forge, tip, run, figures, target, baseline, comparison, options, notes, Path(work_dir)
        )
        figures = Figures((*figures.files, *review.images), figures.skipped)
        pruning = Pruning(options.keep_runs, options.keep_pr_days, options.history)
        hosting = steps.host(
            forge,
            tip,
            target,
            run,
            figures,
            notes,
            extra=review.notebooks,
            report=options.name,
            pruning=pruning,
        )
    report = render_report(
        run,
        comparison=comparison,
        verdict=verdict,
        name=options.name,
        templates=options.templates,
        forge=forge,
        hosting=hosting,
        figures=figures,
        baseline=baseline,
        notes=notes,
        review=review,
        headline=options.headline,
        baseline_unread=baseline_unread,
    )
    comment_url = None
    if target.pr is not None:
        body = comment_body(options.name, report, limit=comment_limit(forge))
        comment_url = upsert_comment(forge, target.pr, options.name, body).url
    check_url = steps.post_verdict(forge, options, target, run, verdict, comparison, report)
    steps.write_job_summary(env, report)
    if hosting.error is not None:  # storing the baseline is the point of this publish
        raise hosting.error
    return PublishOutcome(
        kind=target.kind,
        sha=target.sha,
        passed=passed(run, verdict),
        pr=target.pr,
        review=forge.review_label(target.pr) if target.pr is not None else None,
        comment_url=comment_url,
        check_url=check_url,
        assets_commit=hosting.tip.commit if hosting.folder else None,
        baseline_sha=baseline.sha if baseline else None,
        stored_baseline=target.kind == "baseline" and hosting.folder is not None,
        notes=tuple(notes),
    )


def _prepare(
    forge: Forge,
    tip: Tip,
    run: Run,
    figures: Figures,
    target: Target,
    baseline: Baseline | None,
    comparison: Comparison | None,
    options: PublishOptions,
    notes: list[str],
    work_dir: Path,
) -> Prepared:
    """Charts, difference images (for a review) and notebooks for the assets commit."""
    folder = steps.assets_folder(target, options.name)
    if folder is None:
        return Prepared(Drawn({}))
    return prepare(
        forge,
        tip,
        run,
        figures.files,
        out_dir=options.out_dir,
        work_dir=work_dir,
        folder=folder,
        baseline=baseline,
        baseline_label=comparison.baseline_label if comparison else None,
        with_charts=target.kind == "pull_request",
        with_notebooks=options.notebooks,
        notes=notes,
    )
