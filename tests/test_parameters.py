"""Parameters are never dropped silently: papermill's rules, magics understood."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import NotebookFactory

from nbci.config import load_config
from nbci.errors import ConfigError
from nbci.pipeline import RunRequest, run
from nbci.plan import ParametersCell, parameters_cell, plan


@pytest.mark.parametrize(
    ("source", "names", "doubt"),
    [
        ('msg = "hi"\nn: int = 3\na, (b, c) = 1, (2, 3)', {"msg", "n", "a", "b", "c"}, None),
        ('%matplotlib inline\nmsg = "hi"', {"msg"}, None),
        (
            "!pip list\nimport numpy as np\nfrom os import path as p\nx = %env HOME",
            {"np", "p", "x"},
            None,
        ),
        ("if True:\n    lr = 0.1\nelse:\n    lr = 1\nfor i in range(2): pass", {"lr", "i"}, None),
        ("%run defaults.py\nseed = 0", {"seed"}, "it runs %run"),
        ("%store -r model", set(), "it runs %store"),
        ("%%capture\nmsg = 'hi'", set(), "it is a %%capture cell"),
        ("from defaults import *", {"*"}, "it has a star import"),
        ("exec('msg = 1')", set(), "it calls exec()"),
        ("msg = (", set(), "line 1: '(' was never closed"),
    ],
)
def test_what_a_parameters_cell_defines(
    project: Path, notebook: NotebookFactory, source: str, names: set[str], doubt: str | None
) -> None:
    path = notebook("notebooks/nb.ipynb", ["pass"], parameters=source)
    assert parameters_cell(path) == ParametersCell(frozenset(names), True, doubt)


def test_every_tagged_cell_counts_and_an_untagged_notebook_has_none(
    project: Path, notebook: NotebookFactory
) -> None:
    path = notebook("notebooks/nb.ipynb", ["pass"], parameters="a = 1")
    data = json.loads(path.read_text())
    data["cells"][1]["metadata"]["tags"] = ["parameters"]
    data["cells"][1]["source"] = "%run more.py"
    path.write_text(json.dumps(data))
    assert parameters_cell(path) == ParametersCell(frozenset({"a"}), True, "it runs %run")
    plain = notebook("notebooks/plain.ipynb", ["a = 1"])
    assert parameters_cell(plain) == ParametersCell(frozenset(), False, None)


def test_a_parameter_after_a_line_magic_is_applied(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/hello.ipynb", ["print(msg)"], parameters='%matplotlib inline\nmsg = "x"')
    planned = plan(load_config(project), overrides={"msg": "Hello"})
    (job,) = planned.jobs
    assert dict(job.parameters) == {"msg": "Hello"}
    assert planned.notes == () and planned.problems == ()


def test_a_parameter_nbci_cannot_see_defined_is_injected_with_a_note(
    project: Path, notebook: NotebookFactory, caplog: pytest.LogCaptureFixture
) -> None:
    notebook("notebooks/a.ipynb", ["pass"], parameters="%run defaults.py\nseed = 0")
    notebook("notebooks/b.ipynb", ["pass"], parameters="seed = 0")
    planned = plan(load_config(project), overrides={"seed": 3, "model": "svc"})
    assert {j.id: dict(j.parameters) for j in planned.jobs} == {
        "a": {"seed": 3, "model": "svc"},
        "b": {"seed": 3},
    }
    (note,) = planned.notes
    assert note.job.id == "a"
    assert note.message == (
        "notebooks/a.ipynb: injected model although nbci cannot tell whether its "
        "'parameters' cell defines it (it runs %run)"
    )
    assert note.message in caplog.text


def test_a_notebook_that_takes_no_cli_parameter_runs_as_it_is(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/plain.ipynb", ["x = 1"])
    notebook("notebooks/takes.ipynb", ["pass"], parameters="seed = 0")
    planned = plan(load_config(project), overrides={"seed": 3})
    assert {j.id: dict(j.parameters) for j in planned.jobs} == {"plain": {}, "takes": {"seed": 3}}
    assert planned.problems == ()


def test_a_configured_parameter_a_plain_cell_lacks_is_still_an_error(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/a.ipynb", ["pass"], parameters="%matplotlib inline\nlr = 0.1")
    (project / "nbci.toml").write_text(
        '[[notebook]]\npath = "notebooks/a.ipynb"\nparameters = { lrr = 1 }\n'
    )
    with pytest.raises(ConfigError, match="'lrr' is not defined in its 'parameters' cell"):
        plan(load_config(project))


@pytest.mark.kernel
def test_magic_parameters_cell_runs_with_the_value_given(
    project: Path, notebook: NotebookFactory
) -> None:
    glue = "import scrapbook as sb\nsb.glue('said', msg)"
    notebook("notebooks/hello.ipynb", [glue], parameters='%matplotlib inline\nmsg = "x"')
    (project / "defaults.py").write_text("seed = 1\n")
    glue_seed = f"{glue}\nsb.glue('seed', seed)"
    notebook("notebooks/run.ipynb", [glue_seed], parameters='%run ../defaults.py\nmsg = "x"')
    outcome = run(load_config(project), RunRequest(overrides={"msg": "Hello", "seed": 5}))
    hello, ran = outcome.run.notebooks
    assert (hello.status, dict(hello.parameters), hello.scraps["said"].value) == (
        "ok",
        {"msg": "Hello"},
        "Hello",
    )
    assert hello.notes == ()
    assert (ran.status, ran.metrics["seed"], ran.scraps["said"].value) == ("ok", 5, "Hello")
    assert ran.notes == (
        "notebooks/run.ipynb: injected seed although nbci cannot tell whether its "
        "'parameters' cell defines it (it runs %run)",
    )
