"""report.html's changed code cells in headless chromium, at desktop and phone width.

The baseline's and this run's executed notebooks are written by hand (a
matplotlib PNG among the outputs); the page must load nothing, run nothing and
fit a phone. Screenshots of the section go to /tmp/nbci-code-desktop.png and
/tmp/nbci-code-phone.png, to be looked at.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path
from typing import Any

import nbformat
import pytest
from render_samples import sample_run
from test_browser import PHONE

from nbci.compare import compare
from nbci.model import Run
from nbci.render import write_reports

pytestmark = pytest.mark.browser


def chart(tint: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=72)
    ax.plot([0, 1, 2, 3], [0, tint, 1 + tint, 1.5])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def executed(sources: list[str], printed: str, tint: float) -> str:
    nb = nbformat.v4.new_notebook()
    for i, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source, execution_count=i + 1)
        cell.id = f"c{i}"
        if "print" in source:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
        if "plot" in source:
            cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": chart(tint)})]
        nb.cells.append(cell)
    text: str = nbformat.writes(nb)
    return text


BASE = [
    'lr = 0.1\nmodel = "logreg"',
    "import matplotlib.pyplot as plt",
    "scores = [0.91, 0.93, 0.95]\nprint(scores)",
    "plt.plot(scores)",
    "del scores",
]
HEAD = [
    'lr = 0.1\nmodel = "forest"',
    "import matplotlib.pyplot as plt",
    "scores = [0.91, 0.94, 0.97, 0.98]\nprint(scores)",
    'plt.plot(scores, marker="o")',
    'print("a new cell, with a line long enough that it has to wrap on a phone screen")',
]


def write_run(run: Run, folder: Path, sources: list[str], printed: str, tint: float) -> None:
    (folder / "notebooks").mkdir(parents=True, exist_ok=True)
    for nb in run.notebooks:
        if nb.output:
            (folder / nb.output).write_text(executed(sources, printed, tint))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code")
    out, base = root / "out", root / "base"
    run = sample_run()
    run = dataclasses.replace(run, notebooks=run.notebooks[:1])
    write_run(run, base, BASE, "[0.91, 0.93, 0.95]\n", 0.6)
    write_run(run, out, HEAD, "[0.91, 0.94, 0.97, 0.98]\n", 0.2)
    comparison = compare(run, run, label="main")
    write_reports(run, out, comparison=comparison, baseline=run, baseline_dir=base)
    return out / "report.html"


@pytest.mark.parametrize(("width", "name"), [(1280, "desktop"), (PHONE, "phone")])
def test_the_cell_diff_is_self_contained_and_fits(
    browser: Any,
    report: Path,
    width: int,
    name: str,
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.resolve().as_uri(), wait_until="load")
    section = page.locator("#code")
    section.screenshot(path=f"/tmp/nbci-code-{name}.png")
    labels = section.locator(".cell-label").all_inner_texts()
    images = section.locator("img").evaluate_all("els => els.map(i => i.naturalWidth)")
    scroll = page.evaluate("document.documentElement.scrollWidth")
    page.close()

    assert errors == []
    assert all(u == report.resolve().as_uri() or u.startswith("data:") for u in requests)
    assert labels == [
        "In [1] edited",
        "In [3] edited",
        "In [4] edited",
        "In [5] added",
        "In [5] removed (the baseline's)",
    ]
    assert len(images) == 3 and all(w > 0 for w in images)  # baseline | this run | difference
    assert scroll <= width
