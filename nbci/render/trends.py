"""Trend charts: a metric's values along the base branch's history, the baseline and this run.

One small PNG per metric that has a range (`nbci.history`), for the metrics
that changed first (in `CHANGE_ORDER`), then the gated ones. The HTML report
inlines all of them (up to `MAX_TRENDS`); the markdown report (the PR comment)
shows at most `COMMENT_TRENDS`. matplotlib (Agg, no display) is imported only
when a chart is drawn.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nbci._files import remove_drawn, safe_name, write_bytes_atomic
from nbci.headline import Leads
from nbci.model import Comparison, MetricDelta, Verdict
from nbci.vocabulary import CHANGE_ORDER

logger = logging.getLogger(__name__)

FOLDER = "trends"
MAX_TRENDS = 40
"""Charts a report draws at most (the HTML report shows them all)."""
COMMENT_TRENDS = 6
"""Charts the markdown report (the PR comment) shows at most."""
_TITLE_CHARS = 60
_ABOVE: dict[str, Any] = {"xytext": (0, 5), "textcoords": "offset points"}


def trend_deltas(
    comparison: Comparison | None, verdict: Verdict | None, leads: Leads | None = None
) -> list[MetricDelta]:
    """The metrics that get a chart, in order: changed ones first, then gated ones; with
    `leads`, the headline metrics (gated ones among them) before the others."""
    if comparison is None:
        return []
    with_range = [d for d in comparison.deltas if d.range is not None and d.value is not None]
    changed = sorted(
        (d for d in with_range if d.change != "unchanged"),
        key=lambda d: CHANGE_ORDER.index(d.change),
    )
    gated = {(r.job_id, r.metric) for r in verdict.results} if verdict else set()
    chosen = {(d.job_id, d.metric): d for d in changed}
    for delta in with_range:
        if (delta.job_id, delta.metric) in gated:
            chosen.setdefault((delta.job_id, delta.metric), delta)
    ordered = list(chosen.values())
    if leads is not None:  # the comment shows the first few: headline and gated metrics
        ordered.sort(key=lambda d: not leads.leads(d.job_id, d.metric))
    return ordered[:MAX_TRENDS]


def trend_path(delta: MetricDelta) -> str:
    """Where a chart goes, relative to the output directory: `trends/<job>/<metric>.png`."""
    return f"{FOLDER}/{safe_name(delta.job_id)}/{safe_name(delta.metric)}.png"


def write_trends(deltas: Sequence[MetricDelta], out_dir: Path) -> list[Path]:
    """Draw each chart into `out_dir/trends/` (replacing the charts of an earlier report);
    a chart that cannot be drawn is skipped."""
    remove_drawn(out_dir / FOLDER)
    written = []
    for delta in deltas:
        data = draw_trend(delta)
        if data is not None:
            written.append(write_bytes_atomic(out_dir / trend_path(delta), data))
    return written


def draw_trend(delta: MetricDelta) -> bytes | None:
    """The chart as PNG bytes; None (logged) when it cannot be drawn."""
    if delta.range is None or not isinstance(delta.value, int | float):
        return None
    try:
        return _draw(delta, float(delta.value))
    except (ValueError, OverflowError, RuntimeError) as exc:  # matplotlib's, on odd values
        logger.warning("trend chart of %s:%s not drawn: %s", delta.job_id, delta.metric, exc)
        return None


def _draw(delta: MetricDelta, value: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    assert delta.range is not None
    values = delta.range.values
    xs = list(range(1, len(values) + 1))
    head_x = len(values) + 1
    figure = Figure(figsize=(4.2, 2.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.axhspan(delta.range.low, delta.range.high, color="#d0e4f5", label="base branch range")
    axes.plot(xs, values, color="#5a6b7b", marker="o", markersize=3, linewidth=1, label="history")
    if isinstance(delta.baseline, int | float) and not isinstance(delta.baseline, bool):
        axes.axhline(float(delta.baseline), color="#5a6b7b", linestyle="--", linewidth=1)
        axes.annotate("baseline", (1, float(delta.baseline)), fontsize=7, color="#5a6b7b", **_ABOVE)
    colour = {"regressed": "#c62828", "improved": "#2e7d32"}.get(delta.change, "#1f4e79")
    axes.plot([head_x], [value], marker="*", markersize=12, color=colour)
    axes.annotate("this run", (head_x, value), fontsize=7, color=colour, ha="right", **_ABOVE)
    axes.set_xlim(0.5, head_x + 0.5)
    axes.set_xticks([])
    axes.tick_params(labelsize=7)
    title = f"{delta.job_id}: {delta.metric}"
    if len(title) > _TITLE_CHARS:
        title = title[: _TITLE_CHARS - 1] + "…"
    axes.set_title(title, fontsize=8).set_parse_math(False)  # `$` in a name is not TeX
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
