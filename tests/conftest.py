"""Shared fixtures: small notebooks written on the fly into a temporary project."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import nbformat
import pytest

NotebookFactory = Callable[..., Path]


def write_notebook(
    path: Path,
    cells: Sequence[str],
    *,
    parameters: str | None = None,
    kernel: str = "python3",
) -> Path:
    """A notebook of code cells, with an optional cell tagged `parameters` first."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


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

    def make(relative: str, cells: Sequence[str], **kwargs: object) -> Path:
        return write_notebook(project / relative, cells, **kwargs)  # type: ignore[arg-type]

    return make
