"""Small helpers the view builders share: untrusted names and values made into short,
one-line labels, and table cells that link to a notebook's section."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from nbci.model import Status
from nbci.render.escape import clean_text, truncate
from nbci.render.view import Cell

NAME_CHARS = 200
PARAM_CHARS = 200


def job_cell(job_id: str, status: Status | None, anchors: Mapping[str, str]) -> Cell:
    return Cell(name(job_id), status=status, anchor=anchors.get(job_id))


def anchors(ids: Iterable[str]) -> dict[str, str]:
    """HTML ids for notebook sections: `nb-<n>` (ids are untrusted, so not used verbatim)."""
    return {job_id: f"nb-{i}" for i, job_id in enumerate(dict.fromkeys(ids), start=1)}


def ordered_union(mappings: Iterable[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for m in mappings for key in m))


def name(text: object) -> str:
    """A short one-line label for an untrusted name; never blank."""
    label = clean_text(truncate(text if isinstance(text, str) else str(text), NAME_CHARS))
    return label if label.strip() else "(blank)"


def names(texts: Iterable[object]) -> tuple[str, ...]:
    return tuple(name(t) for t in texts)


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json_text(value, indent=None)
    return clean_text(truncate(text, PARAM_CHARS))


def parameters_text(parameters: Mapping[str, Any]) -> str:
    return ", ".join(f"{name(k)}={param_value(v)}" for k, v in parameters.items())


def json_text(value: Any, *, indent: int | None = 2) -> str:
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False, default=repr, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def cut(text: str, limit: int) -> tuple[str, int]:
    if len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def omitted_note(omitted: int) -> str:
    return f"{omitted:,} more characters not shown" if omitted else ""
