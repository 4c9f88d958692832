"""Hand-made runs for the sweep and table reports: a 3 × 3 sweep of a train.ipynb-like
notebook against its baseline, and a data profile whose tables changed (no kernels)."""

from __future__ import annotations

from typing import Any

from nbci.compare import compare
from nbci.model import Comparison, GitInfo, NotebookResult, Run, Scrap, SeriesGroup
from nbci.series import make_series, summary_metrics

MODELS = ("logreg", "svc", "forest")
CS = (0.1, 1.0, 10.0)


def train_job(model: str, c: float, *, better: float = 0.0) -> NotebookResult:
    """One job of `train.ipynb` with `model` and `C` from the matrix, glued like it glues:
    four scalars and a learning curve (six series-derived metrics)."""
    accuracy = round(0.93 + 0.02 * MODELS.index(model) - 0.015 * abs(c - 1) / c + better, 4)
    training = [0.99, 0.985, 0.98, 0.975]
    validation = [0.85, 0.9, 0.92, round(accuracy - 0.01, 4)]
    metrics: dict[str, Any] = {
        "accuracy": accuracy,
        "f1_macro": round(accuracy - 0.004, 4),
        "train_time_s": round(0.05 * c + 0.1 * MODELS.index(model), 3),
        "cv_accuracy": round(accuracy - 0.01, 4),
    }
    metrics.update(summary_metrics("learning.training", training))
    metrics.update(summary_metrics("learning.cross_validation", validation))
    curves = (
        make_series("learning.training", training, [134, 444, 889, 1347]),
        make_series("learning.cross_validation", validation, [134, 444, 889, 1347]),
    )
    job_id = f"train-C-{c}-model-{model}"
    return NotebookResult(
        id=job_id,
        path="notebooks/train.ipynb",
        parameters={"C": c, "model": model},
        status="ok",
        duration_s=1.5,
        output=f"notebooks/{job_id}.ipynb",
        html=f"notebooks/{job_id}.html",
        metrics=metrics,
        series=(SeriesGroup("learning", curves),),
    )


def sweep_runs() -> tuple[Run, Run, Comparison]:
    """This run (svc 0.005 better everywhere, forest C=10 worse) and its baseline."""

    def better(model: str, c: float) -> float:
        return 0.005 if model == "svc" else -0.01 if (model, c) == ("forest", 10.0) else 0.0

    head = Run(
        tuple(train_job(m, c, better=better(m, c)) for m in MODELS for c in CS),
        created="2026-12-03T12:00:00Z",
        git=GitInfo("b" * 40, "sweep", False),
    )
    base = Run(
        tuple(train_job(m, c) for m in MODELS for c in CS),
        created="2026-12-02T12:00:00Z",
        git=GitInfo("a" * 40, "main", False),
    )
    return head, base, compare(head, base, label="aaaaaaaaaaaa")


def _table(columns: list[str], rows: list[list[Any]], index: int = 0) -> Scrap:
    value: dict[str, Any] = {"columns": columns, "rows": rows, "total_rows": len(rows)}
    return Scrap("table", {**value, "index": index} if index else value)


def pixel_stats(shift: float = 0.0) -> Scrap:
    """`data_profile`'s 64-row table, indexed by pixel."""
    rows = [
        [f"pixel_{i // 8}_{i % 8}", round(i * 0.1 + (shift if i in (9, 10) else 0), 3), 1.5, 16]
        for i in range(64)
    ]
    return _table(["pixel", "mean", "std", "max"], rows, index=1)


def profile_runs() -> tuple[Run, Run, Comparison]:
    """A data profile whose `class_balance` changed (a class lost rows, one came, one went),
    whose `pixel_stats` changed in two rows, and whose `columns` table is unchanged."""
    balance = _table(
        ["digit", "count", "share"], [[0, 178, 0.099], [1, 182, 0.1013], [2, 177, 0.0985]], 1
    )
    balance_now = _table(
        ["digit", "count", "share"], [[0, 178, 0.099], [1, 150, 0.0858], [3, 183, 0.1018]], 1
    )
    columns = _table(["name", "dtype"], [["pixel_0_0", "float64"], ["target", "int64"]])

    def profile(tables: dict[str, Scrap]) -> Run:
        nb = NotebookResult(
            "data_profile",
            "notebooks/data_profile.ipynb",
            {},
            "ok",
            metrics={"missing_values": 0},
            scraps=tables,
        )
        return Run((nb,), created="2026-12-03T12:00:00Z")

    head = profile(
        {"class_balance": balance_now, "pixel_stats": pixel_stats(0.25), "columns": columns}
    )
    base = profile({"class_balance": balance, "pixel_stats": pixel_stats(), "columns": columns})
    return head, base, compare(head, base, label="main")
