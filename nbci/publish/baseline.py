"""The baseline: the results stored for a default-branch commit, found for a later run.

On a push to the default branch, publish stores `runs/<sha>/results.json` (and
the figures) on the assets branch. A pull request is compared with its base
commit's stored run or, when that commit has none (its CI did not finish, or
ran before nbci), with the nearest ancestor on the base branch that has one:
the base branch's history is walked from the base commit, at most `depth`
commits back. A stored run is untrusted data like any artifact: size-capped
and decoded by `nbci.results.run_from_json`, as a results.json file is.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from itertools import islice

from nbci.errors import ResultsError
from nbci.model import Run
from nbci.publish.assets import Tip
from nbci.publish.client import Session
from nbci.results import MAX_RESULTS_BYTES, RESULTS_FILE, run_from_json

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
    session: Session,
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
        return _load(session, tip, start, 0)
    with session.errors(f"list the history of {start[:12]}", "contents: read"):
        history = session.repo.get_commits(sha=start)
        for distance, commit in enumerate(islice(history, depth)):
            if distance == 0 and not include_start:
                continue
            if commit.sha in stored:
                return _load(session, tip, commit.sha, distance)
    logger.info("no stored run among the %d commits up to %s", depth, start[:12])
    return None


def _load(session: Session, tip: Tip, sha: str, distance: int) -> Baseline:
    path = f"{run_folder(sha)}/{RESULTS_FILE}"
    blob_sha, size = tip.files[path]
    source = f"the stored baseline {path} on {tip.branch}"
    if size > MAX_RESULTS_BYTES:
        raise ResultsError(f"{source}: {size} bytes, larger than the {MAX_RESULTS_BYTES} allowed")
    with session.errors(f"read {path} from the {tip.branch} branch", "contents: read"):
        blob = session.repo.get_git_blob(blob_sha)
        content, encoding = blob.content, blob.encoding
    return Baseline(sha, run_from_json(_decode(content, encoding, source), source=source), distance)


def _decode(content: str | None, encoding: str | None, source: str) -> bytes:
    if encoding != "base64" or content is None:
        raise ResultsError(f"{source}: GitHub sent it as {encoding!r}, expected base64")
    try:
        data = base64.b64decode(content, validate=False)
    except (binascii.Error, ValueError):
        raise ResultsError(f"{source}: not valid base64") from None
    return data
