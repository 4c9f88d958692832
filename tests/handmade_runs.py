"""Hand-made runs for tests that need a Run without executing anything."""

from __future__ import annotations

import math
from typing import Any

from nbci.model import (
    Environment,
    ErrorInfo,
    Figure,
    GitInfo,
    NotebookResult,
    Run,
    Scrap,
    Status,
)


def nb(job_id: str, status: Status = "ok", /, **metrics: Any) -> NotebookResult:
    """A job result with just what comparing and gating look at (any metric name works)."""
    return NotebookResult(
        id=job_id, path=f"{job_id}.ipynb", parameters={}, status=status, metrics=metrics
    )


def run(*notebooks: NotebookResult, shard: str | None = None) -> Run:
    return Run(notebooks=notebooks, created="2026-11-26T22:00:00Z", shard=shard)


def sample_run() -> Run:
    """A small run with one of everything: ok and failed jobs, every scrap kind, a figure."""
    return Run(
        notebooks=(
            NotebookResult(
                id="train-lr-0.1",
                path="notebooks/train.ipynb",
                parameters={"lr": 0.1, "layers": [64, 32]},
                status="ok",
                duration_s=3.25,
                output="notebooks/train-lr-0.1.ipynb",
                html="notebooks/train-lr-0.1.html",
                metrics={"accuracy": 0.93, "steps": 10, "converged": True, "loss": math.nan},
                scraps={
                    "notes": Scrap("text", "hello"),
                    "page": Scrap("html", "<b>hi</b>"),
                    "table": Scrap("table", {"columns": ["a"], "rows": [[1]], "total_rows": 1}),
                    "cfg": Scrap("json", {"depth": [1, {"x": 2}]}),
                },
                figures=(Figure("confusion", "figures/train-lr-0.1/confusion.png"),),
                notes=("trimmed x",),
                cache_key="abc",
            ),
            NotebookResult(
                id="profile",
                path="notebooks/profile.ipynb",
                parameters={},
                status="failed",
                error=ErrorInfo(cell=3, ename="ValueError", evalue="bad", traceback="tb"),
            ),
        ),
        created="2026-11-26T22:00:00Z",
        git=GitInfo("a" * 40, "main", False),
        environment=Environment("3.11.7", "Linux", {"papermill": "2.7.0"}),
        nbci_version="0.1.0",
    )
