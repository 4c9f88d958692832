"""The executed notebook as HTML: nbconvert's lab template, sanitized and bounded.

The notebook is untrusted and reviewers open this file. Before nbconvert sees it,
every output keeps only the types the page shows inertly (`SHOWN_TYPES`: no
JavaScript, widget or mermaid output) and the image metadata the template writes
into tags, checked to be numbers and flags; widget state is dropped. The template
then runs with nbconvert's `sanitize_html` switched on, so that every piece of
HTML it takes from the notebook (markdown and raw cells, HTML and markdown
outputs) goes through its `clean_html` filter: here nh3's allow-list
(`nbci.render.html.sanitize_html`) instead of nbconvert's bleach, which cost
most of each page's time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nbci._files import write_text_atomic
from nbci.errors import ResultsError

MAX_HTML_OUTPUT_CHARS = 1_000_000
"""Per output: bigger outputs are trimmed first."""
MAX_HTML_TOTAL_CHARS = 5_000_000
"""All outputs of one notebook together (100 loud cells too)."""
SHOWN_TYPES = frozenset(
    {
        "text/html",
        "text/markdown",
        "image/svg+xml",  # shown as a `data:` <img>: its scripts never run
        "text/latex",
        "image/png",
        "image/jpeg",
        "text/plain",
    }
)
"""Output types kept. nbconvert's lab template writes mermaid source into the page
unescaped, and JavaScript and widgets need scripts; their text/plain stands in."""
_OUTPUT_KEYS = {
    "display_data": {"output_type", "data", "metadata"},
    "execute_result": {"output_type", "data", "metadata", "execution_count"},
    "stream": {"output_type", "name", "text"},
    "error": {"output_type", "ename", "evalue", "traceback"},
}
"""What nbformat defines per output; anything else (e.g. `svg_filename`, which the
template makes an image's URL) is dropped."""
_IMAGE_METADATA = {
    "width": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "height": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "unconfined": lambda v: isinstance(v, bool),
    "needs_background": lambda v: v in ("light", "dark"),
}
"""The output metadata the template reads; it writes width and height into the
<img> tag unquoted, so anything but a number there would add attributes."""
_KEPT_ATTRIBUTES = frozenset({"class", "id"})
"""On any tag of the notebook's HTML: code highlighting and the page's styles use
classes, headings' anchor links use ids (nbconvert's `clean_html` kept both)."""
_IPYTHON_SYNTAX = re.compile(r"[!?]|%[%\w]")
"""Where IPython's lexer can differ from Python's (magics, shell escapes, help)."""
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\salt=)", re.I)
_FOCUSABLE_DIV = re.compile(
    r'<div class="([^"]*(?<![\w-])(?:jp-Cell-inputWrapper|jp-OutputArea-output)(?![\w-])[^"]*)"'
)
NO_ALT = "No description has been provided for this image"
"""nbconvert's alternative text for images without one."""


def render_notebook_html(notebook_path: Path, html_path: Path) -> None:
    """Write nbconvert's HTML (lab template) of an executed notebook, atomically.

    Outputs are made safe (see the module) and huge ones are trimmed first.
    Raises ResultsError when the notebook cannot be read or converted.
    """
    import nbformat

    try:
        notebook = nbformat.read(notebook_path, as_version=4)
        _prepare_for_html(notebook)
        body, _ = _html_exporter().from_notebook_node(notebook)
    except Exception as error:  # nbformat and nbconvert raise many kinds
        raise ResultsError(f"{notebook_path}: cannot render as HTML: {error}") from error
    write_text_atomic(html_path, _accessible(body))


def warm_up_html() -> None:
    """Convert a small notebook in memory, so that the first real page of this process
    costs what every later one does: importing nbconvert, building the exporter and
    compiling its template took 0.26 s of CPU, a page after it 0.01 s."""
    from nbformat import v4

    notebook = v4.new_notebook(
        metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    )
    outputs = [
        v4.new_output("stream", name="stdout", text="1\n"),
        v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1),
    ]
    notebook.cells = [v4.new_markdown_cell("# nbci"), v4.new_code_cell("x = 1", outputs=outputs)]
    _prepare_for_html(notebook)
    _html_exporter().from_notebook_node(notebook)


@lru_cache(maxsize=1)
def _html_exporter() -> Any:
    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter

    from nbci.render.html import sanitize_html

    base: Any = HTMLExporter  # partly typed, its filters and `register_filter` not

    class Exporter(base):  # type: ignore[misc]
        """HTMLExporter without its BeautifulSoup pass over the page (a quarter of the
        time; `_accessible` does what it did) and without IPython's lexer where
        Python's gives the same colours (`_highlighter`)."""

        def from_notebook_node(
            self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any
        ) -> tuple[str, dict[str, Any]]:
            info = nb.metadata.get("language_info", {})
            lexer = info.get("pygments_lexer", info.get("name", None))
            self.register_filter("highlight_code", _highlighter(lexer, self))
            self.register_filter("filter_data_type", _shown_type(self))
            template_exporter: Any = TemplateExporter
            page: tuple[str, dict[str, Any]] = template_exporter.from_notebook_node(
                self, nb, resources, **kw
            )
            return page

    def clean_html(html: object) -> str:
        text = html.decode() if isinstance(html, bytes) else str(html)
        return str(sanitize_html(text, on_every_tag=_KEPT_ATTRIBUTES))

    return Exporter(
        template_name="lab",
        sanitize_html=True,
        filters={"clean_html": clean_html},
        optimistic_validation=True,  # the notebook validated once, not after each preprocessor
    )


def _highlighter(lexer: str | None, parent: Any) -> Any:
    """nbconvert's code highlighter; for `ipython3` code with no IPython syntax, Python's
    lexer (the same tokens), so that a worker need not import IPython for its lexer."""
    from nbconvert.filters.highlight import Highlight2HTML

    base: Any = Highlight2HTML

    class Highlighter(base):  # type: ignore[misc]
        def __call__(self, source: str, language: str | None = None, metadata: Any = None) -> str:
            language = language or self.pygments_lexer
            if (
                language != "ipython3"
                or (metadata and "magics_language" in metadata)
                or self.extra_formatter_options
                or _IPYTHON_SYNTAX.search(source)
            ):
                return str(super().__call__(source, language, metadata))
            if len(source) <= MAX_REMEMBERED_CELL_CHARS:
                return _highlighted_python(source)
            return _highlight_python(source)

    return Highlighter(pygments_lexer=lexer, parent=parent)


MAX_REMEMBERED_CELL_CHARS = 10_000
"""Code cells up to this long are highlighted once per worker: the jobs of a sweep run
the same notebook, whose cells differ in their parameters only."""


@lru_cache(maxsize=256)
def _highlighted_python(source: str) -> str:
    return _highlight_python(source)


def _highlight_python(source: str) -> str:
    from pygments import highlight

    return str(highlight(source or " ", *_python_highlighting()))


@lru_cache(maxsize=1)
def _python_highlighting() -> tuple[Any, Any]:
    """Python's lexer and the formatter nbconvert makes for each cell (its style sheet is
    built each time), made once: both keep no state between cells."""
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return PythonLexer(), HtmlFormatter(cssclass=" highlight hl-ipython3")


def _shown_type(parent: Any) -> Any:
    """The filter that picks the type an output is shown as, by the exporter's priority
    (nbconvert's own also looks for widget state, which is gone)."""
    from nbconvert.utils.base import NbConvertBase

    priority = NbConvertBase(parent=parent).display_data_priority
    return lambda data: [kind for kind in priority if kind in data][:1]


def _accessible(page: str) -> str:
    """What nbconvert's HTMLExporter adds last: images' alternative text, and input and
    output areas reachable with the keyboard."""
    page = _IMG_WITHOUT_ALT.sub(f'<img alt="{NO_ALT}"', page)
    return _FOCUSABLE_DIV.sub(r'<div class="\1" tabindex="0"', page)


def _prepare_for_html(notebook: Any) -> None:
    """Keep what the page shows safely (see the module); trim huge outputs so that
    conversion stays fast."""
    notebook.metadata.pop("widgets", None)
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
    for key in set(output) - _OUTPUT_KEYS.get(output.get("output_type"), set(output)):
        del output[key]
    if isinstance(output.get("text"), str):
        output["text"] = _trim_note(output["text"], budget)
    if "metadata" in output:
        output["metadata"] = _image_metadata(output["metadata"])
    data = output.get("data")
    if not isinstance(data, dict):
        return True
    for mime in list(data):
        value = data[mime]
        if mime not in SHOWN_TYPES:
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


def _image_metadata(metadata: Any) -> dict[str, Any]:
    """The metadata the template uses, per image type and at the top, checked
    (`_IMAGE_METADATA`)."""
    if not isinstance(metadata, dict):
        return {}

    def checked(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k in _IMAGE_METADATA and _IMAGE_METADATA[k](v)}

    kept: dict[str, Any] = checked(metadata)
    for mime in ("image/png", "image/jpeg"):
        if isinstance(metadata.get(mime), dict):
            kept[mime] = checked(metadata[mime])
    return kept


def _trim_note(text: str, budget: _Budget) -> str:
    limit = max(min(MAX_HTML_OUTPUT_CHARS, budget.left), 0)
    budget.left -= min(len(text), limit)
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} characters trimmed by nbci]"
