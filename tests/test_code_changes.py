"""What changed in the notebook, and every parameter it ran with (issue 20).

Real notebook edits run in real kernels: a run of the base notebook, then one of
the edited notebook with `--baseline` the first; the reports must say which
parameters and which code cells changed, and nothing for outputs alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import write_notebook
from goldtest import check_gold
from render_samples import sample_run

from nbci.code_changes import changed_cells, diff_lines, summary
from nbci.config import load_config
from nbci.model import CodeChange, Parameter
from nbci.pipeline import RunRequest, run
from nbci.plan import parameter_defaults
from nbci.render import markdown_report
from nbci.render.diff import diff_json, diff_markdown
from nbci.render.visuals import visuals_by_job

PARAMETERS = 'lr = 0.1\nmodel = "logreg"'
CELLS = (
    "import scrapbook as sb",
    "x = lr * 10\nprint(x)",
    'sb.glue("score", x)',
    'print("end")',
)
NOTEBOOK = "notebooks/train.ipynb"


def runs(
    project: Path,
    head_cells: Sequence[str] = CELLS,
    *,
    head_parameters: str = PARAMETERS,
    overrides: dict[str, Any] | None = None,
    base_parameters: str = PARAMETERS,
) -> tuple[str, Any]:
    """Run the base notebook, then the edited one against it: (report.md, the outcome)."""
    write_notebook(project / NOTEBOOK, CELLS, parameters=base_parameters)
    config = load_config(project)
    run(config, RunRequest(out=project / "base-out", use_cache=False))
    write_notebook(project / NOTEBOOK, head_cells, parameters=head_parameters)
    request = RunRequest(
        out=project / "head-out",
        overrides=overrides or {},
        baseline=project / "base-out",
        use_cache=False,
    )
    outcome = run(config, request)
    assert [nb.status for nb in outcome.run.notebooks] == ["ok"]
    return (project / "head-out" / "report.md").read_text(encoding="utf-8"), outcome


@pytest.mark.kernel
def test_a_parameters_cell_edit_is_a_parameter_change_and_a_code_change(project: Path) -> None:
    report, _ = runs(project, head_parameters='lr = 0.1\nmodel = "forest"')

    assert 'train: model "logreg" (default) → "forest" (default)' in report
    assert "lr 0.1" not in report  # the same on both sides
    assert "- **train**: edited In \\[1\\]\n" in report
    assert '-model = "logreg"\n+model = "forest"' in report
    written = json.loads((project / "head-out" / "results.json").read_text())
    assert written["schema"] == "nbci.results/3"
    assert written["notebooks"][0]["effective_parameters"] == {
        "lr": {"source": "default", "value": 0.1},
        "model": {"source": "default", "value": "forest"},
    }


@pytest.mark.kernel
def test_a_p_override_names_the_default_it_replaced(project: Path) -> None:
    report, outcome = runs(project, overrides={"lr": 0.5})

    assert "Parameters differ from the baseline: train: lr 0.1 (default) → 0.5 (-p)" in report
    assert "(unset)" not in report
    assert "Code changes" not in report  # papermill's injected cell is not the notebook's code
    (nb,) = outcome.run.notebooks
    assert nb.effective_parameters["lr"] == Parameter(0.5, "injected", "-p")
    assert nb.effective_parameters["model"] == Parameter("logreg", "default")


@pytest.mark.kernel
def test_a_changed_cell_and_an_added_cell_are_named_by_their_in_numbers(project: Path) -> None:
    head = (CELLS[0], "x = lr * 100\nprint(x)", CELLS[2], 'print("new")', CELLS[3])

    report, _ = runs(project, head)

    assert "- **train**: edited In \\[3\\]; added In \\[5\\]\n" in report
    assert "@@ In [3] edited @@\n-x = lr * 10\n+x = lr * 100\n print(x)" in report
    assert '@@ In [5] added @@\n+print("new")' in report
    html = (project / "head-out" / "report.html").read_text(encoding="utf-8")
    assert 'id="code"' in html and "In [3] edited" in html
    assert '<td class="del">1.0</td><td class="ins">10.0</td>' in html  # its output
    assert "<script" not in html


@pytest.mark.kernel
def test_a_moved_cell_is_moved_not_removed_and_added(project: Path) -> None:
    head = (CELLS[3], *CELLS[:3])

    report, outcome = runs(project, head)

    assert "- **train**: moved In \\[2\\] (was In \\[5\\])\n" in report
    text = diff_markdown(outcome.comparison, code=_code(project))
    assert "moved In \\[2\\] (was In \\[5\\])" in text
    (change,) = diff_json(outcome.comparison, code=_code(project))["code_changes"]
    assert change["cells"] == [
        {
            "kind": "moved",
            "number": 2,
            "baseline_number": 5,
            "diff": '@@ In [2] moved (was In [5]) @@\n print("end")',
        }
    ]


@pytest.mark.kernel
def test_an_output_only_change_is_no_code_change(project: Path) -> None:
    cells = ("import time", "print(time.time_ns())")
    write_notebook(project / NOTEBOOK, cells, parameters=PARAMETERS)
    config = load_config(project)
    run(config, RunRequest(out=project / "base-out", use_cache=False))
    outcome = run(
        config,
        RunRequest(out=project / "head-out", baseline=project / "base-out", use_cache=False),
    )

    report = (project / "head-out" / "report.md").read_text(encoding="utf-8")
    assert "Code changes" not in report and "Parameters differ" not in report
    assert _code(project) == ()
    base = json.loads((project / "base-out" / "notebooks" / "train.ipynb").read_text())
    head = json.loads((project / "head-out" / "notebooks" / "train.ipynb").read_text())
    assert base["cells"][-1]["outputs"] != head["cells"][-1]["outputs"]  # outputs did change
    assert outcome.comparison is not None and outcome.comparison.parameters == ()


@pytest.mark.kernel
def test_a_parameters_cell_with_a_magic_is_read_as_ipython_runs_it(project: Path) -> None:
    magic = '%matplotlib inline\nlr = 0.1\nmodel = "logreg"\nsteps = len("abc")'

    report, outcome = runs(
        project, head_parameters=magic, base_parameters=magic, overrides={"lr": 0.2}
    )

    assert "train: lr 0.1 (default) → 0.2 (-p)" in report
    (nb,) = outcome.run.notebooks
    assert nb.effective_parameters["steps"] == Parameter('len("abc")', "default", expression=True)
    assert "Code changes" not in report


def _code(project: Path) -> tuple[CodeChange, ...]:
    from nbci.code_changes import code_changes, notebook_reader
    from nbci.results import read_run

    head, base = project / "head-out", project / "base-out"
    return code_changes(
        read_run(head), read_run(base), notebook_reader(head), notebook_reader(base)
    )


# -- without kernels ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('lr = 0.1\nmodel = "svc"', {"lr": 0.1, "model": "svc"}),
        (
            "a = b = 2\nc, d = 3, [4, (5, 6)]\nn: int = 7",
            {"a": 2, "b": 2, "c": 3, "d": [4, [5, 6]], "n": 7},
        ),
        ("lr = 0.1\nlr = 0.2", {"lr": 0.2}),
        ("%matplotlib inline\nx = -1", {"x": -1}),
        ("if True:\n    hidden = 1\nnothing = None", {"nothing": None}),
        ("broken = (", {}),
    ],
)
def test_the_defaults_a_parameters_cell_gives(
    project: Path, source: str, expected: dict[str, Any]
) -> None:
    path = write_notebook(project / NOTEBOOK, ["pass"], parameters=source)
    defaults = parameter_defaults(path)
    assert {name: p.value for name, p in defaults.items()} == expected
    assert all(p.source == "default" and not p.expression for p in defaults.values())


def test_a_default_that_is_no_literal_is_kept_as_its_code(project: Path) -> None:
    source = 'import numpy as np\ngrid = np.arange(3)\nhalf = float("nan")\nbig = {1, 2}'
    path = write_notebook(project / NOTEBOOK, ["pass"], parameters=source)
    assert parameter_defaults(path) == {
        "grid": Parameter("np.arange(3)", "default", expression=True),
        "half": Parameter('float("nan")', "default", expression=True),
        "big": Parameter("{1, 2}", "default", expression=True),
    }


def test_texts_are_diffed_line_by_line_removed_before_added() -> None:
    assert diff_lines("a\nb\nc", "a\nB\nc\nd") == (
        (" ", "a"), ("-", "b"), ("+", "B"), (" ", "c"), ("+", "d"),
    )  # fmt: skip
    assert diff_lines("", "x") == (("+", "x"),)
    assert diff_lines("same\n", "same") == ((" ", "same"),)
    assert diff_lines("a = 1\nb = 2\nc", "a = 10\nb = 20\nc") == (
        ("-", "a = 1"), ("-", "b = 2"), ("+", "a = 10"), ("+", "b = 20"), (" ", "c"),
    )  # fmt: skip


def _cells(*sources: str, injected: str | None = None) -> list[dict[str, Any]]:
    cells = [nbformat.v4.new_code_cell(s, execution_count=i + 1) for i, s in enumerate(sources)]
    if injected is not None:
        cells.insert(
            1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]})
        )
    return [dict(cell) for cell in cells]


def test_injected_parameters_metadata_and_markdown_are_not_code() -> None:
    base = _cells("lr = 0.1", "print(lr)")
    head = _cells("lr = 0.1", "print(lr)", injected="lr = 0.5")
    head[2]["metadata"] = {"tags": ["keep"], "collapsed": True}
    head[2]["outputs"] = [nbformat.v4.new_output("stream", name="stdout", text="other\n")]
    head.append(dict(nbformat.v4.new_markdown_cell("# Notes")))
    assert changed_cells(head, base) == ()


def code_change() -> CodeChange:
    """A notebook whose parameters, a cell and the order changed, one cell added, one removed."""
    base = _cells(
        'lr = 0.1\nmodel = "logreg"',
        "import scrapbook as sb",
        "x = lr * 10\nprint(x)",
        "# a table\nimport pandas as pd",
        'sb.glue("score", x)',
        'print("done")',
    )
    head = _cells(
        'lr = 0.1\nmodel = "forest"',
        'print("done")',
        "import scrapbook as sb",
        "x = lr * 100\nprint(x)",
        'sb.glue("score", x)',
        'sb.glue("x10", x * 10)',
    )
    return CodeChange("train", changed_cells(head, base))


def test_the_changed_code_comment_golden() -> None:
    change = code_change()
    assert summary(change) == (
        "edited In [1], In [4]; added In [6]; moved In [2] (was In [6]); "
        "removed In [4] of the baseline"
    )
    run = sample_run()
    visuals = visuals_by_job((), (), (CodeChange(run.notebooks[0].id, change.cells),))
    check_gold("report_code.md", markdown_report(run, visuals=visuals))


def test_a_long_diff_is_cut_in_the_comment_and_says_the_rest_is_in_the_html() -> None:
    base = _cells("\n".join(f"a{i} = {i}" for i in range(2_000)))
    head = _cells("\n".join(f"b{i} = {i}" for i in range(2_000)))
    run = sample_run()
    change = CodeChange(run.notebooks[0].id, changed_cells(head, base))
    text = markdown_report(run, visuals=visuals_by_job((), (), (change,)))
    assert "more lines of this diff in report.html" in text
    assert len(text) < 65_000


def test_a_rewritten_notebook_is_listed_cell_by_cell_without_aligning_every_pair() -> None:
    """Past `MAX_STRICT_PAIRS` the changed region is not aligned: the time would grow with
    the square of the cells."""
    base = _cells(*(f"a{i} = {i}" for i in range(250)))
    head = _cells(*(f"b{i} = {i}" for i in range(250)))
    kinds = [cell.kind for cell in changed_cells(head, base)]
    assert kinds.count("added") == 250 and kinds.count("removed") == 250


def test_each_parameter_says_what_injected_it(project: Path) -> None:
    from nbci.plan import plan

    write_notebook(project / NOTEBOOK, ["pass"], parameters='lr = 0.1\nmodel = "logreg"\nseed = 0')
    (project / "nbci.toml").write_text(
        "parameters = { seed = 1 }\n"
        '[[notebook]]\npath = "notebooks/train.ipynb"\nmatrix = { lr = [0.1, 1.0] }\n'
    )
    first, _ = plan(load_config(project), overrides={"model": "svc"}).jobs
    assert dict(first.effective) == {
        "lr": Parameter(0.1, "injected", "matrix"),
        "model": Parameter("svc", "injected", "-p"),
        "seed": Parameter(1, "injected", "config"),
    }


def test_a_baseline_of_before_3_names_what_it_did_not_record_as_default() -> None:
    from dataclasses import replace

    from nbci.compare import compare

    old = sample_run()
    train = old.notebooks[0]
    base = replace(old, notebooks=(replace(train, parameters={}, effective_parameters={}),))
    effective = {
        "lr": Parameter(0.1, "default"),
        "model": Parameter("svc", "injected", "-p"),
    }
    head = replace(
        old,
        notebooks=(replace(train, parameters={"model": "svc"}, effective_parameters=effective),),
    )
    (change,) = compare(head, base, label="main").parameters
    assert (change.name, change.baseline, change.baseline_origin) == ("model", None, "default")
    assert (change.value, change.origin) == ('"svc"', "-p")


def test_hostile_sources_and_notebooks_stay_inert(tmp_path: Path) -> None:
    from nbci.code_changes import code_changes, notebook_reader

    hostile = "```\n</details><script>alert(1)</script> @team #12\n```"
    change = CodeChange("train-lr-0.1", changed_cells(_cells(hostile), _cells("x = 1")))
    run = sample_run()
    text = markdown_report(run, visuals=visuals_by_job((), (), (change,)))
    code = text.split("#### Code changes")[1].split("#### Failures")[0]
    fence_start = code.index("````diff\n")  # the fence outgrew the source's backticks
    fence_end = code.index("\n````\n", fence_start)
    outside = code[:fence_start] + code[fence_end:]
    assert "<script>" not in outside and outside.count("</details>") == 1
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "train-lr-0.1.ipynb").write_text('{"cells": 7}')
    (tmp_path / "notebooks" / "train-lr-1.ipynb").symlink_to("/etc/passwd")
    read = notebook_reader(tmp_path)
    assert read("notebooks/train-lr-1.ipynb") is None
    assert code_changes(run, run, read, read) == ()
