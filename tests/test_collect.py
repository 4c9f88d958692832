"""nbci.collect: every scrap kind from real executed notebooks, bounds on hostile ones, HTML."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from scrapbook_outputs import scrap, shown

from nbci import collect, scrap_outputs
from nbci.collect import Collected, collect_notebook
from nbci.errors import ResultsError
from nbci.model import Job, NotebookResult
from nbci.render.notebook_html import render_notebook_html
from nbci.results import new_run, read_run, write_run

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "notebooks"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_PNG = (  # 1×1 pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


Executed = tuple[Path, Collected, Path]
"""The executed notebook, what was collected from it, and the output directory."""


def files_below(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# -- scraps glued with scrapbook itself, in a real kernel ----------------------------


@pytest.fixture(scope="module")
def scrapbook_run(
    tmp_path_factory: pytest.TempPathFactory, execute_notebook: Callable[[Path, Path], Path]
) -> Executed:
    """collect_scrapbook.ipynb executed once, collected into `<tmp>/out`."""
    folder = tmp_path_factory.mktemp("scrapbook")
    executed = execute_notebook(FIXTURES / "collect_scrapbook.ipynb", folder / "executed.ipynb")
    out_dir = folder / "out"
    job = Job(id="sb", path="collect_scrapbook.ipynb")
    return executed, collect_notebook(executed, job, out_dir), out_dir


@pytest.mark.kernel
def test_numbers_bools_and_dicts_become_metrics(
    scrapbook_run: Executed,
) -> None:
    metrics = scrapbook_run[1].metrics

    assert metrics["accuracy"] == 0.93
    assert metrics["epochs"] == 12
    assert metrics["converged"] is True
    assert math.isnan(metrics["loss"])  # scrapbook stored null for NaN
    assert metrics["scores.f1"] == 0.8
    assert metrics["scores.per_class.a"] == 1
    assert metrics["scores.per_class.b"] == 0.5
    assert metrics["shown"] == 3  # the data wins over its display
    assert metrics["np_display"] == 0.25  # parsed from "np.float64(0.25)"
    assert "scores" not in metrics and "mixed.f1" not in metrics


@pytest.mark.kernel
def test_other_data_scraps(scrapbook_run: Executed) -> None:
    _, collected, _ = scrapbook_run
    scraps = collected.scraps

    assert (scraps["mixed"].kind, scraps["mixed"].value) == ("json", {"f1": 0.8, "label": "best"})
    assert "layers" not in scraps  # a list of numbers is a series (scrapbook.glue too)
    assert [g.series[0].y for g in collected.series if g.name == "layers"] == [(64, 32, 10)]
    assert collected.metrics["layers.last"] == 10
    assert (scraps["notes"].kind, scraps["notes"].value) == ("text", "trained on\ndigits")
    assert scraps["big_text"].kind == "text"
    assert len(scraps["big_text"].value) == collect.MAX_TEXT_CHARS
    assert "'big_text': text trimmed from 150000 to 100000 characters" in collected.notes
    frame = scraps["frame"]  # scrapbook's own parquet encoding of a DataFrame
    assert frame.kind == "table"
    assert frame.value["columns"] == ["x", "y"]
    assert frame.value["rows"][:2] == [[0, "a"], [1, "a"]]
    assert (len(frame.value["rows"]), frame.value["total_rows"]) == (1000, 1500)
    assert "'frame': kept 1000 of 1500 rows" in collected.notes


@pytest.mark.kernel
def test_display_scraps(scrapbook_run: Executed) -> None:
    _, collected, out_dir = scrapbook_run
    scraps = collected.scraps
    figures = {f.name: f.path for f in collected.figures}

    assert figures["inline_fig"] == "figures/sb/inline_fig.png"
    assert (out_dir / figures["inline_fig"]).read_bytes().startswith(PNG_SIGNATURE)
    assert figures["diagram"] == "figures/sb/diagram.svg"
    assert (out_dir / figures["diagram"]).read_text().startswith("<svg")
    assert (scraps["banner"].kind, scraps["banner"].value) == ("html", "<b>hi</b>")
    # Kept raw: the renderers sanitize untrusted HTML.
    assert scraps["html_only"].value == "<i>only html</i><script>alert(1)</script>"
    assert (scraps["plain_only"].kind, scraps["plain_only"].value) == ("text", "just some text")


@pytest.mark.kernel
def test_figure_names_cannot_leave_the_output_directory(
    scrapbook_run: Executed,
) -> None:
    _, collected, out_dir = scrapbook_run
    figures = {f.name: f.path for f in collected.figures}

    for name in ("../../escape", "a/b/c"):
        path = figures[name]
        assert path.startswith("figures/sb/") and path.count("/") == 2 and ".." not in path
        assert (out_dir / path).read_bytes().startswith(PNG_SIGNATURE)
    assert {path.split("/")[0] for path in files_below(out_dir.parent)} == {"executed.ipynb", "out"}


@pytest.mark.kernel
def test_invalid_png_is_skipped_with_a_note(scrapbook_run: Executed) -> None:
    _, collected, out_dir = scrapbook_run

    assert "broken_png" not in {f.name for f in collected.figures}
    assert not any("broken_png" in path for path in files_below(out_dir))
    assert "'broken_png': skipped image/png figure, not a PNG image" in collected.notes


@pytest.mark.kernel
def test_notebook_html_is_sanitized(scrapbook_run: Executed) -> None:
    executed, _, out_dir = scrapbook_run
    html_path = out_dir / "notebooks" / "sb.html"

    render_notebook_html(executed, html_path)

    html = html_path.read_text()
    assert "<script>alert(1)" not in html  # sanitized output; the source cell is escaped
    assert "&lt;script&gt;alert(1)" in html
    assert "data:image/png;base64," in html
    assert "application/scrapbook" not in html


# -- hand-made notebooks: bounds and odd content, no kernel needed ----------------------


def write_outputs(path: Path, *outputs: dict[str, Any]) -> Path:
    """A one-cell executed notebook holding `outputs` (written as raw JSON, unvalidated)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("pass")
    cell.outputs = list(outputs)
    nb.cells = [cell]
    path.write_text(json.dumps(nb))
    return path


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"d": value}
    return value


def test_bounds_on_hostile_values(tmp_path: Path) -> None:
    long_name = "n" * 300 + "\u202e"
    notebook = write_outputs(
        tmp_path / "hostile.ipynb",
        scrap("deep", nested(50)),
        scrap(long_name, 1.0),
        scrap("huge_text", "y" * 10_000_000, encoder="text"),
        scrap("huge_json", [str(i) for i in range(100_000)]),
        scrap("nul\x00name", 2),
        scrap("many", {f"m{i}": i for i in range(10_000)}),
    )

    collected = collect_notebook(notebook, Job(id="h", path="h.ipynb"), tmp_path / "out")

    assert len(collected.metrics) == collect.MAX_METRICS
    assert any("dropped" in note and "metrics" in note for note in collected.notes)
    assert collected.scraps["deep"].kind == "text"  # too deep for metrics or json
    assert any("'deep': nested deeper than" in note for note in collected.notes)
    shortened = [name for name in collected.metrics if name.startswith("nnn")]
    assert len(shortened) == 1 and len(shortened[0]) == collect.MAX_NAME_CHARS
    assert len(collected.scraps["huge_text"].value) == collect.MAX_TEXT_CHARS
    assert collected.scraps["huge_json"].kind == "text"
    assert len(collected.scraps["huge_json"].value) == collect.MAX_JSON_CHARS
    assert len(collected.notes) <= scrap_outputs.MAX_NOTES + 1

    # What collect keeps, results.json keeps: the untrusted reader accepts it.
    result = NotebookResult(
        id="h",
        path="h.ipynb",
        parameters={},
        status="ok",
        metrics=collected.metrics,
        scraps=collected.scraps,
        figures=collected.figures,
        notes=collected.notes,
    )
    run = read_run(write_run(new_run([result], tmp_path), tmp_path / "out"))
    assert run.notebooks[0].scraps["huge_text"] == collected.scraps["huge_text"]
    assert run.notebooks[0].metrics["nul\x00name"] == 2


def test_a_huge_series_is_downsampled_and_survives_results_json(tmp_path: Path) -> None:
    notebook = write_outputs(
        tmp_path / "curves.ipynb",
        scrap("huge", "[" + ", ".join(["1.5", "NaN", "Infinity"] * 200_000) + "]"),
        *(scrap(f"g{i}", {f"s{j}": [j] for j in range(50)}) for i in range(5)),
    )

    collected = collect_notebook(notebook, Job(id="c", path="c.ipynb"), tmp_path / "out")

    (huge, *groups) = collected.series
    assert huge.series[0].points == 600_000 and len(huge.series[0].y) <= 2000
    assert collected.metrics["huge.max"] == 1.5 and math.isinf(collected.metrics["huge.last"])
    assert sum(len(g.series) for g in groups) == collect.MAX_SERIES - 1 - 49
    assert "'g4': skipped, more than 200 series" in collected.notes


def test_odd_payloads_become_notes_and_spare_the_rest(tmp_path: Path) -> None:
    notebook = write_outputs(
        tmp_path / "odd.ipynb",
        scrap("first", 1),
        {"output_type": "display_data", "data": {"application/scrapbook.scrap.json+json": 3}},
        scrap("custom", "AAAA", encoder="arrow"),
        scrap("bad_frame", "not parquet", encoder="pandas"),
        scrap("stringly", '{"a": 1, "b": [2]}'),  # scrapbook parses JSON held in a string
        scrap("old_nan", "nan"),
        shown("jpeg", {"image/jpeg": "/9j/4AAQ"}),
        shown("not_svg", {"image/svg+xml": "<html>no</html>"}),
        shown("bad_base64", {"image/png": "%%%"}),
        shown("lines", {"text/plain": ["np.True_"]}),
        scrap("huge_ints", {"big": 10**30, "bigger": -(10**400)}),
        scrap("last", 2),
    )

    collected = collect_notebook(notebook, Job(id="odd", path="odd.ipynb"), tmp_path / "out")

    assert collected.metrics["first"] == 1 and collected.metrics["last"] == 2
    assert collected.scraps["stringly"].value == {"a": 1, "b": [2]}
    assert math.isnan(collected.metrics["old_nan"])
    assert collected.metrics["lines"] is True
    assert collected.metrics["huge_ints.big"] == 1e30
    assert collected.metrics["huge_ints.bigger"] == -math.inf
    assert collected.figures == ()
    notes = "\n".join(collected.notes)
    for expected in (
        "malformed scrapbook payload",
        "'custom': skipped, unknown scrapbook encoder 'arrow'",
        "'bad_frame': could not read the pandas scrap",
        "'jpeg': skipped a display",
        "'not_svg': skipped image/svg+xml figure, not an SVG image",
        "'bad_base64': skipped image/png figure, not valid base64",
    ):
        assert expected in notes


def test_figures_stay_inside_for_any_job_id_and_are_bounded(tmp_path: Path) -> None:
    outputs = [shown(f"f{i}", {"image/png": TINY_PNG}) for i in range(collect.MAX_FIGURES + 3)]
    notebook = write_outputs(tmp_path / "figs.ipynb", *outputs)
    out_dir = tmp_path / "deep" / "out"

    collected = collect_notebook(notebook, Job(id="../../evil", path="x.ipynb"), out_dir)

    assert len(collected.figures) == collect.MAX_FIGURES
    assert sum("more than 100 figures" in note for note in collected.notes) == 3
    assert {p.name for p in (tmp_path / "deep").iterdir()} == {"out"}
    assert all(
        base64.b64encode((out_dir / f.path).read_bytes()).decode() == TINY_PNG
        for f in collected.figures
    )


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"cells": 3}'])
def test_unreadable_notebook_is_a_note(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_bytes(content)

    collected = collect_notebook(path, Job(id="b", path="b.ipynb"), tmp_path / "out")

    assert (collected.metrics, collected.scraps, collected.figures) == ({}, {}, ())
    assert len(collected.notes) == 1


def test_missing_notebook_is_a_note(tmp_path: Path) -> None:
    collected = collect_notebook(tmp_path / "gone.ipynb", Job(id="g", path="g"), tmp_path)

    assert "could not read the executed notebook" in collected.notes[0]


def test_html_of_a_huge_output_is_trimmed(tmp_path: Path) -> None:
    stream = nbformat.v4.new_output("stream", name="stdout", text="z" * 5_000_000)
    notebook = write_outputs(tmp_path / "loud.ipynb", stream, scrap("x", 1))

    render_notebook_html(notebook, tmp_path / "loud.html")

    html = (tmp_path / "loud.html").read_text()
    assert len(html) < 2_000_000
    assert "characters trimmed by nbci" in html


def test_html_of_an_unreadable_notebook_raises(tmp_path: Path) -> None:
    (tmp_path / "bad.ipynb").write_text("{nope")

    with pytest.raises(ResultsError, match="cannot render as HTML"):
        render_notebook_html(tmp_path / "bad.ipynb", tmp_path / "bad.html")
    assert not (tmp_path / "bad.html").exists()


# -- the bundled example notebooks ------------------------------------------------------


@pytest.mark.kernel
def test_bundled_notebooks_produce_sane_results(
    tmp_path: Path, execute_notebook: Callable[[Path, Path], Path]
) -> None:
    results = {}
    for name in ("train", "data_profile"):
        executed = execute_notebook(
            ROOT / "notebooks" / f"{name}.ipynb", tmp_path / f"{name}.ipynb"
        )
        results[name] = collect_notebook(executed, Job(id=name, path=name), tmp_path / "out")

    train = results["train"]
    assert train.notes == ()
    assert 0.8 < train.metrics["accuracy"] <= 1.0
    assert 0.8 < train.metrics["f1_macro"] <= 1.0
    assert train.metrics["train_time_s"] > 0
    per_class = train.scraps["per_class"].value
    assert per_class["columns"] == ["digit", "precision", "recall", "f1", "support"]
    assert [row[0] for row in per_class["rows"]] == list(range(10))
    assert {f.name for f in train.figures} == {"confusion_matrix", "learning_curve"}

    profile = results["data_profile"]
    assert profile.notes == ()
    assert profile.metrics["dataset.n_samples"] == 1797
    assert profile.metrics["dataset.n_features"] == 64
    assert profile.metrics["missing_values"] == 0
    assert 1.0 <= profile.metrics["class_imbalance_ratio"] < 1.2
    assert profile.scraps["class_balance"].value["total_rows"] == 10
    assert profile.scraps["pixel_stats"].value["total_rows"] == 64
    assert {f.name for f in profile.figures} == {"class_histogram", "sample_digits"}

    for collected in results.values():
        for figure in collected.figures:
            assert (tmp_path / "out" / figure.path).read_bytes().startswith(PNG_SIGNATURE)


def test_myst_nb_glue_gives_metrics_figures_and_texts(tmp_path: Path) -> None:
    prefix = "application/papermill.record/"

    def glue(name: str, bundle: dict[str, Any], prefix: str = prefix) -> dict[str, Any]:
        """What `myst_nb.glue(name, value, display=not prefix)` writes."""
        return {
            "output_type": "display_data",
            "data": {prefix + mime: value for mime, value in bundle.items()},
            "metadata": {"scrapbook": {"name": name, "mime_prefix": prefix}},
        }

    notebook = write_outputs(
        tmp_path / "myst.ipynb",
        glue("accuracy", {"text/plain": "np.float64(0.93)"}),
        glue("epochs", {"text/plain": "12"}, prefix=""),
        glue("plot", {"image/png": TINY_PNG, "text/plain": "<Figure size 640x480>"}),
        glue("model", {"text/plain": "LogisticRegression(C=0.5)"}),
    )
    collected = collect_notebook(notebook, Job(id="m", path="m.ipynb"), tmp_path / "out")

    assert collected.notes == ()
    assert collected.metrics == {"accuracy": 0.93, "epochs": 12}
    assert [f.name for f in collected.figures] == ["plot"]
    assert collected.scraps["model"].value == "LogisticRegression(C=0.5)"
