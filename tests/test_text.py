"""nbci._text and the other one-home rules: one line, UTF-16 lengths, finite numbers, passed."""

from __future__ import annotations

import math

import pytest

from nbci._text import one_line, utf16_length
from nbci.model import GateResult, NotebookResult, Run, Status, Verdict, finite_float, passed


def test_one_line_collapses_whitespace_and_cuts_with_a_mark() -> None:
    assert one_line("  a\n\tb\r\n  c ") == "a b c"
    assert one_line("x" * 400) == "x" * 299 + "…"
    assert len(one_line("word " * 100, 40)) == 40
    assert one_line("long " * 100, None) == ("long " * 100).strip()


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert utf16_length("abc") == 3
    assert utf16_length("✅") == 1 and utf16_length("🎉") == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1.0),
        (0.5, 0.5),
        (True, None),
        (math.nan, None),
        (math.inf, None),
        (10**400, None),
        ("1", None),
        (None, None),
    ],
)
def test_finite_float(value: object, expected: float | None) -> None:
    assert finite_float(value) == expected


def test_passed_needs_every_notebook_ok_and_every_gate() -> None:
    def run(status: Status) -> Run:
        nb = NotebookResult(id="a", path="a.ipynb", parameters={}, status=status)
        return Run(notebooks=(nb,), created="2026-12-03T00:00:00Z")

    ok, failed = run("ok"), run("failed")
    gate = GateResult(rule="m", job_id="a", metric="m", passed=False, reason="m 1 < min 2")
    assert passed(ok, None) and passed(ok, Verdict())
    assert not passed(ok, Verdict((gate,)))
    assert not passed(failed, None)
