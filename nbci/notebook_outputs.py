"""What an executed notebook yields: its glued scraps, metrics and figures, and its HTML.

The pipeline hands `collect_outputs` to the executor (`ExecuteOptions.after_notebook`),
which calls it in each worker before the worker answers, so that this work stays off
the parent's critical path while the executor imports neither collect nor render.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from nbci.execute.text import one_line
from nbci.model import Job, NotebookResult

logger = logging.getLogger(__name__)


def warm_up_outputs() -> None:
    """Do once what `collect_outputs` does once per process (imports, nbconvert's exporter and
    template), before the first notebook needs it. The pipeline hands this to the executor
    (`ExecuteOptions.warm_up`), which calls it in each worker while the worker waits for its
    first kernel's template: 0.3 s of CPU each worker's first notebook paid after it ran."""
    import nbci.collect  # noqa: F401
    from nbci.render.notebook_html import warm_up_html

    warm_up_html()


def collect_outputs(
    result: NotebookResult, job: Job, *, notebook: Path, out_dir: Path, html: str
) -> NotebookResult:
    """Add what `notebook` glued and its HTML (`html`, relative to `out_dir`) to `result`.

    A problem here is a note, never a crash.
    """
    notes = list(result.notes)
    try:
        from nbci.collect import collect_notebook
        from nbci.render.notebook_html import render_notebook_html

        collected = collect_notebook(notebook, job, out_dir)
        result = replace(
            result,
            metrics=collected.metrics,
            scraps=collected.scraps,
            figures=collected.figures,
            series=collected.series,
        )
        notes += collected.notes
    except Exception as error:
        logger.warning("%s: cannot collect results", job.id, exc_info=True)
        notes.append(f"results could not be collected: {one_line(error)}")
        return replace(result, notes=tuple(notes))
    try:
        render_notebook_html(notebook, out_dir / html)
        result = replace(result, html=html)
    except Exception as error:
        logger.warning("%s: cannot render HTML", job.id, exc_info=True)
        notes.append(f"the notebook could not be rendered as HTML: {one_line(error)}")
    return replace(result, notes=tuple(notes))
