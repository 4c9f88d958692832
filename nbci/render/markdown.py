"""`report.md`: the PR-comment body, bounded in size however big the run.

The template (`templates/report.md.j2`) lays the view out; the helpers here
escape every value and draw tables, figures and links. `render_markdown`
tries ever shorter plans until the text fits `max_chars`:

1. full: every section, tracebacks and texts shortened to a readable size;
2. collapsed: each notebook's section folded into `<details>`, less of each;
3. brief: no per-notebook sections or tracebacks, lists cut to what fits;
4. a last-resort summary that always fits.

Whatever a plan leaves out is said in a note at the top.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from nbci.render.cell_diff import code_changes_markdown
from nbci.render.charts import MAX_COMMENT_CHARTS
from nbci.render.escape import (
    escape_cell,
    escape_html_text,
    escape_markdown,
    fenced,
    truncate,
    truncate_middle,
)
from nbci.render.templating import MARKDOWN_TEMPLATE, environment, template_errors
from nbci.render.trends import COMMENT_TRENDS
from nbci.render.view import Cell, FigureView, NotebookView, ReportView, ScrapView, Table
from nbci.render.visuals import FigureDiffView
from nbci.vocabulary import FAIL_ICON, NOTICE_ICON, PASS_ICON, STATUS_ICON, UNKNOWN_ICON

MAX_CHARS = 65_000
"""GitHub's comment limit is 65,536; the rest is headroom for publish's marker and links."""
FIGURE_WIDTH = 360


Sections = Literal["full", "collapsed", "omitted"]


@dataclass(frozen=True)
class Plan:
    """How much of the view one rendering shows."""

    sections: Sections
    traceback_chars: int
    """0: no tracebacks."""
    text_chars: int
    table_rows: int
    summary_chars: int
    limit: int | None = None
    """At most this many notices, failures, metric rows and gate rows (None: all)."""
    figures: bool = True
    jobs: bool = True
    """Show the table of every notebook in the run details."""
    section_limit: int | None = None
    """At most this many notebook sections (None: all)."""


PLANS = (
    Plan("full", traceback_chars=5_000, text_chars=3_000, table_rows=20, summary_chars=1_000),
    Plan("collapsed", traceback_chars=1_500, text_chars=800, table_rows=8, summary_chars=500),
    Plan("omitted", traceback_chars=0, text_chars=0, table_rows=0, summary_chars=300),
)


@dataclass(frozen=True)
class Links:
    """Where figures and files point; see `render_markdown`."""

    images: bool = True
    image_url: Callable[[str], str] | None = None
    base_figures: Mapping[str, str] | None = None
    link_url: Callable[[str], str | None] | None = None
    figures_note: str | None = None
    report_url: str | None = None


def render_markdown(
    view: ReportView,
    *,
    links: Links | None = None,
    max_chars: int = MAX_CHARS,
    templates: Path | None = None,
) -> str:
    """The report as GitHub-flavoured markdown of at most `max_chars` characters."""
    links = links or Links()
    with template_errors(templates):
        template = environment(html=False, templates=templates).get_template(MARKDOWN_TEMPLATE)

    tables: dict[tuple[int, int | None], str] = {}  # the same in every plan tried

    def render(plan: Plan) -> str:
        helpers = _Helpers(view, plan, links, tables)
        with template_errors(templates):
            return template.render(view=view, plan=plan, **helpers.context())

    for plan in PLANS[:2]:
        text = render(plan)
        if len(text) <= max_chars:
            return text
    sections = sum(_has_content(nb, view) for nb in view.notebooks)
    fits = _largest_fitting(
        render, lambda n: replace(PLANS[1], section_limit=n), sections, max_chars
    )
    if fits is not None:
        return fits
    brief = PLANS[-1]
    text = render(brief)
    if len(text) <= max_chars:
        return text
    longest = max(_list_lengths(view), default=0)
    fits = _largest_fitting(
        render, lambda n: replace(brief, limit=n, figures=False, jobs=False), longest, max_chars
    )
    return fits if fits is not None else _last_resort(view, max_chars)


def _largest_fitting(
    render: Callable[[Plan], str], plan_for: Callable[[int], Plan], most: int, max_chars: int
) -> str | None:
    """The rendering with the largest n in 0..most that fits (binary search); None if none fits."""
    low, high, best = 0, most, None
    while low <= high:
        middle = (low + high) // 2
        text = render(plan_for(middle))
        if len(text) <= max_chars:
            best, low = text, middle + 1
        else:
            high = middle - 1
    return best


def _list_lengths(view: ReportView) -> list[int]:
    lengths = [len(view.notices), len(view.failures)]
    lengths.append(view.metric_rows)
    if view.gates is not None:
        lengths.append(view.gates.size)
    return lengths


def _last_resort(view: ReportView, max_chars: int) -> str:
    """A few lines that fit any sane limit; cut hard only below that."""
    icon = PASS_ICON if view.verdict.passed else FAIL_ICON
    lines = [
        f"### {icon} {escape_markdown(truncate(view.title, 100))}: "
        f"{escape_markdown(view.verdict.headline)}",
        "",
        escape_markdown(" · ".join(view.verdict.facts)),
        "",
        "> [!NOTE]",
        "> This run is too large to summarise here; everything is in report.html"
        " in the output directory (the CI artifact).",
        "",
    ]
    text = "\n".join(lines)
    return text if len(text) <= max_chars else truncate(text, max_chars)


class _Helpers:
    """Escaping and drawing functions the markdown template calls."""

    def __init__(
        self, view: ReportView, plan: Plan, links: Links, tables: dict[tuple[int, int | None], str]
    ) -> None:
        self.view = view
        self.plan = plan
        self.links = links
        # tables drawn, by the table's id and row limit: a long report is rendered up to a
        # dozen times to find what fits, and a 200-job sweep's table was drawn each time
        self._tables = tables

    def context(self) -> dict[str, object]:
        plan = self.plan
        return {
            "verdict_icon": PASS_ICON if self.view.verdict.passed else FAIL_ICON,
            "status_icon": lambda status: STATUS_ICON.get(status, UNKNOWN_ICON),
            "notice_icon": lambda kind: NOTICE_ICON.get(kind, ""),
            "limited": lambda items: list(items)[: plan.limit],
            "table": self.table,
            "scrap_table": self.scrap_table,
            "summary": lambda text: escape_markdown(truncate(text, plan.summary_chars)),
            "traceback": self.traceback,
            "scrap_text": self.scrap_text,
            "link": self.link,
            "figures": self.figures,
            "charts": self.charts,
            "compared_figures": self.compared_figures,
            "trends": self.trends,
            "notebooks": self.sections(),
            "omissions": self.omissions(),
            "figures_note": self.links.figures_note,
            "full_report": self.full_report(),
            "show_figures": plan.figures and self.links.images,
            "code_changes": self.code_changes(),
        }

    def code_changes(self) -> str:
        """The changed code cells of every notebook (`nbci.render.cell_diff`)."""
        changed = [(nb.id, nb.visuals.code) for nb in self.view.notebooks if nb.visuals.code]
        return code_changes_markdown(changed, sections=self.plan.sections, limit=self.plan.limit)

    def sections(self) -> list[NotebookView]:
        with_content = [nb for nb in self.view.notebooks if _has_content(nb, self.view)]
        return with_content[: self.plan.section_limit]

    # -- tables --------------------------------------------------------------

    def table(self, table: Table, *, limit: int | None = None) -> str:
        """A GFM table (plus its folded rows in `<details>`), ending with a blank line."""
        limit = self.plan.limit if limit is None else limit
        key = (id(table), limit)  # the view, and so each table, lives through every render
        if key not in self._tables:
            self._tables[key] = self._table(table, limit)
        return self._tables[key]

    def _table(self, table: Table, limit: int | None) -> str:
        rows = list(table.rows)[:limit]
        folded = list(table.folded)[: None if limit is None else max(limit - len(rows), 0)]
        parts = []
        if rows:
            parts.append(gfm_table(table, rows))
        if folded:
            label = escape_html_text(table.folded_label or f"{len(folded)} more rows")
            parts.append(
                f"<details><summary>{label}</summary>\n\n{gfm_table(table, folded)}\n</details>\n"
            )
        notes = [table.note] if table.note else []
        left_out = table.size - len(rows) - len(folded)
        if left_out:
            notes.append(f"{left_out:,} of {table.size:,} rows left out here")
        if notes:
            parts.append(f"<sub>{escape_markdown('; '.join(notes))}</sub>\n")
        return "\n".join(parts)

    def scrap_table(self, table: Table) -> str:
        return self.table(table, limit=self.plan.table_rows)

    # -- texts ---------------------------------------------------------------

    def traceback(self, nb: NotebookView) -> str:
        assert nb.error is not None
        text = nb.error.traceback
        limit = self.plan.traceback_chars
        if len(text) > limit:
            cut = len(text) - limit
            text = f"… {cut:,} characters above left out …\n" + text[-limit:]
        return fenced(text)

    def scrap_text(self, scrap: ScrapView) -> str:
        """A short one-line text after its name; anything longer as a code block below it."""
        name = f"**{escape_markdown(scrap.name)}**"
        shown, _ = truncate_middle(scrap.text, self.plan.text_chars)
        if scrap.kind == "text" and "\n" not in shown.strip() and len(shown) <= 300:
            return f"{name}: {escape_markdown(shown)}"
        return f"{name}\n\n{fenced(shown, 'json' if scrap.kind == 'json' else '')}"

    # -- links and figures ----------------------------------------------------

    def link(self, path: str | None, text: str) -> str:
        """A link to a file of the output directory, or the path as text when it has no URL."""
        if not path:
            return ""
        url = self.links.link_url(path) if self.links.link_url else quote(path)
        url = _safe_url(url) if url else None
        if url is None:
            return f"{escape_markdown(text)} ({escape_markdown(path)})"
        return f"[{escape_markdown(text)}](<{url}>)"

    def figures(self, nb: NotebookView) -> str:
        """Figures as an HTML table: baseline beside this run where both exist."""
        pairs = [f for f in nb.figures if self._base_url(f)]
        singles = [f for f in nb.figures if not self._base_url(f)]
        parts = []
        if pairs:
            label = escape_html_text(self.view.baseline_label or "baseline")
            rows = [f"<tr><th>Figure</th><th>Baseline ({label})</th><th>This run</th></tr>"]
            rows += [
                f"<tr><td>{escape_html_text(f.name)}</td>"
                f"<td>{self._img(self._base_url(f), f.name)}</td>"
                f"<td>{self._img(self._head_url(f), f.name)}</td></tr>"
                for f in pairs
            ]
            parts.append("<table>\n" + "\n".join(rows) + "\n</table>\n")
        if singles:
            cells = [
                f"<td><b>{escape_html_text(f.name)}</b><br>"
                f"{self._img(self._head_url(f), f.name)}</td>"
                for f in singles
            ]
            rows = ["<tr>" + "".join(cells[i : i + 2]) + "</tr>" for i in range(0, len(cells), 2)]
            parts.append("<table>\n" + "\n".join(rows) + "\n</table>\n")
        return "\n".join(parts)

    def charts(self, nb: NotebookView) -> str:
        """Its charts among the run's first `MAX_COMMENT_CHARTS`, two a row; then how many
        more are in report.html."""
        charts = nb.visuals.charts
        shown = [c for c in charts if c.rank < MAX_COMMENT_CHARTS] if self.plan.figures else []
        parts = []
        if shown and self.links.images:
            cells = [f"<td>{self._img(self._url(c.path), c.title)}</td>" for c in shown]
            rows = ["<tr>" + "".join(cells[i : i + 2]) + "</tr>" for i in range(0, len(cells), 2)]
            parts.append("<table>\n" + "\n".join(rows) + "\n</table>\n")
        elif shown:
            parts.append("Charts: " + ", ".join(escape_markdown(c.title) for c in shown) + "\n")
        if len(charts) > len(shown):
            more = len(charts) - len(shown)
            parts.append(
                f"<sub>{more:,} more chart{'' if more == 1 else 's'} in report.html</sub>\n"
            )
        return "\n".join(parts)

    def compared_figures(self, nb: NotebookView) -> str:
        """Figures against the baseline's: changed as baseline | this run | difference, then
        added, removed, and the unchanged ones by name, collapsed."""
        visuals = nb.visuals
        shown = self.plan.figures and self.links.images
        parts = []
        if visuals.changed and shown:
            label = escape_html_text(self.view.baseline_label or "baseline")
            head = f"<tr><th>Changed</th><th>Baseline ({label})</th><th>This run</th>"
            rows = [head + "<th>Difference</th></tr>"]
            rows += [self._changed_row(f) for f in visuals.changed]
            parts.append("<table>\n" + "\n".join(rows) + "\n</table>\n")
        elif visuals.changed:
            parts.append(self._names("Changed figures", visuals.changed))
        if visuals.added and shown:
            cells = [
                f"<td><b>{escape_html_text(f.name)}</b> (added)<br>"
                f"{self._img(self._url(f.path), f.name)}</td>"
                for f in visuals.added
            ]
            rows = ["<tr>" + "".join(cells[i : i + 2]) + "</tr>" for i in range(0, len(cells), 2)]
            parts.append("<table>\n" + "\n".join(rows) + "\n</table>\n")
        elif visuals.added:
            parts.append(self._names("Added figures", visuals.added))
        if visuals.removed:
            parts.append(self._names("Removed figures", visuals.removed))
        if visuals.unchanged:
            names = ", ".join(escape_markdown(n) for n in visuals.unchanged)
            summary = f"{len(visuals.unchanged)} unchanged figure" + (
                "s" if len(visuals.unchanged) != 1 else ""
            )
            parts.append(f"<details><summary>{summary}</summary>\n\n{names}\n</details>\n")
        return "\n".join(parts)

    def _changed_row(self, figure: FigureDiffView) -> str:
        note = f"<br><sub>{escape_html_text(figure.note)}</sub>" if figure.note else ""
        base = self.links.base_figures or {}
        base_url = base.get(figure.baseline_path or "")
        difference = (
            self._img(self._url(figure.diff_path), f"{figure.name}: difference")
            if figure.diff_path
            else "<i>(no difference image)</i>"
        )
        return (
            f"<tr><td>{escape_html_text(figure.name)}{note}</td>"
            f"<td>{self._img(_safe_url(base_url) if base_url else None, figure.name)}</td>"
            f"<td>{self._img(self._url(figure.path), figure.name)}</td>"
            f"<td>{difference}</td></tr>"
        )

    def _names(self, label: str, figures: Sequence[FigureDiffView]) -> str:
        return f"{label}: " + ", ".join(escape_markdown(f.name) for f in figures) + "\n"

    def _url(self, path: str | None) -> str | None:
        """The URL of an image of the output directory (`figures/…`, `charts/…`, `diffs/…`)."""
        if not path:
            return None
        url = self.links.image_url(path) if self.links.image_url else quote(path)
        return _safe_url(url)

    def trends(self) -> str:
        """At most `COMMENT_TRENDS` trend charts, two a row; their names when not shown."""
        shown = self.view.trends[:COMMENT_TRENDS] if self.plan.figures else ()
        more = len(self.view.trends) - len(shown)
        parts = []
        if shown and self.links.images:
            cells = [f"<td>{self._img(self._head_url(f), f.name)}</td>" for f in shown]
            rows = ["<tr>" + "".join(cells[i : i + 2]) + "</tr>" for i in range(0, len(cells), 2)]
            parts.append("<table>\n" + "\n".join(rows) + "\n</table>\n")
        elif shown:
            parts.append(
                "Trend charts: " + ", ".join(escape_markdown(f.name) for f in shown) + "\n"
            )
        if more:
            parts.append(f"<sub>{more:,} more trend charts in report.html</sub>\n")
        return "\n".join(parts)

    def _head_url(self, figure: FigureView) -> str | None:
        url = self.links.image_url(figure.path) if self.links.image_url else quote(figure.path)
        return _safe_url(url)

    def _base_url(self, figure: FigureView) -> str | None:
        if not figure.in_baseline or not self.links.base_figures:
            return None
        url = self.links.base_figures.get(figure.path)
        return _safe_url(url) if url else None

    @staticmethod
    def _img(url: str | None, name: str) -> str:
        if url is None:
            return "<i>(image not available)</i>"
        alt = escape_html_text(name)
        return f'<img src="{html.escape(url)}" alt="{alt}" width="{FIGURE_WIDTH}">'

    def full_report(self) -> str:
        url = _safe_url(self.links.report_url)
        if url:
            return f"Everything is in the [full report](<{url}>)."
        return "Everything is in report.html in the output directory (the CI artifact)."

    # -- what was left out ----------------------------------------------------

    def omissions(self) -> list[str]:
        """Sentences saying what this plan does not show (empty for a complete report)."""
        view, plan = self.view, self.plan
        notes = []
        failures = view.failures
        tracebacks = [nb.error.traceback for nb in failures if nb.error and nb.error.traceback]
        if tracebacks and plan.traceback_chars == 0:
            notes.append("tracebacks are left out")
        elif any(len(t) > plan.traceback_chars for t in tracebacks):
            notes.append(f"tracebacks are cut to their last {plan.traceback_chars:,} characters")
        with_content = [nb for nb in view.notebooks if _has_content(nb, view)]
        shown = 0 if plan.sections == "omitted" else len(self.sections())
        if shown < len(with_content):
            which = f"{len(with_content) - shown:,} of {len(with_content):,}" if shown else "all"
            notes.append(f"the figures, tables and texts of {which} notebooks are left out")
        elif _has_long_scraps(with_content, plan):
            notes.append("long texts and tables are shortened")
        if plan.limit is not None:
            notes += _list_omissions(view, plan.limit)
        if not plan.jobs:
            notes.append("the table of all notebooks is left out")
        if plan.sections == "omitted" and any(nb.visuals.code for nb in view.notebooks):
            notes.append("the diffs of changed code cells are left out")
        if not self.links.images and any(nb.figures for nb in view.notebooks):
            notes.append("figures are named, not shown")
        return notes


def _list_omissions(view: ReportView, limit: int) -> list[str]:
    notes = []
    gates = view.gates.size if view.gates else 0
    counts = (
        (len(view.notices), min(len(view.notices), limit), "notices"),
        (len(view.failures), min(len(view.failures), limit), "failing notebooks"),
        (view.metric_rows, sum(min(t.size, limit) for t in view.metric_tables), "metric rows"),
        (gates, min(gates, limit), "gate results"),
    )
    for total, shown, what in counts:
        if shown < total:
            notes.append(f"{total - shown:,} of {total:,} {what} are not listed")
    return notes


def _has_long_scraps(notebooks: Sequence[NotebookView], plan: Plan) -> bool:
    for nb in notebooks:
        for scrap in nb.scraps:
            if len(scrap.text) > plan.text_chars:
                return True
            if scrap.table and scrap.table.size > plan.table_rows:
                return True
    return False


def _has_content(nb: NotebookView, view: ReportView) -> bool:
    """Whether a notebook needs a section of its own in the markdown report."""
    own_metrics = nb.metrics is not None and not nb.metrics_elsewhere
    visuals = nb.visuals.charts or nb.visuals.compared
    return bool(
        own_metrics or nb.figures or visuals or nb.scraps or nb.unchanged_tables or nb.notes
    )


def gfm_table(table: Table, rows: Sequence[Sequence[object]]) -> str:
    """`rows` (of `table`'s, or its folded ones) as a GFM table under `table`'s header."""
    header = "| " + " | ".join(escape_cell(c) or " " for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if a == "right" else ":---" for a in table.align) + "|"
    body = ["| " + " | ".join(_cell_text(c) for c in row) + " |" for row in rows]
    return "\n".join([header, rule, *body]) + "\n"


def _cell_text(cell: object) -> str:
    if not isinstance(cell, Cell):
        return escape_cell(cell)
    text = escape_cell(cell.text)
    if cell.status is not None:
        text = f"{STATUS_ICON.get(cell.status, '')} {text}"
    if cell.tone in ("worse", "strong") and text:
        text = f"**{text}**"
    return text or " "


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _safe_url(url: str | None) -> str | None:
    """`url` if it is relative or http(s), with nothing that could end a link or attribute."""
    if not url:
        return None
    if _SCHEME.match(url) and urlsplit(url).scheme.lower() not in ("http", "https"):
        return None
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")
