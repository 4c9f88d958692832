"""The base branch's history for a pull request: the stored runs of its last N commits.

Publish stores each default-branch run under `runs/<sha>/` on the assets
branch. For a pull request, the last `history` commits along the base commit's
first-parent line are walked (the commit listing, `per_page` 100, usually one
request), and the stored run of each one that has one is read: one blob read
per run, since the assets branch's tree was already listed once for the whole
publish. So the number of requests grows with the history's length, never with
the number of metrics.

History informs the judgement and never stops a publish: a stored run that is
too big, not valid JSON, of another schema or otherwise malformed is skipped
with a note, and a history that cannot be read at all is a note too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from nbci.errors import NbciError, ResultsError
from nbci.history import MIN_RUNS
from nbci.model import Comparison, Run, Verdict
from nbci.publish.assets import FigureFile, Figures, Tip
from nbci.publish.baseline import load_stored_run, stored_runs
from nbci.publish.client import Session

logger = logging.getLogger(__name__)

LISTING_FACTOR = 5
"""Commits listed at most per commit of history: merges interleave other branches'
commits in GitHub's listing, which the first-parent walk skips."""


@dataclass(frozen=True)
class History:
    runs: tuple[Run, ...] = ()
    """Oldest first."""
    shas: tuple[str, ...] = ()
    """The commit of each run."""


def read_history(
    session: Session,
    tip: Tip,
    start: str,
    *,
    commits: int,
    notes: list[str],
    known: Mapping[str, Run] | None = None,
) -> History:
    """The stored runs of the last `commits` commits up to `start` (first-parent line).

    `known`: runs already read (the baseline), by commit, so they are not read
    twice. Never raises: what goes wrong is added to `notes`.
    """
    stored = stored_runs(tip)
    if commits <= 0 or len(stored) < MIN_RUNS or tip.truncated:
        return History()  # too few stored runs for any range: not worth a request
    try:
        with session.errors(f"list the history of {start[:12]}", "contents: read"):
            listing = islice(session.repo.get_commits(sha=start), commits * LISTING_FACTOR)
            line = first_parent_line(listing, start, commits)
    except NbciError as exc:
        notes.append(f"the base branch's history could not be read: {exc}")
        logger.warning("%s", exc)
        return History()
    runs, shas = [], []
    for sha in reversed(line):  # oldest first
        if sha not in stored:
            continue
        run = (known or {}).get(sha) or _load(session, tip, sha, notes)
        if run is not None:
            runs.append(run)
            shas.append(sha)
    logger.info("history: %d stored runs among %d commits up to %s", len(runs), len(line), start)
    return History(tuple(runs), tuple(shas))


def first_parent_line(listing: Iterable[Any], start: str, commits: int) -> list[str]:
    """`start` and its first parents, newest first, at most `commits`, taken from GitHub's
    commit listing (which holds every parent's line, newest first)."""
    line: list[str] = []
    wanted: str | None = start
    for commit in listing:
        if commit.sha != wanted:
            continue
        line.append(commit.sha)
        if len(line) == commits:
            break
        parents = commit.parents
        wanted = parents[0].sha if parents else None
        if wanted is None:
            break
    return line


def _load(session: Session, tip: Tip, sha: str, notes: list[str]) -> Run | None:
    try:
        return load_stored_run(session, tip, sha)
    except ResultsError as exc:
        notes.append(f"history: the stored run of {sha[:12]} was skipped: {exc}")
    except NbciError as exc:
        notes.append(f"history: the stored run of {sha[:12]} could not be read: {exc}")
    logger.warning("%s", notes[-1])
    return None


def with_trend_charts(
    figures: Figures, comparison: Comparison | None, verdict: Verdict | None
) -> Figures:
    """`figures` plus the trend charts the comment shows, to be hosted like figures."""
    from nbci.render.trends import COMMENT_TRENDS, draw_trend, trend_deltas, trend_path

    charts = []
    for delta in trend_deltas(comparison, verdict)[:COMMENT_TRENDS]:
        data = draw_trend(delta)
        if data is not None:
            charts.append(FigureFile(trend_path(delta), data))
    return replace(figures, files=(*figures.files, *charts)) if charts else figures
