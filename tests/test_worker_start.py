"""What a worker imports as it starts (issue 21): papermill, and with it nbformat's jsonschema,
without the libraries that check `format`s (`rfc3987_syntax` builds its grammars on import)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from fresh_python import run_python


@pytest.mark.tools
def test_a_worker_imports_jsonschema_without_its_format_checkers(
    tmp_path: Path, rfc3987_syntax_stand_in: Path
) -> None:
    """In a process of its own, as a worker starts; the notebook is still read (and checked
    against nbformat's schema), and the checkers stay importable for anything else."""
    notebook = tmp_path / "empty.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    code = textwrap.dedent(f"""\
        import sys
        from nbci.execute.worker import _import_papermill
        _import_papermill()
        print("jsonschema" in sys.modules, "rfc3987_syntax" in sys.modules)
        from papermill.iorw import load_notebook_node
        print(load_notebook_node({str(notebook)!r}).nbformat)
        import rfc3987_syntax
        print(rfc3987_syntax.__name__)""")
    done = run_python(code, first=[rfc3987_syntax_stand_in])

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True False", "4", "rfc3987_syntax"]
