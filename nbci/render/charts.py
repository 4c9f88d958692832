"""Charts: one PNG per series group, this run against its baseline.

This run's curves are solid, the baseline's dashed in the same colour on the
same axes; every series also has its own marker, so the chart reads without
colour. The legend names each series once and then the two line styles, the
dashed one naming the baseline (its commit, or its folder). The y axis is
logarithmic when the (positive) values span more than three decades.

Drawn with matplotlib's Agg canvas directly (no pyplot state, safe in any
thread), with margins fitted to the labels (`fit_margins`, no layout engine:
one draw a chart). Names come from notebooks: they are shown as plain text (no
mathtext) and shortened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbci._files import is_within, safe_name, write_bytes_atomic
from nbci.model import Chart, Run, Series, SeriesGroup

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.backends.backend_agg import FigureCanvasAgg

logger = logging.getLogger(__name__)

MAX_COMMENT_CHARTS = 8
"""Charts the PR comment shows; the HTML report shows them all."""
MAX_CHARTS = 100
"""Charts drawn for one run, the most changed first; the rest are said to be left out."""
CHART_FOLDER = "charts"
LOG_SPAN = 1e3
"""Positive values spanning more than this factor are drawn on a log scale."""
MAX_LABEL = 60
SIZE_INCHES = (6.4, 3.6)
DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
_MARKS_PER_LINE = 12
"""Markers along each curve: enough to tell them apart, few enough to keep it clean."""


def draw_chart(
    group: SeriesGroup | None,
    baseline: SeriesGroup | None = None,
    *,
    baseline_label: str | None = None,
    title: str = "",
) -> bytes:
    """The PNG of one group (and the baseline's group of the same name, dashed)."""
    figure = chart_figure(group, baseline, baseline_label=baseline_label, title=title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # same bytes every time
    return buffer.getvalue()


def chart_figure(
    group: SeriesGroup | None,
    baseline: SeriesGroup | None = None,
    *,
    baseline_label: str | None = None,
    title: str = "",
) -> Any:
    """The matplotlib Figure that `draw_chart` renders."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=SIZE_INCHES, dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = _names(group, baseline)
    colours = line_colours(len(names))
    handles: list[Any] = []
    for index, name in enumerate(names):
        colour, marker = colours[index], MARKERS[index % len(MARKERS)]
        style = {"color": colour, "marker": marker, "markersize": 4}
        head, base = _find(group, name), _find(baseline, name)
        if base is not None:
            axes.plot(base.x, base.y, linestyle="--", markevery=_every(base), alpha=0.8, **style)
        if head is not None:
            axes.plot(head.x, head.y, linestyle="-", markevery=_every(head), **style)
        handles.append(Line2D([], [], label=plain(_label(group, baseline, name)), **style))
    if baseline is not None:
        handles += [
            Line2D([], [], color="black", linestyle="-", label="this run"),
            Line2D([], [], color="black", linestyle="--", label=plain(_base_text(baseline_label))),
        ]
    if _wants_log(group, baseline):
        axes.set_yscale("log")
    if _whole_x(group, baseline):  # epochs, steps: no tick at 2.5
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    axes.legend(handles=handles, fontsize=8, loc="best", ncols=2 if len(handles) > 8 else 1)
    fit_margins(canvas, axes, plain(title), title_pt=10)
    return figure


_EDGE_PT = 3.0
"""Space between a chart's edge and the text nearest to it, in points."""
_TICK_PAD_PT = 3.5
"""Between a tick and its label (matplotlib's default), in points."""
_TITLE_PAD_PT = 6.0
_LINE = 1.2
"""A line of text's height over its font size."""


def fit_margins(canvas: FigureCanvasAgg, axes: Axes, title: str, *, title_pt: float) -> None:
    """Place `axes` so that its tick labels, axis labels and `title` (set here, at the left,
    above the y axis's offset text such as `1e9`) fit around it, close to the edges.

    Constrained layout found about the same margins by laying every chart out in an extra
    draw, a third to a half of its time: here only the tick labels are measured (their
    size depends on the values), the rest follows from the font sizes."""
    figure = canvas.figure
    points = figure.dpi / 72  # pixels
    width, height = figure.bbox.width, figure.bbox.height
    axes.tick_params(pad=_TICK_PAD_PT)
    x_width, x_height = _tick_label_size(canvas, axes.xaxis)
    bottom = (_beside(axes.xaxis, _offset_pt(axes.xaxis)) + _EDGE_PT) * points + x_height
    title_room = (_LINE * title_pt + _TITLE_PAD_PT) * points if title else 0.0
    top = _EDGE_PT * points + title_room
    figure.subplots_adjust(bottom=bottom / height, top=1 - top / height)
    y_width, y_height = _tick_label_size(canvas, axes.yaxis)  # its length sets its ticks
    offset = _offset_pt(axes.yaxis)  # `1e9`, above the y axis
    top += max(offset * points, y_height / 2 - top + _EDGE_PT * points, 0.0)  # the top label
    left = (_beside(axes.yaxis) + _EDGE_PT) * points + y_width
    right = _EDGE_PT * points + x_width / 2  # the last tick label's overhang, at most
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height)
    if title:  # y given: matplotlib does not move it (it would measure the axes again)
        axes.set_title(title, fontsize=title_pt, loc="left", y=1.0, pad=_TITLE_PAD_PT + offset)


def _beside(axis: Axis, offset_pt: float = 0.0) -> float:
    """Points from the axes' edge to the figure's, without the tick labels and the edge's
    space: the ticks, then the axis label or the offset text (x: both in one band, below)."""
    label = axis.label
    below = offset_pt + _TICK_PAD_PT if offset_pt else 0.0
    if label.get_text():
        size = label.get_fontproperties().get_size_in_points()
        below = max(below, axis.labelpad + _LINE * size)
    return axis.get_tick_padding() + _TICK_PAD_PT + below


def _offset_pt(axis: Axis) -> float:
    """The height of `axis`'s offset text (`1e9`, `+1e5`) in points; 0 when it has none.
    Its text is the formatter's, set when the tick labels were last formatted."""
    if not axis.get_major_formatter().get_offset():
        return 0.0
    return _LINE * axis.get_offset_text().get_fontproperties().get_size_in_points()


def _tick_label_size(canvas: FigureCanvasAgg, axis: Axis) -> tuple[float, float]:
    """The width and height (pixels) of `axis`'s widest and tallest major tick labels; one
    label of each shape is measured (`0.45` for `0.40`…`0.50`: digits are equally wide)."""
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]  # unannotated there
    font = axis.majorTicks[0].label1.get_fontproperties()  # the first tick: kept for drawing
    labels = axis.get_major_formatter().format_ticks(list(axis.get_majorticklocs()))
    shapes = {re.sub("[0-9]", "0", label): label for label in labels}
    sizes = [
        renderer.get_text_width_height_descent(label, font, ismath="$" in label)[:2]
        for label in shapes.values()
    ]
    return max((w for w, _ in sizes), default=0.0), max((h for _, h in sizes), default=0.0)


def _names(group: SeriesGroup | None, baseline: SeriesGroup | None) -> list[str]:
    """Series names of this run, then any only the baseline has."""
    return list(dict.fromkeys(s.name for g in (group, baseline) if g is not None for s in g.series))


def _find(group: SeriesGroup | None, name: str) -> Series | None:
    if group is None:
        return None
    return next((s for s in group.series if s.name == name), None)


def _label(group: SeriesGroup | None, baseline: SeriesGroup | None, name: str) -> str:
    either = group or baseline
    return either.label(name) if either is not None else name


def _base_text(label: str | None) -> str:
    return f"base {label}" if label else "base"


def line_colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]


def _every(series: Series) -> int:
    return max(len(series.y) // _MARKS_PER_LINE, 1)


def _whole_x(*groups: SeriesGroup | None) -> bool:
    """Whether every x is a whole number (0…n-1 when the notebook gave none)."""
    xs = [x for g in groups if g is not None for s in g.series for x in s.x]
    return all(math.isfinite(x) and float(x).is_integer() for x in xs)


def _wants_log(*groups: SeriesGroup | None) -> bool:
    values = [v for g in groups if g is not None for s in g.series for v in s.y if math.isfinite(v)]
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) > LOG_SPAN


def plain(text: str) -> str:
    """Untrusted text as matplotlib shows it literally: `$` would start mathtext."""
    short = text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"
    return "".join(ch if ch.isprintable() else "?" for ch in short).replace("$", r"\$")


def write_charts(
    run: Run,
    baseline: Run | None,
    out_dir: Path,
    *,
    baseline_label: str | None = None,
    store: Path | None = None,
) -> tuple[tuple[Chart, ...], int]:
    """Draw every job's series groups into `out_dir/charts/`; the charts, most changed first,
    and how many were left out past `MAX_CHARTS`.

    A group only the baseline has is drawn too (dashed only): its curves were removed.
    `store` (the run cache's `charts/` folder) keeps drawn charts by what they show
    (`chart_key`): an unchanged chart is copied from there, not drawn again.
    """
    from nbci.series import change_score

    scored = [
        (change_score(head, base) if baseline else 0.0, job_id, name, head, base)
        for job_id, name, head, base in _joined_groups(run, baseline)
    ]
    scored.sort(key=lambda item: -item[0])  # stable: without a baseline, run order
    charts: list[Chart] = []
    for score, job_id, name, head, base in scored[:MAX_CHARTS]:
        relative = f"{CHART_FOLDER}/{safe_name(job_id)}/{safe_name(name)}.png"
        path = out_dir / relative
        if not is_within(path, out_dir):
            continue
        try:
            png = _chart_png(head, base, baseline_label, f"{job_id}: {name}", store)
        except (ValueError, OverflowError, RuntimeError) as error:  # matplotlib's, on odd values
            logger.warning("chart of %s: %s not drawn: %s", job_id, name, error)
            continue
        try:
            write_bytes_atomic(path, png)
        except OSError as error:
            logger.warning("could not write the chart %s: %s", path, error.strerror)
            continue
        charts.append(Chart(job_id=job_id, group=name, path=relative, change=score))
    return tuple(charts), max(len(scored) - MAX_CHARTS, 0)


def _chart_png(
    head: SeriesGroup | None,
    base: SeriesGroup | None,
    baseline_label: str | None,
    title: str,
    store: Path | None,
) -> bytes:
    """The chart, from `store` when the same chart was drawn before (a run whose notebooks
    all come from the cache then never imports matplotlib), else drawn and kept there."""
    shown = {
        "head": dataclasses.asdict(head) if head else None,
        "base": dataclasses.asdict(base) if base else None,
        "label": baseline_label,
        "title": title,
    }
    return kept_chart(
        store, shown, lambda: draw_chart(head, base, baseline_label=baseline_label, title=title)
    )


def kept_chart(store: Path | None, shown: Mapping[str, object], draw: Callable[[], bytes]) -> bytes:
    """The PNG `draw` makes, copied from `store` (the run cache's `charts/` folder) when a
    chart showing the same (`chart_key(shown)`) was drawn before, else drawn and kept there.
    Every chart a report draws (series, sweeps) is kept here, so a warm run draws none."""
    if store is None:
        return draw()
    kept = store / f"{chart_key(shown)}.png"
    with contextlib.suppress(OSError):
        data = kept.read_bytes()
        if data.startswith(_PNG_START) and data.endswith(_PNG_END):  # not a damaged file
            os.utime(kept)  # recently used: pruned last
            return data
    png = draw()
    try:
        write_bytes_atomic(kept, png)
    except OSError as error:  # a chart that cannot be kept is drawn again next time
        logger.info("could not keep the chart in %s: %s", store, error.strerror)
    return png


_PNG_START = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


def chart_key(shown: Mapping[str, object]) -> str:
    """A hash of everything a chart shows (`shown`: its points, labels and title) and how
    it is drawn: the source of the modules that draw charts and matplotlib's version."""
    keyed = {**shown, "code": _code_digest(), "matplotlib": _matplotlib_release()}
    text = json.dumps(keyed, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


_DRAWING_MODULES = ("charts.py", "sweep_charts.py")
"""The modules whose source decides how a kept chart looks."""


@lru_cache(maxsize=1)
def _code_digest() -> str:
    digest = hashlib.sha256()
    for name in _DRAWING_MODULES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _matplotlib_release() -> str:
    """matplotlib's `matplotlib-X.Y.Z.dist-info` folder name, found without importing it
    (importlib.metadata took 0.1 s to say the same)."""
    from importlib.util import find_spec

    spec = find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return ""
    site = Path(spec.origin).parent.parent
    return " ".join(sorted(p.name for p in site.glob("matplotlib-*.dist-info")))


_Joined = tuple[str, str, SeriesGroup | None, SeriesGroup | None]


def _joined_groups(run: Run, baseline: Run | None) -> list[_Joined]:
    """(job id, group name, this run's group, the baseline's), in run order; a baseline job
    under another id of the same job (`nbci.ids.pair_renamed`) is joined too."""
    from nbci.ids import with_head_ids

    base_run = with_head_ids(run.notebooks, baseline) if baseline else None
    base_jobs = {nb.id: nb for nb in base_run.notebooks} if base_run else {}
    joined: list[_Joined] = []
    for nb in run.notebooks:
        base_nb = base_jobs.get(nb.id)
        base_groups = {g.name: g for g in base_nb.series} if base_nb else {}
        joined.extend((nb.id, g.name, g, base_groups.get(g.name)) for g in nb.series)
        head_names = {g.name for g in nb.series}
        joined.extend(
            (nb.id, g.name, None, g) for g in base_groups.values() if g.name not in head_names
        )
    return joined
