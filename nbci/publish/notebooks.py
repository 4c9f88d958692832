"""The executed notebooks on the assets branch, where GitHub renders them.

A reviewer opens the forge's page of `pr/<n>/<report>/notebooks/<job>.ipynb` at the
assets commit (`{server}/{owner}/{repo}/blob/{commit}/{path}` on GitHub) and
sees the notebook rendered, outputs and all, without downloading an artifact.
What goes there, prepared here (committing is `assets.store`'s):

- every failed notebook, then the others in run order while the total stays
  within `MAX_TOTAL_BYTES`;
- each trimmed so that GitHub still renders it: an output over
  `MAX_OUTPUT_BYTES` (and then the largest ones, until the notebook is within
  `MAX_NOTEBOOK_BYTES`) is replaced by a note; scrapbook's invisible data
  payloads are dropped (the artifact keeps the complete notebook);
- the run's timestamps (papermill's start and end times, per-cell execution
  times) are dropped too, so a notebook that ran to the same outputs has the
  same bytes, and `assets.store` does not upload it again.

The notebooks are untrusted files of the run directory: read only when they
are regular files inside it, within `MAX_READ_BYTES`, and valid JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbci._files import read_inside, safe_name
from nbci.formats import SCRAP_PREFIX
from nbci.model import NotebookResult, Run
from nbci.publish.assets import Asset

logger = logging.getLogger(__name__)

MAX_READ_BYTES = 256 * 1024 * 1024
MAX_OUTPUT_BYTES = 1024 * 1024
MAX_NOTEBOOK_BYTES = 5 * 1024 * 1024
"""GitHub stops rendering a notebook somewhere past a few megabytes."""
MAX_TOTAL_BYTES = 50 * 1024 * 1024
"""All notebooks of one publish; failed ones are always kept."""
FOLDER = "notebooks"
_VOLATILE = ("start_time", "end_time", "duration", "exception")


@dataclass(frozen=True)
class NotebookAssets:
    assets: tuple[Asset, ...]
    paths: dict[str, str]
    """Job id → the notebook's path on the assets branch."""
    skipped: tuple[str, ...] = ()
    """One line per notebook left off the branch, and why."""


def notebook_assets(
    run: Run, out_dir: Path, folder: str, *, total_limit: int = MAX_TOTAL_BYTES
) -> NotebookAssets:
    """The run's executed notebooks, trimmed, as assets under `folder/notebooks/`."""
    assets: list[Asset] = []
    paths: dict[str, str] = {}
    skipped: list[str] = []
    total = 0
    for nb in _failed_first(run.notebooks):
        if nb.output is None:
            continue
        data = _read(out_dir, nb.output)
        if isinstance(data, str):
            skipped.append(f"{nb.id}: {data}")
            continue
        if nb.ok and total + len(data) > total_limit:
            skipped.append(f"{nb.id}: over the {total_limit // 2**20} MiB for all notebooks")
            continue
        total += len(data)
        path = stored_path(folder, nb.id)
        assets.append(Asset(path, data))
        paths[nb.id] = path
    for line in skipped:
        logger.warning("notebook not stored: %s", line)
    return NotebookAssets(tuple(assets), paths, tuple(skipped))


def stored_path(folder: str, job_id: str) -> str:
    """Where a job's executed notebook is on the assets branch, below a run's folder."""
    return f"{folder}/{FOLDER}/{safe_name(job_id)}.ipynb"


def _failed_first(notebooks: Iterable[NotebookResult]) -> list[NotebookResult]:
    ordered = list(notebooks)
    return [nb for nb in ordered if not nb.ok] + [nb for nb in ordered if nb.ok]


def _read(out_dir: Path, relative: str) -> bytes | str:
    """The notebook, trimmed for GitHub, or why it was left out."""
    data = read_inside(out_dir, relative, MAX_READ_BYTES)
    if isinstance(data, str):
        return "the executed notebook is missing" if data == "missing" else data
    try:
        notebook = json.loads(data)
    except (ValueError, RecursionError):
        return "not a readable notebook"
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return "not a notebook (no list of cells)"
    return trimmed(notebook)


def trimmed(notebook: dict[str, Any]) -> bytes:
    """The notebook as GitHub should get it: see the module docstring."""
    _drop_volatile(notebook)
    outputs = [
        (cell, index)
        for cell in notebook["cells"]
        if isinstance(cell, dict) and isinstance(cell.get("outputs"), list)
        for index in range(len(cell["outputs"]))
    ]
    sizes: dict[tuple[int, int], int] = {}
    for cell, index in outputs:
        output = _without_payloads(cell["outputs"][index])
        cell["outputs"][index] = output
        size = len(_dumps(output))
        if size > MAX_OUTPUT_BYTES:
            cell["outputs"][index] = _note(size)
        else:
            sizes[(id(cell), index)] = size
    total = len(_dumps(notebook))
    cells = {id(cell): cell for cell, _ in outputs}
    for (cell_id, index), size in sorted(sizes.items(), key=lambda item: -item[1]):
        if total <= MAX_NOTEBOOK_BYTES:
            break
        note = _note(size)
        cells[cell_id]["outputs"][index] = note
        total -= size - len(_dumps(note))
    return _dumps(notebook)


def _drop_volatile(notebook: dict[str, Any]) -> None:
    papermill = notebook.get("metadata", {}).get("papermill")
    if isinstance(papermill, dict):
        for key in _VOLATILE:
            papermill.pop(key, None)
    for cell in notebook["cells"]:
        metadata = cell.get("metadata") if isinstance(cell, dict) else None
        if isinstance(metadata, dict):
            metadata.pop("execution", None)
            if isinstance(metadata.get("papermill"), dict):
                for key in _VOLATILE:
                    metadata["papermill"].pop(key, None)


def _without_payloads(output: Any) -> Any:
    """The output without scrapbook's data payloads (none left: a note-free empty display)."""
    data = output.get("data") if isinstance(output, dict) else None
    if not isinstance(data, dict) or not any(str(m).startswith(SCRAP_PREFIX) for m in data):
        return output
    kept = {m: v for m, v in data.items() if not str(m).startswith(SCRAP_PREFIX)}
    return {**output, "data": kept or {"text/plain": ""}}


def _note(size: int) -> dict[str, Any]:
    text = f"[an output of {size:,} bytes, removed by nbci: the run's artifact has it]\n"
    return {"output_type": "stream", "name": "stdout", "text": text}


def _dumps(value: Any) -> bytes:
    """Compact JSON: an output's size alone is its size inside the notebook."""
    return json.dumps(value, separators=(",", ":")).encode("ascii")
