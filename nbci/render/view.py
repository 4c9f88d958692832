"""What a report shows: plain dataclasses, built by `nbci.render.build`.

The view decides *what* is shown and in which order; the markdown and HTML
templates only decide *how*. Every string in a view is plain, unescaped text
(much of it came from a notebook): the renderers escape all of it, and the
templates add every bit of markup themselves. Numbers are formatted once, by
the builders, with `nbci.vocabulary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from nbci.model import Change, ScrapKind, Status
from nbci.render.visuals import Visuals

Tone = Literal["plain", "better", "worse", "muted", "strong"]
Align = Literal["left", "right"]
NoticeKind = Literal["fail", "warn", "info", "pass"]


@dataclass(frozen=True)
class Cell:
    text: str
    tone: Tone = "plain"
    status: Status | None = None
    """Set on a notebook cell: the renderer shows the status icon before the text."""
    anchor: str | None = None
    """Set on a notebook cell: links to that notebook's section (HTML)."""


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    align: tuple[Align, ...]
    folded: tuple[tuple[Cell, ...], ...] = ()
    """Rows shown collapsed (unchanged metrics, passed gates)."""
    folded_label: str = ""
    note: str = ""
    """What the table does not show (`showing 200 of 1,234 rows`)."""
    title: str = ""

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.folded)


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    text: str


@dataclass(frozen=True)
class VerdictView:
    passed: bool
    headline: str
    """`2 of 3 notebooks failed`, `All 3 notebooks passed`."""
    facts: tuple[str, ...]
    """Short counts after the headline: `1 passed`, `1 cached`, `gates: 2 of 6 failed`."""
    gates: str = ""
    """`2 of 6 failed`, `all 6 passed`; empty without gates."""


@dataclass(frozen=True)
class ErrorView:
    summary: str
    """`ename: evalue`, or the message."""
    cell: int | None
    traceback: str
    """Possibly cut in the middle (`traceback_omitted` characters left out)."""
    traceback_omitted: int = 0


@dataclass(frozen=True)
class FigureView:
    name: str
    path: str
    """Relative to the output directory: `figures/<job>/<name>.png`."""
    in_baseline: bool = False
    """The baseline run has a figure at the same path: show them side by side."""


@dataclass(frozen=True)
class ScrapView:
    name: str
    kind: ScrapKind
    text: str = ""
    """`text` scraps, and `json` scraps pretty-printed."""
    table: Table | None = None
    html: str = ""
    """Untrusted HTML: only the HTML renderer shows it, after sanitising."""
    note: str = ""


@dataclass(frozen=True)
class NotebookView:
    id: str
    anchor: str
    path: str
    status: Status
    status_label: str
    cached: bool
    duration: str
    parameters: tuple[tuple[str, str], ...]
    output: str | None
    html: str | None
    error: ErrorView | None
    metrics: Table | None
    """This notebook's own metrics (None when it has none)."""
    metrics_elsewhere: bool
    figures: tuple[FigureView, ...]
    scraps: tuple[ScrapView, ...]
    notes: tuple[str, ...]
    change: str = ""
    visuals: Visuals = field(default_factory=Visuals)
    """Charts of its series, and its figures against the baseline's (`nbci.render.visuals`)."""
    """Against the baseline: `fails now (passed on the baseline)`, `new notebook`, …"""
    unchanged_tables: tuple[str, ...] = ()
    """Names of its tables equal to the baseline's: named only, like unchanged figures."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class SweepView:
    """A notebook run with a matrix (`nbci.render.sweeps`)."""

    title: str
    table: Table
    """A row per combination: the matrix parameters, then the headline metrics."""
    jobs: Table
    """Every metric of its jobs, all folded."""
    charts: tuple[FigureView, ...] = ()
    """Each headline metric against each numeric parameter (the HTML report shows them)."""
    axes: int = 1
    """How many of the table's first columns are the matrix parameters."""

    @property
    def size(self) -> int:
        return self.table.size + self.jobs.size


@dataclass(frozen=True)
class ReportView:
    title: str
    verdict: VerdictView
    notices: tuple[Notice, ...]
    """What needs attention first: failed gates, newly failing notebooks, an interrupted run."""
    gates: Table | None
    metrics: tuple[Table, ...]
    """Tables across notebooks: one for a comparison; else one per group of notebooks
    that share their metrics (a parameter sweep). A notebook in none of them has its own."""
    notebooks: tuple[NotebookView, ...]
    jobs: Table
    """Every notebook with status, duration and cache state (for the run details)."""
    details: tuple[tuple[str, str], ...]
    packages: Table | None
    baseline_label: str | None = None
    removed_jobs: tuple[str, ...] = ()
    trends: tuple[FigureView, ...] = ()
    """Trend charts (`nbci.render.trends`): changed metrics first, then gated ones."""
    sweeps: tuple[SweepView, ...] = ()
    """Notebooks run with a matrix: their jobs are in no table of `metrics`."""

    @property
    def metric_rows(self) -> int:
        return sum(table.size for table in self.metric_tables)

    @property
    def metric_tables(self) -> tuple[Table, ...]:
        """Every table of metrics across notebooks: the sweeps' and `metrics`."""
        return (*(t for s in self.sweeps for t in (s.table, s.jobs)), *self.metrics)

    @property
    def failures(self) -> tuple[NotebookView, ...]:
        return tuple(nb for nb in self.notebooks if not nb.ok)


@dataclass(frozen=True)
class DiffView:
    """What `nbci diff` shows: the parts of a report that judge one run against another."""

    baseline_label: str
    notices: tuple[Notice, ...]
    counts: Mapping[Change, int]
    """Metrics per change, every change present (zero when none), in `CHANGE_ORDER`."""
    metrics: Table
    """The report's comparison table: changed metrics, unchanged ones folded."""
    gates: Table | None
    """None when the gates were not asked for or none applies."""
    gates_summary: str = ""
    """`2 of 6 failed`, `all 6 passed`, `none apply`; empty when not asked for."""
