"""The public entry points: build the view once, render it, write the files."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from nbci._files import is_within, write_chunks_atomic, write_text_atomic
from nbci.headline import Headline, Leads
from nbci.model import Comparison, Run, Verdict
from nbci.render.build import build_view
from nbci.render.markdown import MAX_CHARS, Links, render_markdown
from nbci.render.sweep_charts import write_sweep_charts
from nbci.render.sweeps import find_sweeps
from nbci.render.trends import trend_deltas, write_trends
from nbci.render.visuals import Visuals, draw_visuals

logger = logging.getLogger(__name__)

MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"


def markdown_report(
    run: Run,
    *,
    comparison: Comparison | None = None,
    verdict: Verdict | None = None,
    images: bool = True,
    image_url: Callable[[str], str] | None = None,
    base_figures: Mapping[str, str] | None = None,
    link_url: Callable[[str], str | None] | None = None,
    figures_note: str | None = None,
    report_url: str | None = None,
    visuals: Mapping[str, Visuals] | None = None,
    title: str = "nbci",
    max_chars: int = MAX_CHARS,
    templates: Path | None = None,
    headline: Headline | None = None,
) -> str:
    """The markdown report (the PR comment body), at most `max_chars` characters.

    - `images=False`: figures are named, not shown (job summaries, or when
      they could not be hosted); `figures_note` (trusted markdown, e.g. a link
      to the artifact) follows the names.
    - `image_url`: maps a figure's path (`figures/<job>/<name>.png`) to the URL
      to show; default: the relative path itself.
    - `base_figures`: figure path → URL of the baseline's figure at that path;
      those figures are shown baseline beside this run.
    - `link_url`: maps an output-directory path (`notebooks/<job>.html`) to a
      URL, or None to print the path as text; default: the relative path.
    - `report_url`: where the full report can be had (the artifact); named in
      the note that says what a shortened report left out.
    - `visuals`: job id → its charts and figure comparison (`draw_visuals`);
      their images go through `image_url` (`charts/…`, `diffs/…`) and
      `base_figures` like figures.
    - `headline`: which metrics lead the tables (`nbci.headline`; default: glued scalars).
    """
    view = build_view(
        run,
        comparison=comparison,
        verdict=verdict,
        base_figures=frozenset(base_figures or ()),
        visuals=visuals,
        title=title,
        headline=headline,
    )
    links = Links(
        images=images,
        image_url=image_url,
        base_figures=base_figures,
        link_url=link_url,
        figures_note=figures_note,
        report_url=report_url,
    )
    return render_markdown(view, links=links, max_chars=max_chars, templates=templates)


def html_report(
    run: Run,
    *,
    comparison: Comparison | None = None,
    verdict: Verdict | None = None,
    out_dir: Path | None = None,
    baseline_dir: Path | None = None,
    visuals: Mapping[str, Visuals] | None = None,
    title: str = "nbci",
    templates: Path | None = None,
    headline: Headline | None = None,
) -> str:
    """The self-contained HTML report; figures, charts and difference images are inlined
    from `out_dir` and `baseline_dir`."""
    return "".join(
        _html_chunks(
            run,
            comparison=comparison,
            verdict=verdict,
            out_dir=out_dir,
            baseline_dir=baseline_dir,
            visuals=visuals,
            title=title,
            templates=templates,
            headline=headline,
        )
    )


def _html_chunks(
    run: Run,
    *,
    comparison: Comparison | None,
    verdict: Verdict | None,
    out_dir: Path | None,
    baseline_dir: Path | None,
    visuals: Mapping[str, Visuals] | None,
    title: str,
    templates: Path | None,
    headline: Headline | None,
) -> Iterator[str]:
    """`html_report` in pieces, as `write_reports` writes it (`html.html_chunks`)."""
    from nbci.render.html import html_chunks

    view = build_view(
        run,
        comparison=comparison,
        verdict=verdict,
        base_figures=_baseline_figures(run, baseline_dir),
        visuals=visuals,
        title=title,
        headline=headline,
    )
    yield from html_chunks(view, out_dir=out_dir, baseline_dir=baseline_dir, templates=templates)


def write_reports(
    run: Run,
    out_dir: Path,
    *,
    comparison: Comparison | None = None,
    verdict: Verdict | None = None,
    baseline_dir: Path | None = None,
    baseline: Run | None = None,
    templates: Path | None = None,
    title: str = "nbci",
    headline: Headline | None = None,
    chart_store: Path | None = None,
) -> list[Path]:
    """Write `report.md` and `report.html` into `out_dir` (atomically); returns their paths.

    The charts of the run's series (against `baseline`'s), the difference images of its
    changed figures (against those in `baseline_dir`) and the trend charts (with history)
    are drawn into `out_dir` first, and the charts of each sweep (`nbci.render.sweep_charts`);
    `chart_store` keeps charts drawn (series and sweep charts) for the next run.
    """
    leads = Leads.of(run, headline, verdict)
    write_trends(trend_deltas(comparison, verdict, leads), out_dir)
    write_sweep_charts(find_sweeps(run, leads), comparison, out_dir, store=chart_store)
    drawn = draw_visuals(
        run,
        out_dir,
        baseline=baseline,
        baseline_dir=baseline_dir,
        baseline_label=comparison.baseline_label if comparison else None,
        chart_store=chart_store,
    )
    base_paths = _baseline_figures(run, baseline_dir) | _baseline_figures(baseline, baseline_dir)
    base_urls = {p: _relative_url(baseline_dir / p, out_dir) for p in base_paths if baseline_dir}
    markdown = markdown_report(
        run,
        comparison=comparison,
        verdict=verdict,
        base_figures=base_urls,
        visuals=drawn.by_job,
        title=title,
        templates=templates,
        headline=headline,
    )
    html = _html_chunks(
        run,
        comparison=comparison,
        verdict=verdict,
        out_dir=out_dir,
        baseline_dir=baseline_dir,
        visuals=drawn.by_job,
        title=title,
        templates=templates,
        headline=headline,
    )
    html_path = write_chunks_atomic(out_dir / HTML_NAME, html)  # streamed: never held whole
    written = [write_text_atomic(out_dir / MARKDOWN_NAME, markdown), html_path]
    for path in written:
        logger.info("wrote %s", path)
    return written


def _baseline_figures(run: Run | None, baseline_dir: Path | None) -> frozenset[str]:
    """Paths of `run`'s figures that the baseline directory has."""
    if run is None or baseline_dir is None:
        return frozenset()
    found = set()
    for nb in run.notebooks:
        for figure in nb.figures:
            path = baseline_dir / figure.path
            if is_within(path, baseline_dir) and path.is_file():
                found.add(figure.path)
    return frozenset(found)


def _relative_url(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
