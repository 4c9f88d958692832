"""The view of a job's curves and figures against the baseline: what each report draws.

Charts (drawn by `nbci.render.charts`) come most changed first. Figures fall
into four kinds: changed (baseline | this run | difference), added, removed,
and unchanged (named only, collapsed). Strings are plain text here, as in
`nbci.render.view`: the renderers escape them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nbci._files import remove_drawn
from nbci.model import Chart, CodeChange, FigureChange, FigureState, Run
from nbci.render.cell_diff import CodeView, code_view
from nbci.render.escape import clean_text, truncate

NAME_CHARS = 200


@dataclass(frozen=True)
class ChartView:
    title: str
    path: str
    """The PNG, relative to the output directory: `charts/<job>/<name>.png`."""
    changed: bool
    rank: int = 0
    """Place among all the run's charts, most changed first: the PR comment shows the first
    `charts.MAX_COMMENT_CHARTS`."""


@dataclass(frozen=True)
class FigureDiffView:
    name: str
    state: FigureState
    path: str | None
    """This run's figure, relative to the output directory (None when removed)."""
    baseline_path: str | None
    """The baseline's figure, relative to the baseline's directory (None when added)."""
    diff_path: str | None
    note: str


@dataclass(frozen=True)
class Visuals:
    """One job's charts and figure comparison."""

    charts: tuple[ChartView, ...] = ()
    changed: tuple[FigureDiffView, ...] = ()
    added: tuple[FigureDiffView, ...] = ()
    removed: tuple[FigureDiffView, ...] = ()
    unchanged: tuple[str, ...] = ()
    """Names of the figures whose pixels equal the baseline's."""
    code: CodeView | None = None
    """Its notebook's changed code cells (`nbci.code_changes`); None when none changed."""

    @property
    def compared(self) -> bool:
        return bool(self.changed or self.added or self.removed or self.unchanged)


@dataclass(frozen=True)
class Drawn:
    """What `draw_visuals` wrote into the output directory."""

    by_job: dict[str, Visuals]
    charts_left_out: int = 0
    """Series groups past `charts.MAX_CHARTS`, not drawn."""


def draw_visuals(
    run: Run,
    out_dir: Path,
    *,
    baseline: Run | None = None,
    baseline_dir: Path | None = None,
    baseline_label: str | None = None,
    chart_store: Path | None = None,
) -> Drawn:
    """Draw the charts and compare the figures and the notebooks' code (with
    `baseline_dir`), files in `out_dir`, replacing those an earlier render drew there;
    `chart_store` keeps drawn charts for the next run (`charts.write_charts`)."""
    from nbci.code_changes import IMAGE_FOLDER as CODE_IMAGE_FOLDER
    from nbci.code_changes import code_changes, notebook_reader
    from nbci.figures import DIFF_FOLDER, figure_changes, file_reader
    from nbci.render.charts import CHART_FOLDER, write_charts

    for folder in (CHART_FOLDER, DIFF_FOLDER, CODE_IMAGE_FOLDER):
        remove_drawn(out_dir / folder)
    charts, left_out = write_charts(
        run, baseline, out_dir, baseline_label=baseline_label, store=chart_store
    )
    changes: tuple[FigureChange, ...] = ()
    code: tuple[CodeChange, ...] = ()
    if baseline is not None and baseline_dir is not None:
        changes = figure_changes(
            run, baseline, file_reader(out_dir), file_reader(baseline_dir), out_dir
        )
        read_head, read_base = notebook_reader(out_dir), notebook_reader(baseline_dir)
        code = code_changes(run, baseline, read_head, read_base, out_dir)
    return Drawn(visuals_by_job(charts, changes, code), left_out)


def visuals_by_job(
    charts: Iterable[Chart],
    changes: Iterable[FigureChange] = (),
    code: Iterable[CodeChange] = (),
) -> dict[str, Visuals]:
    """Job id → its visuals; charts keep their order (the most changed first)."""
    chart_lists: dict[str, list[ChartView]] = {}
    for rank, chart in enumerate(charts):
        view = ChartView(_name(chart.group), chart.path, changed=chart.change > 0, rank=rank)
        chart_lists.setdefault(chart.job_id, []).append(view)
    change_lists: dict[str, list[FigureChange]] = {}
    for change in changes:
        change_lists.setdefault(change.job_id, []).append(change)
    code_views = {change.job_id: code_view(change) for change in code}
    return {
        job_id: _visuals(
            chart_lists.get(job_id, []), change_lists.get(job_id, []), code_views.get(job_id)
        )
        for job_id in dict.fromkeys([*chart_lists, *change_lists, *code_views])
    }


def _visuals(
    charts: Sequence[ChartView], changes: Sequence[FigureChange], code: CodeView | None = None
) -> Visuals:
    def of(state: FigureState) -> tuple[FigureDiffView, ...]:
        return tuple(_figure(c) for c in changes if c.state == state)

    return Visuals(
        charts=tuple(charts),
        changed=of("changed"),
        added=of("added"),
        removed=of("removed"),
        unchanged=tuple(_name(c.name) for c in changes if c.state == "unchanged"),
        code=code,
    )


def _figure(change: FigureChange) -> FigureDiffView:
    return FigureDiffView(
        name=_name(change.name),
        state=change.state,
        path=change.path,
        baseline_path=change.baseline_path,
        diff_path=change.diff_path,
        note=clean_text(truncate(change.note, 300)),
    )


def _name(text: str) -> str:
    name = clean_text(truncate(text, NAME_CHARS))
    return name if name.strip() else "(blank)"
