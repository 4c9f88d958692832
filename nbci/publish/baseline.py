"""The baseline: the results stored for a default-branch commit, found for a later run.

On a push to the default branch, publish stores `runs/<sha>/<report>/results.json`
(and the figures) on the assets branch, `<report>` being the report's name
(`--name`, made file-safe by `safe_name`), so that reports of one repository
never overwrite each other's runs; the stored results.json also records the
name (`report`). A pull request is compared with its base commit's stored run
or, when that commit has none (its CI did not finish, or ran before nbci),
with the nearest ancestor on the base branch that has one: the base branch's
first-parent history is walked from the base commit, at most `depth` commits
back. A stored run is untrusted data like any artifact: size-capped and
decoded by `nbci.results.run_from_json`, as a results.json file is.

Runs stored by earlier versions of nbci, at `runs/<sha>/results.json` without
a name, are still read, by every report, where the report has no run of its
own for that commit. A stored run that names another report is skipped with a
note (`OtherReport`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbci._files import safe_name
from nbci.errors import NbciError, ResultsError
from nbci.model import Run
from nbci.publish.assets import Tip, stored_source
from nbci.results import MAX_RESULTS_BYTES, RESULTS_FILE, run_from_json

if TYPE_CHECKING:
    from nbci.publish.forge import Forge

logger = logging.getLogger(__name__)

RUNS = "runs"
DEFAULT_DEPTH = 100
_STORED = re.compile(rf"{RUNS}/([0-9a-f]{{40}})/(?:([^/]+)/)?{re.escape(RESULTS_FILE)}")


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


def stored_runs(tip: Tip, report: str) -> dict[str, str]:
    """Commit -> the folder of its stored run for `report`: the report's own, else one
    stored without a name by an earlier nbci (`runs/<sha>/`)."""
    own, unnamed = {}, {}
    folder = safe_name(report)
    for path in tip.files:
        if m := _STORED.fullmatch(path):
            sha, sub = m[1], m[2]
            if sub is None:
                unnamed[sha] = f"{RUNS}/{sha}"
            elif sub == folder:
                own[sha] = f"{RUNS}/{sha}/{sub}"
    return {**unnamed, **own}


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
    stored = stored_runs(tip, report)
    if not stored:
        return None
    if include_start and start in stored:
        found = _load(forge, tip, start, 0, stored[start], report, notes)
        if found is not None:
            return found
    for distance, sha in enumerate(forge.ancestors(start, depth)):
        if distance == 0 or sha not in stored:  # `start` was tried above, or is skipped
            continue
        if found := _load(forge, tip, sha, distance, stored[sha], report, notes):
            return found
    logger.info("no stored run among the %d commits up to %s", depth, start[:12])
    return None


def _load(
    forge: Forge, tip: Tip, sha: str, distance: int, folder: str, report: str, notes: list[str]
) -> Baseline | None:
    try:
        return Baseline(sha, load_stored_run(forge, tip, folder, report), distance, folder)
    except OtherReport as exc:
        notes.append(f"the stored run of {sha[:12]} was skipped: {exc}")
        logger.warning("%s", notes[-1])
        return None


def load_stored_run(forge: Forge, tip: Tip, folder: str, report: str) -> Run:
    """The run stored in `folder` (one file read). Raises ResultsError when it is too big
    or not a valid results.json, OtherReport when it names a report other than
    `report`, PublishError when the forge refuses."""
    path = f"{folder}/{RESULTS_FILE}"
    _blob, size = tip.files[path]
    source = stored_source(tip, path)
    if size > MAX_RESULTS_BYTES:
        raise ResultsError(f"{source}: {size} bytes, larger than the {MAX_RESULTS_BYTES} allowed")
    data = forge.read_file(tip, path, MAX_RESULTS_BYTES)
    run = run_from_json(data, source=source)
    if run.report is not None and run.report != report:
        raise OtherReport(f"{source} is report {run.report!r}'s, not {report!r}'s")
    return run
