"""nbci.render.visuals: charts and figure comparisons per job, drawn into the output folder."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from nbci.model import Figure, NotebookResult, Run, SeriesGroup
from nbci.render.visuals import draw_visuals
from nbci.series import make_series


def png(colour: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def run_in(folder: Path, figures: dict[str, bytes], loss: list[float]) -> Run:
    for name, data in figures.items():
        (folder / "figures" / "train").mkdir(parents=True, exist_ok=True)
        (folder / "figures" / "train" / f"{name}.png").write_bytes(data)
    nb = NotebookResult(
        id="train",
        path="train.ipynb",
        parameters={},
        status="ok",
        figures=tuple(Figure(f"<b>{n}</b>", f"figures/train/{n}.png") for n in figures),
        series=(SeriesGroup("history", (make_series("history.loss", loss),)),),
    )
    return Run(notebooks=(nb,), created="2026-12-01T00:00:00Z")


def test_draw_visuals_with_a_baseline(tmp_path: Path) -> None:
    head_dir, base_dir = tmp_path / "head", tmp_path / "base"
    head = run_in(head_dir, {"same": png("red"), "moved": png("blue"), "new": png("red")}, [1, 0])
    base = run_in(base_dir, {"same": png("red"), "moved": png("green"), "old": png("red")}, [1, 1])

    drawn = draw_visuals(head, head_dir, baseline=base, baseline_dir=base_dir, baseline_label="b")

    visuals = drawn.by_job["train"]
    assert [(c.title, c.changed) for c in visuals.charts] == [("history", True)]
    assert (head_dir / visuals.charts[0].path).is_file()
    assert visuals.unchanged == ("<b>same</b>",)  # plain text: the renderers escape it
    (moved,) = visuals.changed
    assert moved.diff_path is not None
    assert moved.diff_path == "diffs/train/b_moved_b-" + moved.diff_path.rsplit("-", 1)[1]
    assert (head_dir / moved.diff_path).is_file() and moved.note == "200 pixels changed (100.0%)"
    assert [f.name for f in visuals.added] == ["<b>new</b>"]
    assert [f.baseline_path for f in visuals.removed] == ["figures/train/old.png"]


def test_draw_visuals_without_a_baseline_draws_the_runs_own_curves(tmp_path: Path) -> None:
    head = run_in(tmp_path, {"f": png("red")}, [1, 0.5])

    visuals = draw_visuals(head, tmp_path).by_job["train"]

    assert len(visuals.charts) == 1 and not visuals.charts[0].changed
    assert not visuals.compared


def test_drawing_again_leaves_no_stale_charts_or_difference_images(tmp_path: Path) -> None:
    head_dir, base_dir = tmp_path / "head", tmp_path / "base"
    head = run_in(head_dir, {"moved": png("blue")}, [1, 0])
    base = run_in(base_dir, {"moved": png("green")}, [1, 1])
    draw_visuals(head, head_dir, baseline=base, baseline_dir=base_dir, baseline_label="b")
    assert (head_dir / "charts").is_dir() and (head_dir / "diffs").is_dir()

    without_curves = replace(head, notebooks=(replace(head.notebooks[0], series=()),))
    draw_visuals(without_curves, head_dir)

    assert not (head_dir / "charts").exists()
    assert not (head_dir / "diffs").exists()
    assert (head_dir / "figures/train/moved.png").is_file()
