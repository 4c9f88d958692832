"""nbci.vocabulary is the one home of what users read: no mark is spelled anywhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nbci"
MARKS = ("✅", "❌", "✓", "✕", "✗", "⚠", "❔", "ℹ")


def sources() -> list[Path]:
    """Python modules and templates; not the stylesheet (its `content:` marks are styling)."""
    found = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.j2")]
    return sorted(p for p in found if p.name != "vocabulary.py")


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_marks_are_spelled_only_in_vocabulary(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    spelled = [
        f"line {number}: {mark}"
        for number, line in enumerate(text.splitlines(), 1)
        for mark in MARKS
        if mark in line
    ]
    assert spelled == [], f"{path.name} spells marks that belong in nbci/vocabulary.py"
