"""Reports: `report.md` (the PR comment) and `report.html` (self-contained), from a `Run`.

`view` holds what is shown (dataclasses) and `build` makes it from a run
(with `metric_tables`, `notebook_view`, `labels` and `trends`); `markdown`,
`html` and `diff` render it, the first two through the Jinja2 templates in
`templates/`; `notebook_html` renders an executed notebook with nbconvert;
`report` holds the entry points below. Words and numbers come from
`nbci.vocabulary`.
Importing this package is cheap: Jinja2 and nh3 load on first render.
"""

from __future__ import annotations

from nbci.render.report import html_report, markdown_report, write_reports

__all__ = ["html_report", "markdown_report", "write_reports"]
