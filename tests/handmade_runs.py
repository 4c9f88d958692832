"""Hand-made runs for the compare, gates and diff tests."""

from __future__ import annotations

from typing import Any

from nbci.model import NotebookResult, Run, Status


def nb(job_id: str, status: Status = "ok", /, **metrics: Any) -> NotebookResult:
    """A job result with just what comparing and gating look at (any metric name works)."""
    return NotebookResult(
        id=job_id, path=f"{job_id}.ipynb", parameters={}, status=status, metrics=metrics
    )


def run(*notebooks: NotebookResult, shard: str | None = None) -> Run:
    return Run(notebooks=notebooks, created="2026-11-26T22:00:00Z", shard=shard)
