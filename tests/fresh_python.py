"""Python code run in an interpreter of its own, as a worker starts: what it imports is its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *, first: Sequence[Path] = ()) -> subprocess.CompletedProcess[str]:
    """`python -c code`, with `first`, then this checkout, first on PYTHONPATH."""
    path = os.pathsep.join([*map(str, first), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=120,
    )
