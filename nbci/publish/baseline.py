"""The baseline: the results stored for a default-branch commit, found for a later run.

On a push to the default branch, publish stores `runs/<sha>/<report>/results.json`
(and the figures) on the assets branch, `<report>` being the report's name
(`--name`, made file-safe by `safe_name`), so that reports of one repository
never overwrite each other's runs; the stored results.json also records the
name (`report`). A pull request is compared with its base commit's stored run
or, when that commit has none (its CI did not finish, or ran before nbci),
with the nearest ancestor on the base branch that has one: the base branch's
first-parent history is walked from the base commit, at most `depth` commits
back. Which commits have a stored run is read from the branch's index
(`nbci.publish.index`), and each run by its path: no listing of the branch, so
the search costs the same whatever the branch holds. Where the index is
incomplete (a branch too large to list whole that had none), the runs it lacks
are looked up by path, commit by commit. A stored run is untrusted data like
any artifact: size-capped and decoded by `nbci.results.run_from_json`, as a
results.json file is.

Runs stored by earlier versions of nbci, at `runs/<sha>/results.json` without
a name, are still read, by every report, where the report has no run of its
own for that commit. A stored run that names another report is skipped with a
note (`OtherReport`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbci._files import safe_name
from nbci.errors import NbciError
from nbci.model import Run
from nbci.publish.assets import Tip, stored_source
from nbci.publish.index import RUNS
from nbci.results import MAX_RESULTS_BYTES, RESULTS_FILE, run_from_json

if TYPE_CHECKING:
    from nbci.publish.forge import Forge

logger = logging.getLogger(__name__)

DEFAULT_DEPTH = 100


class OtherReport(NbciError):
    """A stored run that was published under another report's name."""


@dataclass(frozen=True)
class Baseline:
    sha: str
    """The commit whose run this is."""
    run: Run
    distance: int
    """Commits between the starting commit and this one (0: the commit itself)."""
    folder: str
    """Where it is stored on the assets branch."""


def run_folder(sha: str, report: str) -> str:
    """Where the report named `report` stores the run of commit `sha`."""
    return f"{RUNS}/{sha}/{safe_name(report)}"


def candidate_folders(tip: Tip, sha: str, report: str) -> list[str]:
    """The folders that may hold `sha`'s stored run for `report`, to read by path: the
    index's, and where the index is incomplete (a branch too large to list whole, not yet
    indexed) the report's own folder and the unnamed one of an earlier nbci."""
    folder = tip.index.run_folder(sha, report)
    if folder is not None:
        return [folder]
    return [run_folder(sha, report), f"{RUNS}/{sha}"] if tip.truncated else []


def any_stored(tip: Tip, report: str) -> bool:
    """Whether the branch may hold a stored run for `report` at all."""
    return tip.truncated or bool(tip.index.run_commits(report))


def find_baseline(
    forge: Forge,
    tip: Tip,
    start: str,
    *,
    report: str,
    notes: list[str],
    include_start: bool = True,
    depth: int = DEFAULT_DEPTH,
) -> Baseline | None:
    """The stored run of `start` or of its nearest ancestor that has one, or None.

    `include_start=False` skips `start` itself (a push compares with its
    parents). A run of another report is skipped with a note in `notes`.
    Raises ResultsError when the stored run found is malformed.
    """
    if not any_stored(tip, report):
        return None
    if include_start:
        found = _load(forge, tip, start, 0, report, notes)
        if found is not None:
            return found
    for distance, sha in enumerate(forge.ancestors(start, depth)):
        if distance == 0:  # `start` was tried above, or is skipped
            continue
        if found := _load(forge, tip, sha, distance, report, notes):
            return found
    logger.info("no stored run among the %d commits up to %s", depth, start[:12])
    return None


def _load(
    forge: Forge, tip: Tip, sha: str, distance: int, report: str, notes: list[str]
) -> Baseline | None:
    for folder in candidate_folders(tip, sha, report):
        try:
            run = load_stored_run(forge, tip, folder, report)
        except OtherReport as exc:
            notes.append(f"the stored run of {sha[:12]} was skipped: {exc}")
            logger.warning("%s", notes[-1])
            continue
        if run is not None:
            return Baseline(sha, run, distance, folder)
    return None


def load_stored_run(forge: Forge, tip: Tip, folder: str, report: str) -> Run | None:
    """The run stored in `folder`, read by path (one request), None when there is none.
    Raises ResultsError when it is too big or not a valid results.json, OtherReport when it
    names a report other than `report`, PublishError when the forge refuses."""
    path = f"{folder}/{RESULTS_FILE}"
    source = stored_source(tip, path)
    data = forge.read_stored_file(path, tip=tip, limit=MAX_RESULTS_BYTES)
    if data is None:
        return None
    run = run_from_json(data, source=source)
    if run.report is not None and run.report != report:
        raise OtherReport(f"{source} is report {run.report!r}'s, not {report!r}'s")
    return run
