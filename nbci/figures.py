"""Figures against the baseline's: unchanged, changed (with a difference image), added, removed.

Two figures are the same when their pixels are (a PNG re-encoded with other
metadata is still unchanged). A changed figure of the same size gets a
difference image: this run's figure faded to grey, every changed pixel in
magenta, so a reviewer sees where it moved. Figures of different sizes get
no difference image; the change of size is said in words.

Figures are matched by path (`figures/<job>/<name>.png`: same job, same
name). The images are untrusted: a file that is not a readable PNG, or one
with more pixels than `MAX_PIXELS`, is compared by its bytes only.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nbci._files import is_within, read_inside, safe_name, write_bytes_atomic
from nbci.formats import MAX_FIGURE_BYTES
from nbci.model import FigureChange, Run

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

MAX_PIXELS = 40_000_000
"""Larger images (a decompression bomb, or just huge) are compared by bytes, not pixels."""
CHANGED_COLOUR = (255, 0, 255)
DIFF_FOLDER = "diffs"
"""Difference images: `diffs/<job>/<name>.png` in the output directory."""


@dataclass(frozen=True)
class ImageComparison:
    """Two images compared: whether they differ, and how."""

    changed: bool
    difference: bytes | None = None
    """PNG marking the changed pixels; None when unchanged or not comparable pixel by pixel."""
    note: str = ""
    """In words: `1,234 pixels changed (0.5%)`, `size changed from 640×480 to 800×600`."""


def compare_images(head: bytes, base: bytes) -> ImageComparison:
    """Compare two figure files, pixel by pixel when both are readable PNGs."""
    if head == base:
        return ImageComparison(changed=False)
    head_image, base_image = _open(head), _open(base)
    if head_image is None or base_image is None:
        return ImageComparison(changed=True, note="compared by bytes only")
    if head_image.size != base_image.size:
        (w0, h0), (w1, h1) = base_image.size, head_image.size
        return ImageComparison(changed=True, note=f"size changed from {w0}×{h0} to {w1}×{h1}")
    mask = _changed_pixels(head_image, base_image)
    count = sum(mask.histogram()[1:])
    if count == 0:
        return ImageComparison(changed=False)
    share = count / (head_image.size[0] * head_image.size[1])
    note = f"{count:,} pixels changed ({share:.1%})"
    return ImageComparison(changed=True, difference=_difference_png(head_image, mask), note=note)


def _open(data: bytes) -> Image | None:
    """A decoded RGBA image, or None when the bytes are not a sane PNG."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # MAX_PIXELS is the bound, checked before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            if image.format != "PNG" or image.size[0] * image.size[1] > MAX_PIXELS:
                return None
            return image.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _changed_pixels(head: Image, base: Image) -> Image:
    """An `L` mask: 255 where any channel differs, 0 elsewhere."""
    from PIL import ImageChops

    bands = ImageChops.difference(head, base).split()
    strongest = bands[0]
    for band in bands[1:]:
        strongest = ImageChops.lighter(strongest, band)
    return strongest.point(lambda v: 255 if v else 0)


def _difference_png(head: Image, mask: Image) -> bytes:
    from PIL import Image as PILImage

    white = PILImage.new("RGBA", head.size, (255, 255, 255, 255))
    faded = PILImage.alpha_composite(white, head).convert("L").point(lambda v: 160 + v * 95 // 255)
    picture = faded.convert("RGB")
    picture.paste(CHANGED_COLOUR, (0, 0, *head.size), mask)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


# -- a run against its baseline ------------------------------------------------------

Reader = Callable[[str], bytes | None]
"""Reads a figure file by its path in a run; None when it is missing or refused."""


def figure_changes(
    run: Run,
    baseline: Run,
    read_head: Reader,
    read_base: Reader,
    out_dir: Path | None = None,
) -> tuple[FigureChange, ...]:
    """Every figure of both runs, each with its state; difference images go to `out_dir`.

    Without `out_dir` nothing is written and changed figures have no difference image.
    """
    from nbci.ids import with_head_ids

    baseline = with_head_ids(run.notebooks, baseline)  # a renamed job keeps its figures
    base_paths = {(nb.id, f.name): f.path for nb in baseline.notebooks for f in nb.figures}
    changes: list[FigureChange] = []
    for nb in run.notebooks:
        for figure in nb.figures:
            base_path = base_paths.get((nb.id, figure.name))
            if base_path is None:
                changes.append(FigureChange(nb.id, figure.name, "added", path=figure.path))
                continue
            changes.append(
                _compared(
                    nb.id, figure.name, (figure.path, base_path), read_head, read_base, out_dir
                )
            )
    head_figures = {(nb.id, f.name) for nb in run.notebooks for f in nb.figures}
    for nb in baseline.notebooks:
        changes.extend(
            FigureChange(nb.id, f.name, "removed", baseline_path=f.path)
            for f in nb.figures
            if (nb.id, f.name) not in head_figures
        )
    return tuple(changes)


def _compared(
    job_id: str,
    name: str,
    paths: tuple[str, str],
    read_head: Reader,
    read_base: Reader,
    out_dir: Path | None,
) -> FigureChange:
    """`paths`: the figure in this run and in the baseline (another when its job was renamed)."""
    path, base_path = paths
    head, base = read_head(path), read_base(base_path)
    if head is None or base is None:
        note = "not compared pixel by pixel"
        return FigureChange(job_id, name, "changed", path=path, baseline_path=base_path, note=note)
    result = compare_images(head, base)
    if not result.changed:
        return FigureChange(job_id, name, "unchanged", path=path, baseline_path=base_path)
    diff_path = None
    if result.difference is not None and out_dir is not None:
        diff_path = _write_difference(out_dir, job_id, name, result.difference)
    return FigureChange(
        job_id, name, "changed", path=path, baseline_path=base_path, diff_path=diff_path,
        note=result.note,
    )  # fmt: skip


def _write_difference(out_dir: Path, job_id: str, name: str, data: bytes) -> str | None:
    relative = f"{DIFF_FOLDER}/{safe_name(job_id)}/{safe_name(name)}.png"
    path = out_dir / relative
    if not is_within(path, out_dir):
        return None
    try:
        write_bytes_atomic(path, data)
    except OSError as error:
        logger.warning("could not write the difference image %s: %s", path, error.strerror)
        return None
    return relative


def file_reader(folder: Path) -> Reader:
    """Reads figures from a run directory: regular files inside it, within the size cap."""

    def read(relative: str) -> bytes | None:
        data = read_inside(folder, relative, MAX_FIGURE_BYTES)
        return data if isinstance(data, bytes) else None

    return read


def by_state(changes: Iterable[FigureChange], state: str) -> tuple[FigureChange, ...]:
    return tuple(c for c in changes if c.state == state)
