"""Which code cells of a notebook changed against the baseline's executed notebook.

The code cells are aligned by their sources (`nbci._alignment`: equal sources,
then similar ones, with difflib, as nbdime does) and each changed cell's source
and text outputs are diffed line by line (difflib): a cell `edited`, `added`,
`removed`, or `moved` (the same source at another place). Only sources count:
papermill's `injected-parameters` cell, markdown, metadata and outputs are not
code, so a notebook whose outputs alone changed has no code change. Cells are
named by their `In [N]` of this run (of the baseline for a removed one).

Notebooks are untrusted JSON (a fork's artifact, a stored run): anything that
is not a list of cells with text sources counts as no cells.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from nbci._alignment import Budget, Step, align
from nbci._files import read_inside, safe_name, write_bytes_atomic
from nbci.model import CellChange, CellImage, CodeChange, DiffLine, Run

logger = logging.getLogger(__name__)

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
MAX_TEXT_LINES = 2_000
"""Lines of one cell's source or text output that are shown; past them, a note."""
MAX_DIFFED_LINES = 200
"""Differing lines (past those the two texts share at their start and end) that are
diffed line by line; more are shown as removed, then added (difflib's time can grow with
the square of them)."""
MAX_APPROXIMATE_PAIRS = 2_500
"""Pairs of cells compared by similar source (an edited cell): in each run of changed
cells between equal ones, the baseline's times this run's, run after run; a run past
that (or past `MAX_COMPARED_CHARS`) shows its edits as removed and added."""
MAX_COMPARED_CHARS = 500_000
"""Characters compared by similar source, both cells' of every pair counted as for
`MAX_APPROXIMATE_PAIRS`, which a comparison's time grows with (at worst about 3 µs each)."""
MAX_STRICT_PAIRS = 40_000
"""Cells of the changed region (past those both notebooks share at their start and end),
baseline's times this run's, that are aligned by equal source; past that, the region's
cells are listed as removed and added (or moved)."""
MAX_ALIGNED_CHARS = 20_000
"""Characters of a source (of its first `MAX_DIFFED_LINES` lines) that tell how alike it is
to another; a longer source is compared by those and a digest of the whole."""
IMAGE_FOLDER = "cells"
"""Image outputs of changed cells: `cells/<job>/<N>-<k>.png` (`-base` for the baseline's)."""
MAX_CELL_IMAGES = 10
"""Image outputs of one changed cell compared and written; the rest are left out."""
INJECTED = "injected-parameters"
_IMAGE_TYPES = ("image/png",)

Cells = Sequence[Mapping[str, Any]]
ImageWriter = Callable[[str, bytes], str | None]
"""Writes an image under a name relative to the output directory; its path or None."""


def code_changes(
    run: Run,
    baseline: Run,
    read_head: Callable[[str], bytes | None],
    read_base: Callable[[str], bytes | None],
    out_dir: Path | None = None,
) -> tuple[CodeChange, ...]:
    """The code changes of every job on both sides whose notebooks can be read.

    `read_head`/`read_base` take a job's `output` path (`notebooks/<job>.ipynb`);
    with `out_dir`, changed cells' images are written there and compared pixel by pixel.
    """
    changes = []
    for nb in run.notebooks:
        base = baseline.get(nb.id)
        if base is None or nb.output is None or base.output is None:
            continue
        head_cells, base_cells = _cells(read_head(nb.output)), _cells(read_base(base.output))
        if head_cells is None or base_cells is None:
            continue
        writer = _image_writer(out_dir, nb.id) if out_dir is not None else None
        cells = changed_cells(head_cells, base_cells, writer)
        if cells:
            changes.append(CodeChange(nb.id, cells))
    return tuple(changes)


def notebook_reader(folder: Path) -> Callable[[str], bytes | None]:
    """Reads executed notebooks of a run directory: regular files inside it, bounded."""

    def read(relative: str) -> bytes | None:
        data = read_inside(folder, relative, MAX_NOTEBOOK_BYTES)
        if isinstance(data, str):
            logger.info("%s: not compared (%s)", relative, data)
            return None
        return data

    return read


def changed_cells(
    head: Cells, base: Cells, write_image: ImageWriter | None = None
) -> tuple[CellChange, ...]:
    """The code cells of `head` that differ from `base`'s, in this run's order (removed
    cells where they were); of both, only the notebook's own code cells count."""
    head, base = _own_code(head), _own_code(base)
    head_numbers, base_numbers = _numbers(head), _numbers(base)
    aligned = _aligned_cells(base, head)
    changes = []
    for kind, b, h in aligned:
        head_cell = head[h] if h is not None else {}
        base_cell = base[b] if b is not None else {}
        number = head_numbers[h] if h is not None else None
        base_number = base_numbers[b] if b is not None else None
        images = _images(head_cell, base_cell, number or base_number or 0, write_image)
        changes.append(
            CellChange(
                kind=kind,
                number=number,
                baseline_number=base_number,
                source=diff_lines(_source(base_cell), _source(head_cell)),
                outputs=diff_lines(_output_text(base_cell), _output_text(head_cell)),
                images=images,
            )
        )
    return tuple(changes)


def diff_lines(base: str, head: str) -> tuple[DiffLine, ...]:
    """Two texts line by line (difflib): every line tagged ` `, `-` or `+` (where lines
    differ, the baseline's, then this run's)."""
    base, head = _ended(base), _ended(head)  # a last line without "\n" is the same line
    base_lines, head_lines = base.splitlines(keepends=True), head.splitlines(keepends=True)
    start = _shared(base_lines, head_lines)
    end = _shared(base_lines[start:][::-1], head_lines[start:][::-1])
    base_part = base_lines[start : len(base_lines) - end]
    head_part = head_lines[start : len(head_lines) - end]
    blocks: Sequence[tuple[str, int, int, int, int]]
    if max(len(base_part), len(head_part)) > MAX_DIFFED_LINES:
        blocks = [("replace", 0, len(base_part), 0, len(head_part))]
    else:
        blocks = SequenceMatcher(None, base_part, head_part, autojunk=False).get_opcodes()
    tagged: list[DiffLine] = [(" ", _line(line)) for line in base_lines[:start]]
    for tag, i1, i2, j1, j2 in blocks:
        if tag == "equal":
            tagged += [(" ", _line(line)) for line in base_part[i1:i2]]
            continue
        tagged += [("-", _line(line)) for line in base_part[i1:i2]]
        tagged += [("+", _line(line)) for line in head_part[j1:j2]]
    tagged += [(" ", _line(line)) for line in base_lines[len(base_lines) - end :]]
    if len(tagged) > MAX_TEXT_LINES:
        left_out = len(tagged) - MAX_TEXT_LINES
        tagged = [*tagged[:MAX_TEXT_LINES], (" ", f"… {left_out:,} more lines not compared")]
    return tuple(tagged)


def summary(change: CodeChange) -> str:
    """`edited In [2], In [5]; added In [6]; moved In [4] (was In [7]); removed In [8] of
    the baseline`."""
    parts = []
    for kind in ("edited", "added", "moved", "removed"):
        cells = [c for c in change.cells if c.kind == kind]
        if not cells:
            continue
        if kind == "removed":
            numbers = ", ".join(_in(c.baseline_number) for c in cells)
            parts.append(f"removed {numbers} of the baseline")
        elif kind == "moved":
            parts.append(
                "moved "
                + ", ".join(f"{_in(c.number)} (was {_in(c.baseline_number)})" for c in cells)
            )
        else:
            parts.append(f"{kind} " + ", ".join(_in(c.number) for c in cells))
    return "; ".join(parts)


def cell_label(cell: CellChange) -> str:
    """`In [3] edited`, `In [7] removed (the baseline's)`, `In [4] moved (was In [6])`."""
    if cell.kind == "removed":
        return f"{_in(cell.baseline_number)} removed (the baseline's)"
    if cell.kind == "moved":
        return f"{_in(cell.number)} moved (was {_in(cell.baseline_number)})"
    return f"{_in(cell.number)} {cell.kind}"


def _in(number: int | None) -> str:
    return f"In [{number}]" if number is not None else "In [ ]"


# -- reading the notebooks -------------------------------------------------------


def _cells(data: bytes | None) -> Cells | None:
    """The notebook's cells; None when it cannot be read as one."""
    if data is None:
        return None
    try:
        notebook = json.loads(data.decode("utf-8"))
        cells = notebook["cells"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return cells if isinstance(cells, list) else None


def _own_code(cells: Cells) -> Cells:
    """The code cells that are the notebook's own (not papermill's injected one)."""
    return [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code" and _own(c)]


def _own(cell: Mapping[str, Any]) -> bool:
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return not (isinstance(tags, list) and INJECTED in tags)


def _source(cell: Mapping[str, Any]) -> str:
    return _text(cell.get("source", ""))


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _ended(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _line(line: str) -> str:
    return line.rstrip("\r\n")


def _numbers(cells: Cells) -> list[int | None]:
    """Each cell's `In [N]`: its execution count, else the count it would have had (cells
    with source before it, plus one: papermill's injected cell counts, as in tracebacks)."""
    numbers: list[int | None] = []
    counted = 0
    for cell in cells:
        count = cell.get("execution_count")
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            counted = count
            numbers.append(count)
        elif _source(cell).strip():
            counted += 1
            numbers.append(counted)
        else:
            numbers.append(None)
    return numbers


def _output_text(cell: Mapping[str, Any]) -> str:
    """The cell's text outputs as one text: streams, `text/plain` results, error tracebacks."""
    parts = []
    outputs = cell.get("outputs")
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(_text(output.get("text")))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data")
            if isinstance(data, dict) and not any(t in data for t in _IMAGE_TYPES):
                parts.append(_text(data.get("text/plain")))
        elif kind == "error":
            from nbci.execute.text import strip_ansi  # only then: it imports the executor

            parts.append(strip_ansi("\n".join(_text(line) for line in output.get("traceback", []))))
    return "\n".join(part.rstrip("\n") for part in parts if part)


# -- aligning the cells -------------------------------------------------------


def _aligned_cells(base: Cells, head: Cells) -> list[Step]:
    """The cells that are not the same on both sides (`nbci._alignment`), between the ones
    both notebooks share at their start and end, bounded in time (`MAX_APPROXIMATE_PAIRS`,
    `MAX_COMPARED_CHARS`, `MAX_STRICT_PAIRS`)."""
    base_sources = [_for_alignment(_source(c)) for c in base]
    head_sources = [_for_alignment(_source(c)) for c in head]
    start = _shared(base_sources, head_sources)
    end = _shared(base_sources[start:][::-1], head_sources[start:][::-1])
    base_part = base_sources[start : len(base) - end]
    head_part = head_sources[start : len(head) - end]
    equal = len(base_part) * len(head_part) <= MAX_STRICT_PAIRS
    budget = Budget(MAX_APPROXIMATE_PAIRS, MAX_COMPARED_CHARS)
    return [
        (kind, None if b is None else b + start, None if h is None else h + start)
        for kind, b, h in align(base_part, head_part, equal=equal, budget=budget)
    ]


def _shared(base: Sequence[str], head: Sequence[str]) -> int:
    """How many texts (cell sources, lines) at the start are the same on both sides."""
    count = 0
    for ours, theirs in zip(base, head, strict=False):
        if ours != theirs:
            break
        count += 1
    return count


def _for_alignment(source: str) -> str:
    """A long source as its first `MAX_DIFFED_LINES` lines (at most `MAX_ALIGNED_CHARS`
    characters) and a digest of the whole: cells are told apart as well, and compared in
    bounded time."""
    if len(source) <= MAX_ALIGNED_CHARS and source.count("\n") < MAX_DIFFED_LINES:
        return source
    lines = source.splitlines(keepends=True)
    if len(lines) <= MAX_DIFFED_LINES and len(source) <= MAX_ALIGNED_CHARS:
        return source
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    return "".join(lines[:MAX_DIFFED_LINES])[:MAX_ALIGNED_CHARS] + f"\n# {digest}\n"


# -- images ----------------------------------------------------------------------


def _images(
    head: Mapping[str, Any], base: Mapping[str, Any], number: int, write: ImageWriter | None
) -> tuple[CellImage, ...]:
    """The cells' PNG outputs, k-th against k-th, compared pixel by pixel (`nbci.figures`)."""
    if write is None:
        return ()
    from nbci.figures import compare_images

    head_images, base_images = _pngs(head), _pngs(base)
    images = []
    for k in range(min(max(len(head_images), len(base_images)), MAX_CELL_IMAGES)):
        ours = head_images[k] if k < len(head_images) else None
        theirs = base_images[k] if k < len(base_images) else None
        stem = f"{number}-{k + 1}"
        path = write(f"{stem}.png", ours) if ours is not None else None
        base_path = write(f"{stem}-base.png", theirs) if theirs is not None else None
        diff_path, note = None, ""
        if ours is not None and theirs is not None:
            compared = compare_images(ours, theirs)
            note = compared.note if compared.changed else "unchanged"
            if compared.difference is not None:
                diff_path = write(f"{stem}-difference.png", compared.difference)
        images.append(CellImage(path, base_path, diff_path, note))
    return tuple(images)


def _pngs(cell: Mapping[str, Any]) -> list[bytes]:
    found = []
    outputs = cell.get("outputs")
    for output in outputs if isinstance(outputs, list) else []:
        data = output.get("data") if isinstance(output, dict) else None
        encoded = data.get("image/png") if isinstance(data, dict) else None
        if isinstance(encoded, list):
            encoded = "".join(e for e in encoded if isinstance(e, str))
        if not isinstance(encoded, str):
            continue
        try:
            found.append(base64.b64decode(encoded))
        except (binascii.Error, ValueError):
            continue
    return found


def _image_writer(out_dir: Path, job_id: str) -> ImageWriter:
    folder = f"{IMAGE_FOLDER}/{safe_name(job_id)}"  # never outside: safe_name

    def write(name: str, data: bytes) -> str | None:
        relative = f"{folder}/{name}"
        try:
            write_bytes_atomic(out_dir / relative, data)
        except OSError as error:
            logger.warning("could not write %s: %s", relative, error.strerror)
            return None
        return relative

    return write
