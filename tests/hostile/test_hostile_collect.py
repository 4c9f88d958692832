"""Property tests over what a notebook can glue, through `collect` (no kernels).

The executed notebook is written by hand in scrapbook's format (data outputs
`application/scrapbook.scrap.<encoder>+json` and display outputs marked with
`metadata.scrapbook`), with names and values drawn by hypothesis: any text
(lone surrogates, controls, bidi marks, path syntax), numbers past every
limit, deep nesting, odd mime bundles and malformed payloads.

Whatever the notebook holds: collect never raises, keeps its bounds, writes
figures only below `out/figures/<job>/` under safe file names, and what it
returns is written to results.json, read back unchanged, and rendered within
the report's size limit.
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scrapbook_outputs import scrap, shown

from nbci import collect, scrap_outputs
from nbci.collect import collect_notebook
from nbci.model import Job, NotebookResult
from nbci.render import markdown_report
from nbci.render.markdown import MAX_CHARS
from nbci.results import new_run, read_run, run_to_dict, write_run

from .test_hostile_results import outside_code_blocks

SAFE_PART = re.compile(r"[A-Za-z0-9._-]+")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40)
hostile_names = st.sampled_from(
    [
        "../../../x",
        "/etc/passwd",
        "a/b",
        "nul\x00",
        "n" * 300,
        "\u202eevil",
        "\ud800lone",
        "",
        ".",
        "..",
        "<script>alert(1)</script>",
        "| a | b |",
        "@team #1",
        "CON",
        "x.png",
    ]
)
names = hostile_names | any_text
numbers = (
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(2**64), 2**63, 1e308, -0.0, True])
    | st.integers()
    | st.floats()
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | names,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(names, children, max_size=5),
    max_leaves=25,
)


def deep(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"k": leaf}
    return leaf


values = json_values | st.builds(deep, st.integers(0, 60), numbers | names)


png_payloads = st.sampled_from(
    [
        base64.b64encode(PNG).decode(),
        "not base64 !!!",
        "",
        base64.b64encode(b"GIF89a" + bytes(20)).decode(),
        base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(),
    ]
) | st.text(max_size=20)
bundles = st.fixed_dictionaries(
    {},
    optional={
        "image/png": png_payloads | st.lists(st.text(max_size=5), max_size=3),
        "image/svg+xml": st.sampled_from(["<svg onload=alert(1)></svg>", "<html></html>"]),
        "text/html": st.sampled_from(["<script>alert(1)</script>", "<b>x</b>"]) | any_text,
        "text/plain": names | st.sampled_from(["0.5", "np.float64(nan)", "np.True_"]),
        "application/json": json_values,
    },
)
outputs = st.one_of(
    st.builds(scrap, names, values, st.just("json")),
    st.builds(scrap, names, names, st.just("text")),
    st.builds(scrap, names, values, st.sampled_from(["pandas", "arrow", ""])),
    st.builds(shown, names, bundles),
    st.builds(scrap, json_values, json_values, st.just("json")),  # a name that is no str
    json_values.map(lambda v: {"output_type": "display_data", "data": v, "metadata": {}}),
    json_values,  # not even an output
)


def write_notebook(path: Path, cells: list[list[Any]]) -> Path:
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "code", "source": "", "metadata": {}, "outputs": outs} for outs in cells
        ],
    }
    path.write_text(json.dumps(notebook, allow_nan=True))  # NaN, \ud800: as any JSON may hold
    return path


def collected_result(job_id: str, notebook: Path, out: Path) -> NotebookResult:
    found = collect_notebook(notebook, Job(id=job_id, path="x.ipynb"), out)
    assert len(found.metrics) <= collect.MAX_METRICS
    assert len(found.scraps) <= collect.MAX_SCRAPS
    assert len(found.figures) <= collect.MAX_FIGURES
    assert len(found.notes) <= scrap_outputs.MAX_NOTES + 1
    assert all(isinstance(v, int | float) for v in found.metrics.values())
    return NotebookResult(
        id=job_id,
        path="x.ipynb",
        parameters={},
        status="ok",
        metrics=found.metrics,
        scraps=found.scraps,
        figures=found.figures,
        notes=found.notes,
    )


def check_files(out: Path, result: NotebookResult) -> None:
    """Figures only below out/figures/<job>/, every part of every path a safe name."""
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.relative_to(out).as_posix() for p in written} == {f.path for f in result.figures}
    for path in written:
        relative = path.relative_to(out)
        assert relative.parts[0] == "figures" and len(relative.parts) == 3
        assert all(SAFE_PART.fullmatch(part) and part not in (".", "..") for part in relative.parts)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(outputs, max_size=6), max_size=4), st.sampled_from(["job", "../../j"]))
def test_any_glued_outputs_are_collected_safely_and_round_trip(
    tmp_path_factory: pytest.TempPathFactory, cells: list[list[Any]], job_id: str
) -> None:
    folder = tmp_path_factory.mktemp("collect")
    notebook = write_notebook(folder / "executed.ipynb", cells)
    out = folder / "out"

    if job_id != "job":  # a job id that is a path: collect still stays inside
        collect_notebook(notebook, Job(id=job_id, path="x.ipynb"), out)
        assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    else:
        result = collected_result("job", notebook, out)
        check_files(out, result)
        run = new_run([result], folder)
        again = read_run(write_run(run, out))
        assert json.dumps(run_to_dict(again), sort_keys=True) == json.dumps(
            run_to_dict(run), sort_keys=True
        )


@settings(max_examples=examples(80), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(names, min_size=1, max_size=30), values)
def test_any_names_and_values_render_within_bounds(
    tmp_path_factory: pytest.TempPathFactory, glued_names: list[str], value: Any
) -> None:
    folder = tmp_path_factory.mktemp("render")
    outs = [scrap(name, value, "json") for name in glued_names]
    outs += [shown(name, {"image/png": base64.b64encode(PNG).decode()}) for name in glued_names]
    result = collected_result("job", write_notebook(folder / "nb.ipynb", [outs]), folder / "out")

    markdown = markdown_report(new_run([result], folder))

    assert len(markdown) <= MAX_CHARS
    markdown.encode("utf-8")  # no lone surrogate reached the report
    assert "<script" not in outside_code_blocks(markdown)
    assert "\x00" not in markdown and "\u202e" not in markdown


def test_lone_surrogates_in_names_and_values_become_replacement_characters(
    tmp_path: Path,
) -> None:
    """Found by the properties above: `"\\ud800"` in a notebook's JSON reached results.json,
    whose UTF-8 writer (and every renderer) then failed, losing the whole run."""
    cells = [
        [
            scrap("acc\ud800", 1, "json"),
            scrap("nested", {"k\udfff": 2}, "json"),
            scrap("text", "v\ud800", "text"),
            scrap("blob", ["\udc00", {"\ud800": "x"}], "json"),
            shown("fig\ud800", {"image/png": base64.b64encode(PNG).decode()}),
        ]
    ]
    result = collected_result("job", write_notebook(tmp_path / "nb.ipynb", cells), tmp_path / "o")

    assert result.metrics == {"acc\ufffd": 1, "nested.k\ufffd": 2}
    assert result.scraps["text"].value == "v\ufffd"
    assert result.scraps["blob"].value == ["\ufffd", {"\ufffd": "x"}]
    assert [f.name for f in result.figures] == ["fig\ufffd"]
    read_run(write_run(new_run([result], tmp_path), tmp_path / "o"))
