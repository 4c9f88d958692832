"""The Jinja2 environments: package templates, optionally overridden by a user's folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from nbci.errors import ConfigError, TemplateError

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

TEMPLATES = Path(__file__).parent / "templates"
MARKDOWN_TEMPLATE = "report.md.j2"
HTML_TEMPLATE = "report.html.j2"


class _Options(TypedDict):
    """What Jinja compiles into a template besides its source."""

    autoescape: bool
    trim_blocks: bool
    lstrip_blocks: bool
    keep_trailing_newline: bool


def environment(*, html: bool, templates: Path | None = None) -> jinja2.Environment:
    """A strict environment (undefined names raise); autoescape on for HTML.

    A file in `templates` with a package template's name replaces it, so a
    user can override one part (say `report.html.j2` or `style.css`) and keep
    the rest.
    """
    return _environment(html, templates.resolve() if templates else None)


def check_templates(templates: Path | None, *, where: str | None = None) -> None:
    """Compile the report templates of a user's `templates` folder, before anything runs.

    A missing folder or a template that does not compile is one `ConfigError` line;
    `where` names the configuration file.
    """
    if templates is None:
        return
    if not templates.is_dir():
        prefix = f"{where} " if where else ""
        raise ConfigError(f"{prefix}templates: {templates}: no such folder")
    with template_errors(templates):
        load_templates(templates)


def load_templates(templates: Path | None) -> None:
    """Compile both report templates (or load them from Jinja's bytecode cache) into the
    environments that render them: `check_templates`, or a run getting ready for its end."""
    environment(html=False, templates=templates).get_template(MARKDOWN_TEMPLATE)
    environment(html=True, templates=templates).get_template(HTML_TEMPLATE)


@contextlib.contextmanager
def template_errors(templates: Path | None) -> Iterator[None]:
    """A failure inside a template of `templates` as one `TemplateError` line naming the
    file and line; nbci's own failures pass through."""
    import jinja2

    try:
        yield
    except jinja2.TemplateSyntaxError as error:
        if templates is None or not _is_users(error.filename, templates):
            raise
        raise TemplateError(
            f"{error.filename}:{error.lineno}: {error.message or 'syntax error'}"
        ) from None
    except Exception as error:
        where = _users_frame(error, templates) if templates is not None else None
        if where is None:
            raise
        message = f"{type(error).__name__}: {error}"
        raise TemplateError(f"{where}: {' '.join(message.split())}") from None


def _users_frame(error: BaseException, templates: Path) -> str | None:
    """`file:line` of the innermost traceback frame in a template of `templates`."""
    found = None
    tb = error.__traceback__
    while tb is not None:
        if _is_users(tb.tb_frame.f_code.co_filename, templates):
            found = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _is_users(filename: str | None, templates: Path) -> bool:
    return filename is not None and Path(filename).resolve().is_relative_to(templates.resolve())


@lru_cache(maxsize=8)
def _environment(html: bool, templates: Path | None) -> jinja2.Environment:
    import jinja2

    folders = [str(templates)] if templates else []
    folders.append(str(TEMPLATES))
    options = _Options(
        autoescape=html, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        bytecode_cache=_bytecode_cache(options),
        undefined=jinja2.StrictUndefined,
        **options,
    )
    if not html:
        from nbci.render.escape import escape_cell, escape_html_text, escape_markdown

        env.filters.update(md=escape_markdown, cell=escape_cell, attr=escape_html_text)
    return env


def _bytecode_cache(options: _Options) -> jinja2.BytecodeCache | None:
    """Jinja's cache of compiled templates, in a private temporary folder it checks.

    Compiling the two report templates took 0.14 s, a third of a run whose
    notebooks all come from the cache. Jinja uses an entry only while its
    template's source is unchanged (a user's override included), but keys it
    by the template's name and file alone: the environment's `options` are
    compiled in (autoescape above all), so each set of them gets files of its
    own. A cache that cannot be written is no cache.
    """
    import jinja2

    class QuietCache(jinja2.FileSystemBytecodeCache):
        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    compiled_with = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
    try:
        return QuietCache(pattern=f"__nbci_{compiled_with[:16]}_%s.cache")
    except (OSError, RuntimeError):  # no private temporary folder
        return None
