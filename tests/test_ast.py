"""Parsing survives CPython 3.11's shared AST state (python/cpython#106905)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbci._ast import parse_source
from nbci.execute.preload import modules_for


@pytest.fixture
def ast_state_off_once(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first parse fails as a parse racing with another thread's does."""
    parse, calls = ast.parse, []

    def racing(code: str, *args: Any, **kwargs: Any) -> ast.Module:
        calls.append(code)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=39, after=96)")
        tree: ast.Module = parse(code, *args, **kwargs)
        return tree

    monkeypatch.setattr(ast, "parse", racing)
    return calls


def test_a_parse_that_meets_the_shared_state_off_is_tried_again(
    ast_state_off_once: list[str],
) -> None:
    assert isinstance(parse_source("import numpy").body[0], ast.Import)
    assert len(ast_state_off_once) == 2


def test_a_worker_reads_a_notebooks_imports_through_it(
    ast_state_off_once: list[str], tmp_path: Path
) -> None:
    """Seen in a worker: the notebook's run ended 'died' with the SystemError."""
    path = tmp_path / "a.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import json")])
    nbformat.write(notebook, path)
    assert modules_for(path, [tmp_path]) == ("json",)


def test_code_that_does_not_parse_still_says_so() -> None:
    with pytest.raises(SyntaxError):
        parse_source("def (")
