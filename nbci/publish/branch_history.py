"""The base branch's history for a review: the stored runs of its last N commits.

Publish stores each default-branch run under `runs/<sha>/<report>/` on the
assets branch (`baseline`). For a pull request (or merge request), the last `history` commits
along the base commit's first-parent line are listed (`Forge.ancestors`: one
commit listing, 100 a page), and the stored run of each one that has one is
read by its path: one file read per run, which commits have one being known
from the branch's index (`nbci.publish.index`). So the number of requests
grows with the history's length, never with the number of metrics or the
number of runs the branch holds.

History informs the judgement and never stops a publish: a stored run that is
too big, not valid JSON, of another schema, of another report name or
otherwise malformed is skipped with a note, and a history that cannot be
listed at all is a note too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from nbci.errors import NbciError, ResultsError
from nbci.headline import Leads
from nbci.history import MIN_RUNS
from nbci.model import Comparison, Run, Verdict
from nbci.publish.assets import FigureFile, Figures, Tip
from nbci.publish.baseline import OtherReport, any_stored, candidate_folders, load_stored_run

if TYPE_CHECKING:
    from nbci.publish.forge import Forge

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class History:
    runs: tuple[Run, ...] = ()
    """Oldest first."""
    shas: tuple[str, ...] = ()
    """The commit of each run."""


def read_history(
    forge: Forge,
    tip: Tip,
    start: str,
    *,
    commits: int,
    report: str,
    notes: list[str],
    known: Mapping[str, Run] | None = None,
) -> History:
    """The stored runs of the last `commits` commits up to `start` (first-parent line).

    `known`: runs already read (the baseline), by commit, so they are not read
    twice. Never raises: what goes wrong is added to `notes`.
    """
    if commits <= 0 or not any_stored(tip, report):
        return History()
    if not tip.truncated and len(tip.index.run_commits(report)) < MIN_RUNS:
        return History()  # too few stored runs for any range: not worth a request
    try:
        line = list(forge.ancestors(start, commits))
    except NbciError as exc:
        notes.append(f"the base branch's history could not be read: {exc}")
        logger.warning("%s", exc)
        return History()
    runs, shas = [], []
    for sha in reversed(line):  # oldest first
        run = (known or {}).get(sha) or _load(forge, tip, sha, report, notes)
        if run is not None:
            runs.append(run)
            shas.append(sha)
    logger.info("history: %d stored runs among %d commits up to %s", len(runs), len(line), start)
    return History(tuple(runs), tuple(shas))


def _load(forge: Forge, tip: Tip, sha: str, report: str, notes: list[str]) -> Run | None:
    for folder in candidate_folders(tip, sha, report):
        try:
            run = load_stored_run(forge, tip, folder, report)
        except (ResultsError, OtherReport) as exc:
            notes.append(f"history: the stored run of {sha[:12]} was skipped: {exc}")
        except NbciError as exc:
            notes.append(f"history: the stored run of {sha[:12]} could not be read: {exc}")
        else:
            if run is not None:
                return run
            continue
        logger.warning("%s", notes[-1])
        return None
    return None


def with_trend_charts(
    figures: Figures,
    comparison: Comparison | None,
    verdict: Verdict | None,
    leads: Leads | None = None,
) -> Figures:
    """`figures` plus the trend charts the comment shows, to be hosted like figures."""
    from nbci.render.trends import COMMENT_TRENDS, draw_trend, trend_deltas, trend_path

    charts = []
    for delta in trend_deltas(comparison, verdict, leads)[:COMMENT_TRENDS]:
        data = draw_trend(delta)
        if data is not None:
            charts.append(FigureFile(trend_path(delta), data))
    return replace(figures, files=(*figures.files, *charts)) if charts else figures
