"""The report as it is posted: hosted figure links, the baseline's figures beside, a footer.

The markdown comes from `nbci.render.markdown_report`; this module decides
where its links point (figures at the assets commit, notebooks left in the
artifact) and adds the footer (baseline, run link, what was left out), keeping
the whole within GitHub's comment limit with room for the marker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from nbci._text import one_line
from nbci.headline import Headline
from nbci.model import Comparison, Run, Verdict
from nbci.publish.assets import Figures, Hosting, Tip
from nbci.publish.baseline import Baseline
from nbci.publish.branch_visuals import Prepared
from nbci.publish.comment import comment_limit, marker
from nbci.publish.forge import Forge
from nbci.vocabulary import NOTICE_ICON

REPORT_BUDGET = 64_000
"""Characters the rendered report may take; the rest of the 65,536 is marker and footer."""
MAX_NOTES = 20


def render_report(
    run: Run,
    *,
    comparison: Comparison | None,
    verdict: Verdict,
    name: str,
    templates: Path | None,
    forge: Forge,
    hosting: Hosting,
    figures: Figures,
    baseline: Baseline | None,
    notes: Sequence[str],
    review: Prepared | None = None,
    headline: Headline | None = None,
    baseline_unread: bool = False,
) -> str:
    """The rendered report plus a footer, short enough for a comment with its marker."""
    from nbci.render import markdown_report

    footer = _footer(forge.run_url, baseline, notes, baseline_unread)
    hosted = hosting.folder is not None
    figures_note = None
    if not hosted and any(nb.figures for nb in run.notebooks):
        run_url = forge.run_url
        where = f"[the run's artifact]({run_url})" if run_url else "the run's artifact"
        figures_note = f"The figures are in {where}."
    report = markdown_report(
        run,
        comparison=comparison,
        verdict=verdict,
        images=hosted,
        image_url=_image_url(forge, hosting, figures),
        base_figures=_base_figures(forge, hosting.tip, baseline),
        link_url=_notebook_links(forge, hosting, run, review),
        visuals=review.drawn.by_job if review is not None else None,
        figures_note=figures_note,
        title=name,
        max_chars=min(REPORT_BUDGET, comment_limit(forge) - len(marker(name)) - len(footer) - 8),
        templates=templates,
        headline=headline,
    )
    return report + footer


def _image_url(forge: Forge, hosting: Hosting, figures: Figures) -> Callable[[str], str]:
    """Figure path -> its URL at the assets commit; "" (not available) for a figure not stored."""
    stored = {f.path for f in figures.files}
    commit, folder = hosting.tip.commit, hosting.folder

    def url(path: str) -> str:
        if commit is None or folder is None or path not in stored:
            return ""
        return forge.file_url(commit, f"{folder}/{path}")

    return url


def _base_figures(forge: Forge, tip: Tip, baseline: Baseline | None) -> dict[str, str]:
    """Figure path -> URL of the baseline's figure, for those stored with the baseline."""
    if baseline is None or tip.commit is None:
        return {}
    urls = {}
    for nb in baseline.run.notebooks:
        for figure in nb.figures:
            stored = f"{baseline.folder}/{figure.path}"
            if stored in tip.files:
                urls[figure.path] = forge.file_url(tip.commit, stored)
    return urls


def _notebook_links(
    forge: Forge, hosting: Hosting, run: Run, review: Prepared | None
) -> Callable[[str], str | None]:
    """A job's notebook (or its HTML) → the stored notebook's page, where the forge renders it.

    Notebooks not stored (or not hosted at all) stay in the artifact: named, not linked.
    """
    stored = review.notebook_paths if review is not None else {}
    commit = hosting.tip.commit
    urls: dict[str, str] = {}
    for nb in run.notebooks:
        branch_path = stored.get(nb.id)
        if branch_path is None or commit is None or hosting.folder is None:
            continue
        url = forge.page_url(commit, branch_path)
        urls.update({path: url for path in (nb.output, nb.html) if path})
    return urls.get


def _footer(
    run_url: str | None, baseline: Baseline | None, notes: Sequence[str], unread: bool
) -> str:
    """Small print under the report: no baseline (and whether stored results could not be
    read, rather than none stored), where the run is, what was left out."""
    lines = []
    if baseline is None and unread:
        lines.append("No baseline: the stored results could not all be read (see below).")
    elif baseline is None:
        lines.append("No baseline: no stored results for the base commit or its recent ancestors.")
    if run_url:
        lines.append(f"[The run, its report.html and notebooks (artifact)]({run_url})")
    lines += [f"{NOTICE_ICON['warn']} {_one_line(note)}" for note in notes[:MAX_NOTES]]
    if len(notes) > MAX_NOTES:
        lines.append(f"{NOTICE_ICON['warn']} {len(notes) - MAX_NOTES} more notes in the job log")
    return "\n\n---\n" + "<br>\n".join(f"<sub>{line}</sub>" for line in lines) if lines else ""


def _one_line(text: str) -> str:
    from nbci.render.escape import escape_markdown

    return escape_markdown(one_line(text))
