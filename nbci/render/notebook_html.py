"""The executed notebook as HTML: nbconvert's lab template, sanitized and bounded."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nbci._files import write_text_atomic
from nbci.collect import SCRAP_PREFIX
from nbci.errors import ResultsError

MAX_HTML_OUTPUT_CHARS = 1_000_000
"""Per output: bigger outputs are trimmed first."""
MAX_HTML_TOTAL_CHARS = 5_000_000
"""All outputs of one notebook together (100 loud cells too)."""


def render_notebook_html(notebook_path: Path, html_path: Path) -> None:
    """Write nbconvert's HTML (lab template) of an executed notebook, atomically.

    Outputs are sanitized (nbconvert's `sanitize_html`: the notebook is
    untrusted and reviewers open this file) and huge ones are trimmed first.
    Raises ResultsError when the notebook cannot be read or converted.
    """
    import nbformat

    try:
        notebook = nbformat.read(notebook_path, as_version=4)
        _prepare_for_html(notebook)
        body, _ = _html_exporter().from_notebook_node(notebook)
    except Exception as error:  # nbformat and nbconvert raise many kinds
        raise ResultsError(f"{notebook_path}: cannot render as HTML: {error}") from error
    write_text_atomic(html_path, body)


@lru_cache(maxsize=1)
def _html_exporter() -> Any:
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", sanitize_html=True)


def _prepare_for_html(notebook: Any) -> None:
    """Drop scrapbook's invisible payload outputs; trim huge outputs so conversion stays fast."""
    budget = _Budget(MAX_HTML_TOTAL_CHARS)
    for cell in notebook.get("cells", []):
        if "outputs" in cell:
            cell["outputs"] = [out for out in cell["outputs"] if _prepare_output(out, budget)]


@dataclass
class _Budget:
    """Characters of output the notebook's HTML may still take."""

    left: int


def _prepare_output(output: Any, budget: _Budget) -> bool:
    """Trim one output in place; False when nothing visible is left of it."""
    if isinstance(output.get("text"), str):
        output["text"] = _trim_note(output["text"], budget)
    data = output.get("data")
    if not isinstance(data, dict):
        return True
    for mime in list(data):
        value = data[mime]
        if mime.startswith(SCRAP_PREFIX):
            del data[mime]
        elif isinstance(value, str) and mime.startswith("text/"):
            data[mime] = _trim_note(value, budget)
        elif isinstance(value, str):  # an image: whole or not at all
            fits = len(value) <= min(MAX_HTML_OUTPUT_CHARS, budget.left)
            budget.left -= len(value) if fits else 0
            data[mime] = value if fits else None
    if any(value is None for value in data.values()):
        output["data"] = {"text/plain": "[output too large, removed by nbci]"}
    return bool(output["data"])


def _trim_note(text: str, budget: _Budget) -> str:
    limit = max(min(MAX_HTML_OUTPUT_CHARS, budget.left), 0)
    budget.left -= min(len(text), limit)
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} characters trimmed by nbci]"
