"""nbci and papermill alone, over the third-party-style notebooks: the same status for each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .make_thirdparty import EXPECTED, PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = Path(__file__).parent / "notebooks"

pytestmark = [pytest.mark.kernel, pytest.mark.tools]


def papermill_status(source: Path, target: Path, parameters: dict[str, Any]) -> tuple[str, Any]:
    """How papermill alone ends a notebook: its status and the exception, if any."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        papermill.execute_notebook(
            str(source),
            str(target),
            parameters=parameters,
            cwd=str(target.parent),
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as error:
        return "failed", error
    except CellTimeoutError as error:
        return "timeout", error
    except DeadKernelError as error:
        return "died", error
    except Exception as error:  # no kernel, no kernelspec: before anything ran
        return "invalid", error
    return "ok", None


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(nbci's results.json entries, papermill's (status, error)) by notebook name.

    papermill runs each notebook alone with the parameters nbci gave it (`-p`
    goes only to the notebooks that take it), so both run the same cells.
    """
    project = tmp_path_factory.mktemp("thirdparty")
    (project / "pyproject.toml").write_text('[project]\nname = "thirdparty"\n')
    shutil.copytree(NOTEBOOKS, project / "notebooks")
    parameters = [f"-p{name}={value}" for name, value in PARAMETERS.items()]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("GITHUB_ACTIONS", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbci",
            "run",
            "--out",
            "out",
            "--jobs",
            "2",
            "--no-cache",
            *parameters,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # some are meant to fail
    results = json.loads((project / "out" / "results.json").read_text())["notebooks"]
    nbci = {Path(nb["path"]).stem: nb for nb in results}
    alone = project / "papermill"
    alone.mkdir()
    by_papermill = {  # each with the parameters nbci gave it
        name: papermill_status(
            NOTEBOOKS / f"{name}.ipynb", alone / f"{name}.ipynb", nbci[name]["parameters"]
        )
        for name in EXPECTED
    }
    return nbci, by_papermill


def test_every_notebook_ends_the_same_with_nbci_and_with_papermill(
    both: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    nbci, by_papermill = both
    assert {name: nb["status"] for name, nb in nbci.items()} == EXPECTED
    assert {name: status for name, (status, _) in by_papermill.items()} == EXPECTED


def test_failures_name_the_cell_papermill_names(
    both: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    nbci, by_papermill = both
    for name, (status, error) in by_papermill.items():
        if status == "failed":
            assert nbci[name]["error"]["cell"] == error.exec_count, name


def test_parameters_reach_the_notebook_as_with_papermill(
    both: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    nbci, _ = both
    assert nbci["magics"]["parameters"] == PARAMETERS
    assert nbci["parameters_syntax_error"]["parameters"] == PARAMETERS  # cannot tell: injected
    assert nbci["kernel_python3"]["parameters"] == {}  # no parameters cell: runs as it is
    assert nbci["magics"]["scraps"]["greeting"]["value"] == "Hello"
    assert nbci["magics"]["metrics"]["total"] == 45


def test_a_python_kernelspec_runs_python3_and_the_report_says_which_kernel_ran(
    both: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    nbci, _ = both
    assert nbci["kernel_python"]["kernel"] == "python3"
    assert nbci["kernel_mixed_case"]["kernel"] == "python3"
    assert nbci["kernel_python"]["metrics"] == {"accuracy": 0.75}
    assert "unknown kernel 'conda-env-ml-py'" in nbci["kernel_uninstalled"]["error"]["message"]


def test_a_missing_magic_says_what_jupyter_says(
    both: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    nbci, by_papermill = both
    error = nbci["missing_magic"]["error"]
    assert (error["cell"], error["ename"], error["evalue"]) == (
        2,
        "UsageError",
        "Line magic function `%not_a_real_magic` not found.",
    )
    assert by_papermill["missing_magic"][1].ename == "CellExecutionError"  # what papermill says
    failing = nbci["failing_import"]["error"]
    assert (failing["ename"], failing["evalue"]) == (
        "ModuleNotFoundError",
        "No module named 'definitely_not_installed_pkg'",
    )
    assert "Cell In[2], line 1" in failing["traceback"]
