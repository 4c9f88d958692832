"""Hand-made runs for the report tests (no kernels): representative, compared, huge, hostile."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from nbci.model import (
    Comparison,
    Environment,
    ErrorInfo,
    Figure,
    GateResult,
    GitInfo,
    JobChange,
    MetricDelta,
    NotebookResult,
    Run,
    Scrap,
    Verdict,
)

TRACEBACK = """\
---------------------------------------------------------------------------
ValueError                                Traceback (most recent call last)
Cell In[4], line 3
      1 scores = evaluate(model, holdout)
----> 3 check(scores)

File ~/project/lib/checks.py:12, in check(scores)
     10 def check(scores):
     11     if scores["f1"] < 0.5:
---> 12         raise ValueError(f"f1 too low: {scores['f1']:.3f}")

ValueError: f1 too low: 0.412"""


def sample_run() -> Run:
    """Two ok jobs sharing metrics (one cached), one failed job; figures, a table, a text."""
    train = NotebookResult(
        id="train-lr-0.1",
        path="notebooks/train.ipynb",
        parameters={"lr": 0.1, "model": "logreg"},
        status="ok",
        duration_s=3.21,
        output="notebooks/train-lr-0.1.ipynb",
        html="notebooks/train-lr-0.1.html",
        metrics={"accuracy": 0.93456, "loss": 0.2104, "n_features": 20},
        scraps={
            "notes": Scrap("text", "Trained on 1,000 rows; early stopping after 12 epochs."),
            "report": Scrap(
                "text",
                "              precision    recall\n     class 0       0.94      0.92\n"
                "     class 1       0.92      0.94",
            ),
            "predictions": Scrap(
                "table",
                {
                    "columns": ["id", "label", "score"],
                    "rows": [[1, "cat", 0.91234], [2, "dog", 0.08], [3, "cat", 0.77]],
                    "total_rows": 250,
                },
            ),
            "config": Scrap("json", {"solver": "lbfgs", "max_iter": 200}),
        },
        figures=(
            Figure("confusion", "figures/train-lr-0.1/confusion.png"),
            Figure("roc", "figures/train-lr-0.1/roc.png"),
        ),
    )
    train_fast = NotebookResult(
        id="train-lr-1",
        path="notebooks/train.ipynb",
        parameters={"lr": 1, "model": "logreg"},
        status="ok",
        cached=True,
        duration_s=2.9,
        output="notebooks/train-lr-1.ipynb",
        html="notebooks/train-lr-1.html",
        metrics={"accuracy": 0.8812, "loss": 0.35, "n_features": 20},
        figures=(Figure("confusion", "figures/train-lr-1/confusion.png"),),
    )
    evaluate = NotebookResult(
        id="evaluate",
        path="notebooks/evaluate.ipynb",
        parameters={},
        status="failed",
        duration_s=1.05,
        output="notebooks/evaluate.ipynb",
        html="notebooks/evaluate.html",
        error=ErrorInfo(
            cell=4, ename="ValueError", evalue="f1 too low: 0.412", traceback=TRACEBACK
        ),
    )
    return Run(
        notebooks=(train, train_fast, evaluate),
        created="2026-11-26T22:00:00Z",
        git=GitInfo(
            sha="3f2a9c1d5e7b8a90123456789abcdef012345678", branch="feature/lr", dirty=False
        ),
        environment=Environment(
            python="3.11.7",
            platform="Linux-6.1-x86_64",
            packages={"papermill": "2.7.0", "scikit-learn": "1.5.2", "nbci": "0.1.0"},
        ),
        nbci_version="0.1.0",
    )


def sample_comparison() -> Comparison:
    deltas = (
        MetricDelta("train-lr-0.1", "accuracy", 0.9512, 0.93456, "higher"),
        MetricDelta("train-lr-0.1", "loss", 0.2501, 0.2104, "lower"),
        MetricDelta("train-lr-0.1", "n_features", 20, 20, "neutral"),
        MetricDelta("train-lr-1", "accuracy", 0.8812, 0.8812, "higher"),
        MetricDelta("train-lr-1", "loss", 0.35, 0.35, "lower"),
        MetricDelta("train-lr-1", "n_features", 18, 20, "neutral"),
        MetricDelta("evaluate", "f1", 0.71, None, "higher"),
        MetricDelta("train-lr-0.1", "auc", None, 0.97, "higher"),
    )
    jobs = (JobChange("evaluate", baseline_status="ok", status="failed"),)
    return Comparison(baseline_label="main@9e8d7c6", deltas=deltas, jobs=jobs)


def sample_verdict() -> Verdict:
    return Verdict(
        (
            GateResult(
                "accuracy",
                "train-lr-0.1",
                "accuracy",
                True,
                "train-lr-0.1:accuracy 0.935 >= min 0.9",
            ),
            GateResult(
                "accuracy", "train-lr-1", "accuracy", False, "train-lr-1:accuracy 0.881 < min 0.9"
            ),
            GateResult(
                "train-lr-0.1:accuracy",
                "train-lr-0.1",
                "accuracy",
                False,
                "train-lr-0.1:accuracy dropped 0.0166 (1.7%) > max_drop 1%",
            ),
            GateResult("evaluate:f1", "evaluate", "f1", False, "evaluate is failed, not ok"),
            GateResult("loss", "train-lr-0.1", "loss", True, "train-lr-0.1:loss 0.21 <= max 0.5"),
        )
    )


def huge_run(notebooks: int = 500, metrics: int = 20, traceback_bytes: int = 1_000_000) -> Run:
    """Hundreds of notebooks, thousands of metrics, megabyte tracebacks, long texts."""
    results = []
    for i in range(notebooks):
        failed = i % 10 == 0
        results.append(
            NotebookResult(
                id=f"sweep-{i:04d}",
                path="notebooks/sweep.ipynb",
                parameters={"seed": i, "note": "x" * 50},
                status="failed" if failed else "ok",
                duration_s=float(i),
                output=f"notebooks/sweep-{i:04d}.ipynb",
                html=f"notebooks/sweep-{i:04d}.html",
                error=ErrorInfo(
                    cell=2,
                    ename="RuntimeError",
                    evalue="boom " * 2_000,
                    traceback=("frame line\n" * (traceback_bytes // 11)),
                )
                if failed
                else None,
                metrics={f"metric_{m:02d}": i * 0.001 + m for m in range(metrics)},
                scraps={"log": Scrap("text", "log line\n" * 20_000)},
                figures=(Figure("curve", f"figures/sweep-{i:04d}/curve.png"),),
            )
        )
    return Run(notebooks=tuple(results), created="2026-11-26T22:00:00Z")


def huge_comparison(run: Run) -> Comparison:
    deltas = tuple(
        MetricDelta(nb.id, name, value * 1.01 if i % 3 else value, value, "higher")
        for i, nb in enumerate(run.notebooks)
        for name, value in nb.metrics.items()
    )
    return Comparison(baseline_label="main", deltas=deltas)


def tiny_png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    """A valid PNG of one colour, without any imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def write_figures(run: Run, out_dir: Path) -> None:
    """A small PNG at every figure path of `run`."""
    for nb in run.notebooks:
        for figure in nb.figures:
            path = out_dir / figure.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tiny_png())
