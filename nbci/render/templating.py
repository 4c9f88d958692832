"""The Jinja2 environments: package templates, optionally overridden by a user's folder."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

TEMPLATES = Path(__file__).parent / "templates"
MARKDOWN_TEMPLATE = "report.md.j2"
HTML_TEMPLATE = "report.html.j2"


def environment(*, html: bool, templates: Path | None = None) -> jinja2.Environment:
    """A strict environment (undefined names raise); autoescape on for HTML.

    A file in `templates` with a package template's name replaces it, so a
    user can override one part (say `report.html.j2` or `style.css`) and keep
    the rest.
    """
    return _environment(html, templates.resolve() if templates else None)


@lru_cache(maxsize=8)
def _environment(html: bool, templates: Path | None) -> jinja2.Environment:
    import jinja2

    folders = [str(templates)] if templates else []
    folders.append(str(TEMPLATES))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    if not html:
        from nbci.render.escape import escape_cell, escape_html_text, escape_markdown

        env.filters.update(md=escape_markdown, cell=escape_cell, attr=escape_html_text)
    return env
