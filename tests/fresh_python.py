"""Python code run in an interpreter of its own, as a worker starts: what it imports is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def run_script(script: str, folder: Path, *, timeout: float = 180) -> Any:
    """Run `script` (dedented) from a file in `folder`, in an interpreter of its own with
    this checkout on PYTHONPATH; it must succeed, and what its last line prints is JSON."""
    driver = folder / "driver.py"
    driver.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, str(driver)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])
