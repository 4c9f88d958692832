"""`report.html`: one self-contained file a reviewer can open offline.

CSS is inlined, figures are inlined as `data:` URIs (read from the output
directory and the baseline directory, checked to be images inside them), and
a Content-Security-Policy forbids every script and every request that is not
a `data:` image. Notebook HTML goes through `nh3`'s allow-list: no script, no
event handler, no `javascript:` link, and images only as `data:` URIs.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from nbci._files import read_inside
from nbci.formats import MAX_FIGURE_BYTES, image_type
from nbci.render.templating import HTML_TEMPLATE, environment, template_errors
from nbci.render.view import FigureView, ReportView
from nbci.vocabulary import HTML_MARK

if TYPE_CHECKING:  # pragma: no cover
    import jinja2
    from markupsafe import Markup

logger = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*$", re.I)
_IMG_WITHOUT_SRC = re.compile(r"<img\b(?![^>]*\ssrc=)[^>]*>", re.I)
_SAFE_HREF = re.compile(r"^(https?:|mailto:|#|[^:]*$)", re.I)


def html_chunks(
    view: ReportView,
    *,
    out_dir: Path | None = None,
    baseline_dir: Path | None = None,
    templates: Path | None = None,
) -> Iterator[str]:
    """The report as one HTML document, in pieces as the template makes them; figures are
    read from `out_dir` / `baseline_dir`. Written as they come (`write_chunks_atomic`), a
    report of 200 jobs' inlined figures is never held whole."""
    with template_errors(templates):
        env = environment(html=True, templates=templates)
        template = env.get_template(HTML_TEMPLATE)

    def figure_src(figure: FigureView) -> str | None:
        return image_data_uri(out_dir, figure.path)

    def base_src(figure: FigureView) -> str | None:
        return image_data_uri(baseline_dir, figure.path) if figure.in_baseline else None

    with template_errors(templates):
        yield from template.generate(
            view=view,
            csp=CSP,
            css=_stylesheet(env),
            figure_src=figure_src,
            base_src=base_src,
            file_src=lambda path: image_data_uri(out_dir, path) if path else None,
            base_file_src=lambda path: image_data_uri(baseline_dir, path) if path else None,
            sanitize=sanitize_html,
            href=relative_href,
            status_icon=lambda status: HTML_MARK["pass" if status == "ok" else "fail"],
            mark=lambda kind: HTML_MARK.get(kind, HTML_MARK["info"]),
        )


def _stylesheet(env: jinja2.Environment) -> Markup:
    """`style.css` as is (not a template: CSS braces are not Jinja's business)."""
    from markupsafe import Markup

    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, "style.css")
    return Markup(source.replace("</", "<\\/"))


def image_data_uri(folder: Path | None, relative: str) -> str | None:
    """A `data:` URI for an image file inside `folder`, or None (missing, outside, not an image)."""
    if folder is None:
        return None
    data = read_inside(folder, relative, MAX_FIGURE_BYTES)
    if isinstance(data, str):
        log = logger.info if data == "missing" else logger.warning
        log("figure %s in %s not inlined: %s", relative, folder, data)
        return None
    mime = image_type(data)
    if mime is None:
        logger.warning("figure %s is not a PNG, JPEG, GIF or SVG image; not inlined", relative)
        return None
    # An SVG in <img> is rendered as an image: its scripts never run.
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def sanitize_html(untrusted: str, *, on_every_tag: frozenset[str] = frozenset()) -> Markup:
    """Notebook HTML through nh3's allow-list, safe to place in the report as is.

    An image whose source is not a `data:` image loses its `src` in the allow-list
    pass and is then dropped whole, so the page shows no broken images. nh3
    escapes `<` and `>` inside attribute values and text, so in its output an
    `<img …>` tag can be matched exactly; a second nh3 pass, where one was dropped,
    keeps the guarantee.
    `on_every_tag` adds attributes allowed on any tag (the notebook page keeps
    `class` and `id`, which its styles and anchor links use).
    """
    import nh3
    from markupsafe import Markup

    attributes = nh3.ALLOWED_ATTRIBUTES
    if on_every_tag:
        attributes = {**attributes, "*": {*attributes.get("*", ()), *on_every_tag}}

    def clean(html: str) -> str:
        return nh3.clean(
            html,
            attributes=attributes,
            url_schemes={"http", "https", "mailto", "data"},
            attribute_filter=_filter_attribute,
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )

    cleaned = clean(untrusted)
    without = _IMG_WITHOUT_SRC.sub("", cleaned)
    return Markup(clean(without) if without != cleaned else cleaned)


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Images only from `data:` (no request leaves the file); links never to `data:`."""
    if attribute == "src":
        return value if _DATA_IMAGE.match(value.strip()) else None
    if attribute in ("href", "cite"):
        return value if _SAFE_HREF.match(value.strip()) else None
    return value


def relative_href(path: str | None) -> str | None:
    """A relative link to a file of the output directory (None for nothing or an odd path)."""
    if not path or path.startswith(("/", "\\")) or ".." in path.split("/") or ":" in path:
        return None
    return quote(path)
