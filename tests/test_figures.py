"""nbci.figures: pixel-identical figures are unchanged, changed ones get a difference image."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from nbci.figures import (
    CHANGED_COLOUR,
    compare_images,
    figure_changes,
    file_reader,
)
from nbci.model import Figure, NotebookResult, Run


def plot_png(
    values: list[float],
    size: tuple[float, float] = (3, 2),
    *,
    metadata: dict[str, str] | None = None,
) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=size, dpi=50)
    FigureCanvasAgg(figure)
    figure.add_subplot().plot(values)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata=metadata)
    return buffer.getvalue()


def test_the_same_pixels_in_other_bytes_are_unchanged() -> None:
    one = plot_png([1, 2, 3], metadata={"Software": "one"})
    other = plot_png([1, 2, 3], metadata={"Software": "another"})
    assert one != other

    assert compare_images(one, other).changed is False


def test_a_changed_figure_gets_a_same_size_image_marking_the_changed_pixels() -> None:
    base, head = plot_png([1, 2, 3]), plot_png([1, 3, 2])

    result = compare_images(head, base)

    assert result.changed and result.difference is not None
    assert "pixels changed" in result.note
    difference = Image.open(io.BytesIO(result.difference)).convert("RGB")
    assert difference.size == Image.open(io.BytesIO(head)).size
    old = Image.open(io.BytesIO(base)).convert("RGB")
    new = Image.open(io.BytesIO(head)).convert("RGB")
    width, height = difference.size
    for xy in ((x, y) for x in range(width) for y in range(height)):
        marked = difference.getpixel(xy) == CHANGED_COLOUR
        assert marked == (old.getpixel(xy) != new.getpixel(xy)), xy


def test_a_size_change_is_said_in_words_without_a_difference_image() -> None:
    result = compare_images(plot_png([1, 2], size=(4, 2)), plot_png([1, 2], size=(3, 2)))

    assert result.changed and result.difference is None
    assert result.note == "size changed from 150×100 to 200×100"


def test_files_that_are_not_png_are_compared_by_bytes() -> None:
    assert compare_images(b"<svg/>", b"<svg/>").changed is False
    result = compare_images(b"not a png", plot_png([1]))
    assert result.changed and result.note == "compared by bytes only"


def test_a_decompression_bomb_is_not_decoded() -> None:
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")  # 100 Mpixels, a few kB

    result = compare_images(bomb.getvalue(), plot_png([1]))

    assert result.changed and result.note == "compared by bytes only"


def run_with(tmp: Path, figures: dict[str, bytes]) -> Run:
    for name, data in figures.items():
        path = tmp / "figures" / "train" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    nb = NotebookResult(
        id="train",
        path="train.ipynb",
        parameters={},
        status="ok",
        figures=tuple(Figure(name, f"figures/train/{name}.png") for name in figures),
    )
    return Run(notebooks=(nb,), created="2026-12-01T00:00:00Z")


def test_a_run_against_its_baseline(tmp_path: Path) -> None:
    head_dir, base_dir = tmp_path / "head", tmp_path / "base"
    same = plot_png([1, 2, 3])
    head = run_with(head_dir, {"same": same, "moved": plot_png([3, 2, 1]), "new": same})
    base = run_with(base_dir, {"same": same, "moved": plot_png([1, 2, 3]), "gone": same})

    changes = figure_changes(head, base, file_reader(head_dir), file_reader(base_dir), head_dir)

    states = {c.name: c.state for c in changes}
    assert states == {"same": "unchanged", "moved": "changed", "new": "added", "gone": "removed"}
    moved = next(c for c in changes if c.name == "moved")
    assert moved.diff_path == "diffs/train/moved.png"
    assert (head_dir / moved.diff_path).read_bytes().startswith(b"\x89PNG")
    gone = next(c for c in changes if c.name == "gone")
    assert gone.path is None and gone.baseline_path == "figures/train/gone.png"


def test_unreadable_figures_are_changed_and_said_so(tmp_path: Path) -> None:
    head = run_with(tmp_path / "head", {"f": plot_png([1])})
    base = run_with(tmp_path / "base", {"f": plot_png([1])})
    (tmp_path / "base" / "figures" / "train" / "f.png").unlink()
    outside = tmp_path / "secret.png"
    outside.write_bytes(plot_png([1]))

    changes = figure_changes(head, base, file_reader(tmp_path / "head"), file_reader(tmp_path))

    assert changes[0].state == "changed" and "not compared" in changes[0].note
    assert file_reader(tmp_path / "head")("../secret.png") is None


def test_a_job_run_under_another_id_is_compared_with_its_baseline_figures(
    tmp_path: Path,
) -> None:
    # `-p lr=0.1` runs `train`, whose baseline job is the matrix job `train-lr-0.1`.
    same = plot_png([1, 2, 3])
    head = run_with(tmp_path / "head", {"f": same})
    base_dir = tmp_path / "base"
    (base_dir / "figures" / "train-lr-0.1").mkdir(parents=True)
    (base_dir / "figures" / "train-lr-0.1" / "f.png").write_bytes(same)
    base_nb = NotebookResult(
        id="train-lr-0.1",
        path="train.ipynb",
        parameters={},
        status="ok",
        figures=(Figure("f", "figures/train-lr-0.1/f.png"),),
    )
    base = Run(notebooks=(base_nb,), created="2026-12-01T00:00:00Z")

    changes = figure_changes(head, base, file_reader(tmp_path / "head"), file_reader(base_dir))

    assert [(c.job_id, c.state, c.baseline_path) for c in changes] == [
        ("train", "unchanged", "figures/train-lr-0.1/f.png")
    ]
