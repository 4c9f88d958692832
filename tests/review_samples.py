"""Runs with curves and figures against a baseline, for the report tests (no kernels)."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from pathlib import Path

from nbci.judge import Criteria, judge
from nbci.model import Figure, MetricValue, NotebookResult, Run, SeriesGroup
from nbci.render import write_reports
from nbci.series import recognise

LONG = 50_000
"""Points of the long series: far over `nbci.series.MAX_POINTS`."""


def curves(glued: dict[str, object]) -> tuple[tuple[SeriesGroup, ...], dict[str, MetricValue]]:
    """The series groups of `{scrap name: glued value}`, and their last/min/max metrics."""
    groups, metrics = [], {}
    for name, value in glued.items():
        found = recognise(name, value)
        assert found is not None
        groups.append(found.group)
        metrics.update(found.metrics)
    return tuple(groups), metrics


def square_png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _long_curve(shift: float) -> list[float | None]:
    curve: list[float | None] = [
        math.exp(-i / 8000) + shift + 0.01 * math.sin(i) for i in range(LONG)
    ]
    for i in range(20_000, 21_000):
        curve[i] = math.nan  # a gap: the loss diverged for a while
    curve[30_000] = None
    return curve


def review_runs(out: Path, base: Path) -> tuple[Run, Run]:
    """This run and its baseline, figures written into `out` and `base`.

    `train`: a Keras-like history (changed), a 50,000-point series with gaps, and
    figures unchanged / changed / resized / added / removed. `sweep`: a group of 12.
    """
    figures = {
        out: {
            "same": square_png((10, 120, 200)),
            "moved": square_png((200, 40, 40)),
            "resized": square_png((0, 0, 0), (50, 30)),
            "new": square_png((0, 160, 0)),
        },
        base: {
            "same": square_png((10, 120, 200)),
            "moved": square_png((40, 40, 200)),
            "resized": square_png((0, 0, 0)),
            "gone": square_png((90, 90, 90)),
        },
    }
    runs = []
    for folder, shift in ((out, 0.0), (base, 0.1)):
        for name, data in figures[folder].items():
            path = folder / "figures" / "train" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        history = {
            "loss": [1.0 - shift, 0.6, 0.4 + shift, 0.3 + shift, 0.25 + shift],
            "val_loss": [1.1, 0.8 + shift, 0.7 + shift, 0.65 + shift, 0.62 + shift],
        }
        train_series, train_metrics = curves({"history": history, "long": _long_curve(shift)})
        lr = {f"lr_{i}": [10.0 ** -(i % 6) * (1 + j) for j in range(6)] for i in range(12)}
        sweep_series, _ = curves({"lr": lr})
        train = NotebookResult(
            id="train",
            path="notebooks/train.ipynb",
            parameters={},
            status="ok",
            figures=tuple(Figure(name, f"figures/train/{name}.png") for name in figures[folder]),
            metrics={k: v for k, v in train_metrics.items() if k.startswith("history.")},
            series=train_series,
        )
        sweep = NotebookResult(
            id="sweep",
            path="notebooks/sweep.ipynb",
            parameters={},
            status="ok",
            series=sweep_series,
        )
        runs.append(Run(notebooks=(train, sweep), created="2026-12-01T00:00:00Z"))
    return runs[0], runs[1]


def without_figures(run: Run) -> Run:
    return replace(run, notebooks=tuple(replace(nb, figures=()) for nb in run.notebooks))


def write_compared(root: Path) -> tuple[Path, Run, Run]:
    """Both reports of the review run against its baseline, written into `root/out`."""
    out, base = root / "out", root / "base"
    run, baseline = review_runs(out, base)
    judged = judge(run, baseline, label="abc1234", criteria=Criteria())
    write_reports(
        run,
        out,
        comparison=judged.comparison,
        verdict=judged.verdict,
        baseline_dir=base,
        baseline=baseline,
    )
    return out, run, baseline
