"""Job ids: one readable name per notebook and matrix combination, stable forever.

An id is made from the notebook's path relative to the project root and the
matrix values that tell its jobs apart, and from nothing else, so that adding,
moving or selecting other notebooks never renames a job (baselines, history
and the cache find it by its id):

- `notebooks/train.ipynb` → `train` (the conventional `notebooks/` folder is
  left out; it would start nearly every id);
- `notebooks/cv/train.ipynb` → `cv-train`, `examples/train.ipynb` → `examples-train`;
- with a matrix: `train-lr-0.1-model-svc` (axes sorted by name).

Characters outside `A-Za-z0-9._-` become `_`; an id longer than `MAX_ID` is cut
and ends with a hash of the whole. Two notebooks whose ids would be equal
(`a/b-c.ipynb` and `a-b/c.ipynb`) are refused by the plan, never renamed.

Runs stored by nbci 0.1 named a notebook by its file name alone, and `-p` on a
matrix axis runs a job without that axis in its id; `pair_renamed` lets a
comparison find the baseline's job by path and parameters.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from nbci.model import NotebookResult, Run

MAX_ID = 120
CONVENTIONAL_FOLDER = "notebooks"
"""Left out of ids: the folder `nbci init` and the default configuration use."""
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def job_id(notebook: str, varying: Mapping[str, Any]) -> str:
    """The id of `notebook` (posix path relative to the root) with these matrix values."""
    path = PurePosixPath(notebook)
    folders = list(path.parent.parts)
    if folders[:1] == [CONVENTIONAL_FOLDER]:
        folders = folders[1:]
    parts: list[str] = [*folders, path.stem]
    for name, value in sorted(varying.items()):
        parts += [name, value if isinstance(value, str) else json.dumps(value)]
    return safe_id("-".join(str(p) for p in parts))


def safe_id(text: str) -> str:
    """`text` as an id: filesystem-safe characters only, at most `MAX_ID` long."""
    cleaned = _ID_UNSAFE.sub("_", text).strip("._-") or "notebook"
    if len(cleaned) > MAX_ID:
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        cleaned = f"{cleaned[: MAX_ID - 9]}-{digest}"
    return cleaned


def pair_renamed(
    head: Sequence[NotebookResult], baseline: Sequence[NotebookResult]
) -> dict[str, str]:
    """Baseline id → head id, for baseline jobs stored under another id of the same job.

    A baseline result whose id no head result has is the same job as a head
    result without a baseline when both ran the same notebook path with the
    same parameters (`-p` on a matrix axis runs `train` with the values of
    the baseline's `train-lr-0.1`), or when each is the only such result of
    that path (nbci 0.1 named jobs by file name alone).
    """
    head_ids = {nb.id for nb in head}
    base_ids = {nb.id for nb in baseline}
    unmatched_head = [nb for nb in head if nb.id not in base_ids]
    unmatched_base = [nb for nb in baseline if nb.id not in head_ids]
    renamed: dict[str, str] = {}

    def pair(old: NotebookResult, new: NotebookResult) -> None:
        renamed[old.id] = new.id
        unmatched_head.remove(new)
        unmatched_base.remove(old)

    for old in list(unmatched_base):
        same = [nb for nb in unmatched_head if same_job(nb, old)]
        if len(same) == 1 and sum(same_job(same[0], b) for b in unmatched_base) == 1:
            pair(old, same[0])
    heads_of, bases_of = _by_path(unmatched_head), _by_path(unmatched_base)  # grouped once:
    for old in list(unmatched_base):  # a pair empties only its own path's groups
        heads, bases = heads_of.get(old.path, []), bases_of[old.path]
        if len(heads) == 1 and len(bases) == 1:
            pair(old, heads[0])
    return renamed


def _by_path(results: Sequence[NotebookResult]) -> dict[str, list[NotebookResult]]:
    """Results by notebook path: a stored run of thousands of jobs is grouped in one pass,
    not searched once per job."""
    groups: dict[str, list[NotebookResult]] = {}
    for nb in results:
        groups.setdefault(nb.path, []).append(nb)
    return groups


def same_job(first: NotebookResult, second: NotebookResult) -> bool:
    """Whether two results of one notebook ran with the same parameters (ids aside)."""
    return first.path == second.path and dict(matching_parameters(first)) == dict(
        matching_parameters(second)
    )


def matching_parameters(result: NotebookResult) -> Mapping[str, Any]:
    """The parameters that tell a notebook's jobs apart when their ids differ: those the
    result records (its effective ones, defaults included, where a run stores them)."""
    return result.parameters


def with_head_ids(head: Sequence[NotebookResult], stored: Run) -> Run:
    """`stored` with its jobs under the ids `head` gives them (`pair_renamed`)."""
    renamed = pair_renamed(head, stored.notebooks)
    if not renamed:
        return stored
    notebooks = tuple(replace(nb, id=renamed.get(nb.id, nb.id)) for nb in stored.notebooks)
    return replace(stored, notebooks=notebooks)
