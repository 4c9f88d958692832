"""What a worker imports as it starts (issue 21): papermill, and with it nbformat's jsonschema,
without the libraries that check `format`s (`rfc3987_syntax` builds its grammars on import)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
    path = os.pathsep.join(
        [str(rfc3987_syntax_stand_in), str(ROOT), os.environ.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True False", "4", "rfc3987_syntax"]
