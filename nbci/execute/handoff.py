"""The hand-off to collect: a worker adds scraps, metrics, figures and HTML to a result.

Done in the worker, before it answers, so that this work stays off the
parent's critical path.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from nbci.execute.running import RunningJob
from nbci.execute.text import one_line
from nbci.model import NotebookResult

logger = logging.getLogger(__name__)


def collect_outputs(result: NotebookResult, running: RunningJob) -> NotebookResult:
    """Add what the notebook glued and its HTML; a problem here is a note, never a crash."""
    job, out_dir = running.job, running.settings.out_dir
    notes = list(result.notes)
    notebook = out_dir / str(result.output)
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
        render_notebook_html(notebook, out_dir / running.html_rel)
        result = replace(result, html=running.html_rel)
    except Exception as error:
        logger.warning("%s: cannot render HTML", job.id, exc_info=True)
        notes.append(f"the notebook could not be rendered as HTML: {one_line(error)}")
    return replace(result, notes=tuple(notes))
