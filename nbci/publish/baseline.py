"""The baseline: the results stored for a default-branch commit, found for a later run.

On a push to the default branch, publish stores `runs/<sha>/results.json` (and
the figures) on the assets branch. A pull request is compared with its base
commit's stored run or, when that commit has none (its CI did not finish, or
ran before nbci), with the nearest ancestor on the base branch that has one:
the base branch's first-parent history is walked from the base commit, at
most `depth` commits back. A stored run is untrusted data like any artifact:
size-capped and decoded by `nbci.results.run_from_json`, as a results.json file is.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbci.errors import ResultsError
from nbci.model import Run
from nbci.publish.assets import Tip, stored_source
from nbci.results import MAX_RESULTS_BYTES, RESULTS_FILE, run_from_json

if TYPE_CHECKING:
    from nbci.publish.forge import Forge

logger = logging.getLogger(__name__)

RUNS = "runs"
DEFAULT_DEPTH = 100
_STORED = re.compile(rf"{RUNS}/([0-9a-f]{{40}})/{re.escape(RESULTS_FILE)}")


@dataclass(frozen=True)
class Baseline:
    sha: str
    """The commit whose run this is."""
    run: Run
    distance: int
    """Commits between the starting commit and this one (0: the commit itself)."""

    @property
    def folder(self) -> str:
        """Where it is stored on the assets branch."""
        return run_folder(self.sha)


def run_folder(sha: str) -> str:
    return f"{RUNS}/{sha}"


def stored_runs(tip: Tip) -> set[str]:
    """The commits that have a stored run on the assets branch."""
    return {m[1] for path in tip.files if (m := _STORED.fullmatch(path))}


def find_baseline(
    forge: Forge,
    tip: Tip,
    start: str,
    *,
    include_start: bool = True,
    depth: int = DEFAULT_DEPTH,
) -> Baseline | None:
    """The stored run of `start` or of its nearest ancestor that has one, or None.

    `include_start=False` skips `start` itself (a push compares with its
    parents). Raises ResultsError when the stored run found is malformed.
    """
    stored = stored_runs(tip)
    if not stored:
        return None
    if include_start and start in stored:
        return _load(forge, tip, start, 0)
    for distance, sha in enumerate(forge.ancestors(start, depth)):
        if distance == 0 and not include_start:
            continue
        if sha in stored:
            return _load(forge, tip, sha, distance)
    logger.info("no stored run among the %d commits up to %s", depth, start[:12])
    return None


def _load(forge: Forge, tip: Tip, sha: str, distance: int) -> Baseline:
    return Baseline(sha, load_stored_run(forge, tip, sha), distance)


def load_stored_run(forge: Forge, tip: Tip, sha: str) -> Run:
    """The stored run of commit `sha` (one file read). Raises ResultsError when it is too
    big or not a valid results.json, PublishError when the forge refuses."""
    path = f"{run_folder(sha)}/{RESULTS_FILE}"
    _blob, size = tip.files[path]
    source = stored_source(tip, path)
    if size > MAX_RESULTS_BYTES:
        raise ResultsError(f"{source}: {size} bytes, larger than the {MAX_RESULTS_BYTES} allowed")
    data = forge.read_file(tip, path, MAX_RESULTS_BYTES)
    return run_from_json(data, source=source)
