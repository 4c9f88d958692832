"""Where scraps sit in an executed notebook's outputs: scrapbook's format and papermill's.

- scrapbook: data outputs `application/scrapbook.scrap.<encoder>+json` holding
  `{"name", "data", "encoder", "version"}`, and display outputs marked by
  `metadata.scrapbook = {"name", "display": true}`;
- papermill < 1.0 (read by scrapbook 0.5 too): `pm.record(name, value)` wrote
  `application/papermill.record+json` = `{name: value}` (scrapbook reads the
  first pair), and `pm.display(name, obj)` marked a display with
  `metadata.papermill.name` (that marker wins over scrapbook's);
- MyST-NB's `glue(name, value, display=...)`: a display output whose
  `metadata.scrapbook = {"name", "mime_prefix"}` and whose mime types carry
  that prefix (`application/papermill.record/text/plain`, or none when it is
  displayed): read as a display of the value (scrapbook 0.5 fails on these).

For each name the last data output wins and the last display is kept beside
it. Nothing here raises on odd content; what is skipped is said in `Notes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbci.formats import SCRAP_PREFIX

MAX_NOTEBOOK_BYTES = 512 * 1024 * 1024
MAX_NOTES = 50

RECORD_PREFIX = "application/papermill.record"


class Notes:
    """What a reader should know was trimmed or skipped; bounded itself."""

    def __init__(self) -> None:
        self._notes: list[str] = []
        self._dropped = 0

    def add(self, note: str) -> None:
        if len(self._notes) < MAX_NOTES:
            self._notes.append(note)
        else:
            self._dropped += 1

    def result(self) -> tuple[str, ...]:
        more = (f"... and {self._dropped} more notes",) if self._dropped else ()
        return (*self._notes, *more)


@dataclass
class Found:
    """What the outputs held for one scrap name: the last data scrap and the last display."""

    encoder: str | None = None
    data: Any = None
    display: dict[str, Any] | None = None

    @property
    def has_data(self) -> bool:
        return self.encoder is not None


def read_cells(path: Path, notes: Notes) -> list[Any]:
    try:
        size = path.stat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            notes.add(f"notebook is {size} bytes, over {MAX_NOTEBOOK_BYTES}: nothing collected")
            return []
        with path.open("rb") as f:
            notebook = json.load(f)
    except (OSError, ValueError, RecursionError) as error:
        notes.add(f"could not read the executed notebook: {error}")
        return []
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        notes.add("executed notebook has no list of cells (not nbformat 4?): nothing collected")
        return []
    return cells


def find_scraps(cells: list[Any], notes: Notes) -> dict[str, Found]:
    found: dict[str, Found] = {}
    for cell in cells:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for output in outputs if isinstance(outputs, list) else ():
            if isinstance(output, dict) and isinstance(output.get("data"), dict):
                _read_output(output, found, notes)
    return found


def _read_output(output: dict[str, Any], found: dict[str, Found], notes: Notes) -> None:
    bundle: dict[str, Any] = output["data"]
    myst = _myst_glue(output.get("metadata"), bundle)
    if myst is not None:
        glued, display = myst
        found.setdefault(glued, Found()).display = display
        return
    for mime, payload in bundle.items():
        if isinstance(mime, str) and mime.startswith(RECORD_PREFIX):
            _read_record(mime, payload, found, notes)
        if not (isinstance(mime, str) and mime.startswith(SCRAP_PREFIX)):
            continue
        if not (
            isinstance(payload, dict)
            and isinstance(payload.get("name"), str)
            and isinstance(payload.get("encoder"), str)
            and "data" in payload
        ):
            notes.add(f"skipped a malformed scrapbook payload ({shown(mime)})")
            continue
        entry = found.setdefault(payload["name"], Found())
        entry.encoder, entry.data = payload["encoder"], payload["data"]
    name = _display_name(output.get("metadata"))
    if name is not None:
        display = {k: v for k, v in bundle.items() if not is_payload(str(k))}
        found.setdefault(name, Found()).display = display


def _myst_glue(metadata: Any, bundle: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A MyST-NB glue output's name and its display bundle, the prefix taken off its mime
    types; None for any other output."""
    marker = metadata.get("scrapbook") if isinstance(metadata, dict) else None
    if not isinstance(marker, dict) or not isinstance(marker.get("mime_prefix"), str):
        return None
    name, prefix = marker.get("name"), marker["mime_prefix"]
    if not (isinstance(name, str) and name):
        return None
    display = {
        str(mime)[len(prefix) :]: value
        for mime, value in bundle.items()
        if str(mime).startswith(prefix) and len(str(mime)) > len(prefix)
    }
    return name, display


def _display_name(metadata: Any) -> str | None:
    """The scrap name of a display output; papermill < 1.0's marker first, as scrapbook does."""
    if not isinstance(metadata, dict):
        return None
    legacy, marker = metadata.get("papermill"), metadata.get("scrapbook")
    if isinstance(legacy, dict):
        name = legacy.get("name")
    elif isinstance(marker, dict) and marker.get("display"):
        name = marker.get("name")
    else:
        return None
    return name if isinstance(name, str) and name else None


def _read_record(mime: str, payload: Any, found: dict[str, Found], notes: Notes) -> None:
    """A papermill < 1.0 `pm.record` output: its first `{name: value}` pair, like scrapbook."""
    encoder = mime[len(RECORD_PREFIX) :].lstrip("+")
    if not isinstance(payload, dict) or not payload or encoder != "json":
        notes.add(f"skipped a malformed papermill record output ({shown(mime)})")
        return
    (name, data), *ignored = payload.items()
    if ignored:
        names = ", ".join(shown(str(key)) for key, _ in ignored[:5])
        notes.add(f"skipped {names}: a record output holds one value (scrapbook reads the first)")
    entry = found.setdefault(str(name), Found())
    entry.encoder, entry.data = "json", data


def is_payload(mime: str) -> bool:
    """A scrap's stored value, not something a reader sees."""
    return mime.startswith((SCRAP_PREFIX, RECORD_PREFIX))


def shown(name: str) -> str:
    """An untrusted name for a note: quoted, short."""
    return repr(name if len(name) <= 60 else name[:57] + "...")
