"""What every chart's layout keeps (`nbci.render.charts.fit_margins`): everything drawn is
inside the figure and close to its left and bottom edges, the title clear of the y axis's
offset text (`1e9`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SNUG_PX = 12
"""At most this far from the figure's left and bottom edges: no room wasted."""


def assert_fits_snugly(figure: Figure, title: str) -> None:
    from matplotlib.text import Text

    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    figure.draw(renderer)
    (axes,) = figure.axes
    drawn, edge = axes.get_tightbbox(renderer), figure.bbox
    assert drawn is not None
    assert edge.x0 <= drawn.x0 <= edge.x0 + SNUG_PX
    assert edge.y0 <= drawn.y0 <= edge.y0 + SNUG_PX
    assert drawn.x1 <= edge.x1 and drawn.y1 <= edge.y1
    offset = axes.yaxis.get_offset_text()
    if title and offset.get_text():
        (shown,) = figure.findobj(lambda a: isinstance(a, Text) and a.get_text() == title)
        assert shown.get_window_extent(renderer).y0 >= offset.get_window_extent(renderer).y1
