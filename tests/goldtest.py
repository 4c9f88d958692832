"""The one golden-file helper: output a reviewer reads, pinned in tests/gold/.

After an intended change, run the tests with `NBCI_UPDATE_GOLD=1` and review
`git diff tests/gold`. In that mode a golden file that differs is rewritten and
its test still fails (saying so), so an update never passes by comparing a file
with what was just written to it; a file that already matches passes.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

GOLD = Path(__file__).parent / "gold"
UPDATE = "NBCI_UPDATE_GOLD"
_DIFF_LINES = 40


def check_gold(name: str, actual: str) -> None:
    """`actual` must equal tests/gold/NAME (UTF-8); fails with the first lines of the diff."""
    path = GOLD / name
    expected = path.read_text(encoding="utf-8") if path.is_file() else None
    if actual == expected:
        return
    if os.environ.get(UPDATE):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        done = "created" if expected is None else "updated"
        pytest.fail(f"{path} {done}: review it with `git diff`", pytrace=False)
    if expected is None:
        pytest.fail(f"{path} is missing; {UPDATE}=1 writes it", pytrace=False)
    diff = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), f"gold/{name}", "actual", lineterm=""
    )
    shown = "\n".join(list(diff)[:_DIFF_LINES])
    pytest.fail(f"{name} differs from {path} ({UPDATE}=1 rewrites it):\n{shown}", pytrace=False)
