"""The third-party notebooks' scraps: nbci reads what `scrapbook.read_notebook` reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import scrapbook

from nbci.collect import Collected, collect_notebook
from nbci.model import Job

NOTEBOOKS = Path(__file__).parent / "notebooks"
STATS = ("last", "min", "max")

pytestmark = pytest.mark.kernel


def nbci_value(collected: Collected, name: str) -> Any:
    """What nbci made of a scrap: a metric, a scrap's value, a lone curve's points, or its
    figure's name."""
    if name in collected.metrics:
        return collected.metrics[name]
    if name in collected.scraps:
        return collected.scraps[name].value
    for group in collected.series:
        if group.name == name and len(group.series) == 1:
            return list(group.series[0].y)
    return next(f.name for f in collected.figures if f.name == name)


def names(collected: Collected) -> set[str]:
    """Every scrap nbci kept; a curve once, not its derived `.last`/`.min`/`.max` metrics."""
    curves = {group.name for group in collected.series}
    derived = {f"{s.name}.{end}" for g in collected.series for s in g.series for end in STATS}
    metrics = set(collected.metrics) - derived
    return {*metrics, *collected.scraps, *curves, *(f.name for f in collected.figures)}


def table_of(frame: Any) -> dict[str, Any]:
    """A DataFrame as nbci's table shows it: list cells as their values in JSON."""
    rows = [
        [json.dumps(cell.tolist()) if hasattr(cell, "tolist") else cell for cell in row]
        for row in frame.itertuples(index=False, name=None)
    ]
    return {"columns": list(frame.columns), "rows": rows, "total_rows": len(frame)}


@pytest.mark.parametrize("notebook", ["record_era", "scrapbook_current", "nbformat3"])
def test_every_scrap_scrapbook_reads_is_collected_with_its_value(
    notebook: str, tmp_path: Path, execute_notebook: Callable[[Path, Path], Path]
) -> None:
    executed = execute_notebook(NOTEBOOKS / f"{notebook}.ipynb", tmp_path / f"{notebook}.ipynb")
    collected = collect_notebook(executed, Job(id=notebook, path="x.ipynb"), tmp_path / "out")
    book = scrapbook.read_notebook(str(executed))

    assert collected.notes == ()
    assert names(collected) == set(book.scraps)
    for name, scrap in book.scraps.items():
        if scrap.encoder == "pandas":
            assert nbci_value(collected, name) == table_of(scrap.data)
        elif scrap.encoder != "display":  # displays: present above, shown as nbci shows them
            assert nbci_value(collected, name) == scrap.data, name


def test_record_era_values_figures_and_displays(
    tmp_path: Path, execute_notebook: Callable[[Path, Path], Path]
) -> None:
    executed = execute_notebook(NOTEBOOKS / "record_era.ipynb", tmp_path / "record_era.ipynb")
    collected = collect_notebook(executed, Job(id="old", path="old.ipynb"), tmp_path / "out")
    assert collected.metrics == {"accuracy": 0.875, "epochs": 30, "f1": 0.5}
    assert {k: (s.kind, s.value) for k, s in collected.scraps.items()} == {
        "model": ("text", "logistic regression"),
        "classes": ("json", ["cat", "dog"]),
        "config": ("json", {"penalty": "l2", "C": 0.5}),
    }
    (figure,) = collected.figures
    assert figure.path == "figures/old/curve.png"
    assert (tmp_path / "out" / figure.path).read_bytes().startswith(b"\x89PNG")


def test_lists_inside_a_pandas_scrap_are_values_not_numpy_reprs(
    tmp_path: Path, execute_notebook: Callable[[Path, Path], Path]
) -> None:
    executed = execute_notebook(NOTEBOOKS / "scrapbook_current.ipynb", tmp_path / "sb.ipynb")
    collected = collect_notebook(executed, Job(id="sb", path="sb.ipynb"), tmp_path / "out")
    assert collected.scraps["samples"].value["rows"] == [["a", '["foo", "bar"]'], ["b", '["baz"]']]
