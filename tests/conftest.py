"""Shared fixtures: small notebooks written on the fly into a temporary project, and a browser."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from nbci.schemas import import_jsonschema

pytest_plugins = ("lanes",)


# jsonschema (which nbformat, and so most tests, import) without `rfc3987_syntax`: it compiles
# 38 grammars as it is imported, 2 s of CPU in each process of `pytest -n 2`, for the `iri`
# formats no test and no part of nbci checks. jsonschema's other format checkers stay: a test
# checks `date-time` with them. For this to come first, pyproject.toml keeps nbmake's plugin
# (nbformat) out of pytest.
import_jsonschema(without=("rfc3987_syntax",))

settings.register_profile("fast", max_examples=10)
"""`scripts/test.sh --fast` loads it (`--hypothesis-profile=fast`): each property test tries
a tenth of its examples, so the fast lane stays under a minute."""


def examples(full: int) -> int:
    """Examples for a property test that tries `full` in a full run: scaled by the loaded
    profile's `max_examples` against Hypothesis' default 100 (at least 5)."""
    loaded: int = settings().max_examples  # `settings()` starts from the loaded profile
    return max(full * loaded // 100, 5)


NotebookFactory = Callable[..., Path]


def write_notebook(
    path: Path,
    cells: Sequence[str],
    *,
    parameters: str | None = None,
    kernel: str = "python3",
) -> Path:
    """A notebook of code cells, with an optional cell tagged `parameters` first."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def rfc3987_syntax_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder, first on `sys.path`, holding a stand-in `rfc3987_syntax` (what jsonschema
    imports for its `iri` format checkers): a test that it is not imported runs whether or
    not the real one is installed (nbci no longer pulls it in). Pass the folder on to a
    child process's `PYTHONPATH`."""
    folder = tmp_path / "stand-ins"
    (folder / "rfc3987_syntax").mkdir(parents=True)
    (folder / "rfc3987_syntax" / "__init__.py").write_text(
        "def is_valid_syntax(rule, value):\n    return True\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "rfc3987_syntax", raising=False)
    return folder


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (with a pyproject.toml) that is the working directory."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def notebook(project: Path) -> NotebookFactory:
    """`notebook("notebooks/a.ipynb", ["x = 1"], parameters="x = 0")` inside `project`."""

    def make(
        relative: str,
        cells: Sequence[str],
        *,
        parameters: str | None = None,
        kernel: str = "python3",
    ) -> Path:
        return write_notebook(project / relative, cells, parameters=parameters, kernel=kernel)

    return make


ROOT = Path(__file__).resolve().parents[1]


def _execute(source: Path, target: Path) -> Path:
    """Execute `source` with papermill into `target` (working directory: target's folder).

    The kernel gets this checkout first on PYTHONPATH, so `import nbci` in a
    notebook is the code under test even when nbci is not installed.
    """
    import papermill

    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(paths))
        for attempt in (1, 2):
            try:
                papermill.execute_notebook(
                    str(source),
                    str(target),
                    kernel_name="python3",
                    cwd=target.parent,
                    progress_bar=False,
                )
                return target
            except RuntimeError as error:
                # jupyter_client picks free TCP ports before the kernel binds them: with
                # many kernels starting on the machine, another one may take a port first.
                if attempt == 2 or "Kernel died before replying" not in str(error):
                    raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def execute_notebook() -> Callable[[Path, Path], Path]:
    """`execute_notebook(source, target)`: run a notebook in a real `python3` kernel."""
    return _execute


@pytest.fixture
def retry_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Publishing's waits between retries (`BoundedRetry.sleep`), recorded, not slept: a test
    checks which waits the forge's answers asked for, and the clock need not move for that."""
    from nbci.publish.retry import BoundedRetry

    waits: list[float] = []
    monkeypatch.setattr(BoundedRetry, "sleep", lambda self, response=None: waits.append(
        self.planned_wait))  # fmt: skip
    return waits


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (never a browser download); one per
    test module of the browser lane."""
    from playwright.sync_api import sync_playwright
    from test_browser import ARGS, CHROMIUM

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()
