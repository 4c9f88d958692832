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
from conftest import examples, write_notebook
from goldtest import check_gold
from hypothesis import given, settings
from hypothesis import strategies as st
from render_samples import sample_run

from nbci._alignment import Budget, align
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


# -- aligning the cells (nbci._alignment) ---------------------------------------------


def aligned(base: Sequence[str], head: Sequence[str]) -> list[tuple[str, int | None, int | None]]:
    """What changed between two notebooks of these code cells: (kind, In [N], the baseline's)."""
    return [
        (cell.kind, cell.number, cell.baseline_number)
        for cell in changed_cells(_cells(*head), _cells(*base))
    ]


def test_an_edited_cell_is_paired_with_its_baseline_beside_an_inserted_one() -> None:
    base = ["import numpy as np", "data = np.loadtxt('train.csv')\nprint(data.shape)", "fit(data)"]
    head = [
        base[0],
        "print('loading')",
        "data = np.loadtxt('train.csv', delimiter=',')\nprint(data.shape)",
        base[2],
    ]
    assert aligned(base, head) == [("added", 2, None), ("edited", 3, 2)]
    (_, edited) = changed_cells(_cells(*head), _cells(*base))
    assert edited.source == (
        ("-", "data = np.loadtxt('train.csv')"),
        ("+", "data = np.loadtxt('train.csv', delimiter=',')"),
        (" ", "print(data.shape)"),
    )


def test_an_edited_cell_is_paired_with_the_most_alike_of_similar_cells() -> None:
    base = ["X, y = load()", "model = fit(X_train, y_train, epochs=10, seed=0)", "score(model)"]
    head = [
        base[0],
        "model = fit(X_train, y_train, epochs=20, seed=0)",
        "model = fit(X_train, y_train, epochs=20, seed=0, lr=0.5, batch=64)",
        base[2],
    ]
    assert aligned(base, head) == [("edited", 2, 2), ("added", 3, None)]
    assert aligned(base, [head[0], head[2], head[1], head[3]]) == [
        ("added", 2, None),
        ("edited", 3, 2),
    ]


def test_cells_inserted_or_removed_in_the_middle_are_only_those() -> None:
    base = [f"step_{i} = run({i}, data)" for i in range(6)]
    inserted = [*base[:3], "plot(step_2)", "check(step_2, expected)", *base[3:]]
    assert aligned(base, inserted) == [("added", 4, None), ("added", 5, None)]
    assert aligned(base, [*base[:2], *base[4:]]) == [("removed", None, 3), ("removed", None, 4)]


def test_reordered_cells_are_moved_and_the_others_unchanged() -> None:
    base = ["import pandas as pd", "df = pd.read_csv(path)", "df = df.dropna()", "df.describe()"]
    assert aligned(base, [base[0], base[3], base[1], base[2]]) == [("moved", 2, 4)]
    assert aligned(base, [base[1], base[0], *base[2:]]) == [("moved", 1, 2)]  # one of the two
    moved_and_edited = [base[0], "df.describe(include='all')", base[1], base[2]]
    assert aligned(base, moved_and_edited) == [("added", 2, None), ("removed", None, 4)]


def test_among_many_identical_cells_only_the_changed_ones_are_named() -> None:
    base = [
        cell for i in range(10) for cell in (f"ax.plot(series[{i}], label='{i}')", "plt.show()")
    ]
    head = [*base[:8], *base[10:]]  # the fifth plot and its show removed
    head[12] = head[12].replace("label='7'", "label='seven'")
    assert aligned(base, head) == [
        ("removed", None, 9),
        ("removed", None, 10),
        ("edited", 13, 15),
    ]
    assert aligned(base, [*base[:4], "plt.show()", *base[4:]]) == [("added", 5, None)]


def test_a_cell_split_in_two_is_edited_and_the_rest_added() -> None:
    cell = "import numpy as np\nimport pandas as pd\nx = np.arange(10)\nprint(x)"
    base = ["seed = 0", cell, "plot(x)"]
    head = ["seed = 0", "import numpy as np\nimport pandas as pd\nx = np.arange(10)", "print(x)"]
    head.append("plot(x)")
    assert aligned(base, head) == [("edited", 2, 2), ("added", 3, None)]
    edited = changed_cells(_cells(*head), _cells(*base))[0]
    assert [line for line in edited.source if line[0] != " "] == [("-", "print(x)")]


def test_scattered_edits_of_a_large_notebook_are_paired_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`MAX_APPROXIMATE_PAIRS` counts the pairs compared, run of changed cells after run: the
    changed region here is 101 × 101 cells, each run 1 × 1."""
    base = [f"result_{i} = train(model_{i}, data)\nprint(result_{i})" for i in range(120)]
    head = list(base)
    for i in (10, 60, 110):
        head[i] = head[i].replace("data)", "data, epochs=3)")
    assert aligned(base, head) == [("edited", 11, 11), ("edited", 61, 61), ("edited", 111, 111)]
    monkeypatch.setattr("nbci.code_changes.MAX_APPROXIMATE_PAIRS", 2)
    assert aligned(base, head) == [
        ("edited", 11, 11),
        ("edited", 61, 61),
        ("added", 111, None),
        ("removed", None, 111),
    ]


def test_a_long_run_of_alike_long_cells_is_not_compared_pair_by_pair() -> None:
    """Past `MAX_COMPARED_CHARS` (40 × 40 cells of 3,000 characters) a run's edits show as
    removed and added: each comparison's time grows with the cells' characters."""
    lines = [f"value_{i} = compute(data[{i}], weight={i} * scale)\n" for i in range(60)]
    base = ["".join(line.replace("compute", f"compute{k}") for line in lines) for k in range(40)]
    head = [cell.replace("scale", "scale2") for cell in base]
    kinds = [kind for kind, _, _ in aligned(base, head)]
    assert kinds.count("added") == 40 and kinds.count("removed") == 40
    assert [kind for kind, _, _ in aligned(base[:3], head[:3])] == ["edited"] * 3


def test_long_sources_are_told_apart_by_all_of_them() -> None:
    """A source past `MAX_ALIGNED_CHARS` is compared by its start and a digest of the whole."""
    long = "table = '" + "a" * 30_000 + "'"
    assert aligned(["x = 1", long], ["x = 1", long[:-2] + "b'"]) == [("edited", 2, 2)]
    assert aligned(["x = 1", long], ["x = 1", long]) == []


SOURCES = st.sampled_from(
    ["", "x", "a = 1", "a = 2", "print(a)", "plot(a, b)\nshow()", "plot(a, c)\nshow()"]
)


@settings(max_examples=examples(300), deadline=None)
@given(
    base=st.lists(SOURCES, max_size=12),
    head=st.lists(SOURCES, max_size=12),
    equal=st.booleans(),
    pairs=st.sampled_from([0, 4, 2_500]),
)
def test_every_cell_of_both_sides_is_in_the_alignment_once(
    base: list[str], head: list[str], equal: bool, pairs: int
) -> None:
    steps = align(base, head, equal=equal, budget=Budget(pairs, pairs * 20))
    base_named = [b for _, b, _ in steps if b is not None]
    head_named = [h for _, _, h in steps if h is not None]
    assert len(set(base_named)) == len(base_named) and len(set(head_named)) == len(head_named)
    assert head_named == sorted(head_named)  # this run's order
    base_same = [b for b in range(len(base)) if b not in base_named]
    head_same = [h for h in range(len(head)) if h not in head_named]
    assert [base[b] for b in base_same] == [head[h] for h in head_same]  # aligned, in order
    for kind, b, h in steps:
        assert (b is None) == (kind == "added") and (h is None) == (kind == "removed")
        if kind == "moved":
            assert b is not None and h is not None and base[b] == head[h]
        if kind == "edited":
            assert b is not None and h is not None and base[b] != head[h]
    added = {head[h] for kind, _, h in steps if kind == "added" and h is not None}
    removed = {base[b] for kind, b, _ in steps if kind == "removed" and b is not None}
    assert not added & removed  # an unchanged source elsewhere is a move
