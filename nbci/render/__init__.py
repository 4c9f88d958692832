"""Reports: `report.md` (the PR comment) and `report.html` (self-contained), from a `Run`.

`view` builds what is shown, `markdown` and `html` render it through the
Jinja2 templates in `templates/`, `report` holds the entry points below.
Importing this package is cheap: Jinja2 and nh3 load on first render.
"""

from __future__ import annotations

from nbci.render.report import html_report, markdown_report, write_reports

__all__ = ["html_report", "markdown_report", "write_reports"]
