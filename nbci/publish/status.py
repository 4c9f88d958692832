"""The verdict's words: passed or not, and the one-line description a commit status carries.

The forge posts it (`Forge.set_status`, or on GitHub with `--check` a check
run) on the commit the run tested — a review's head, never the merge commit
built for it — so it shows in the review's checks and in branch protection.
The description carries the counts and the gate verdict within 140
characters (GitHub's limit; GitLab allows more); its link points to the run.
"""

from __future__ import annotations

from nbci.model import Comparison, Run, Verdict

DESCRIPTION_LIMIT = 140


def passed(run: Run, verdict: Verdict | None) -> bool:
    """Every notebook ran and every gate passed."""
    return run.ok and (verdict is None or verdict.passed)


def describe(run: Run, verdict: Verdict | None, comparison: Comparison | None = None) -> str:
    """The status line: `3 ok, 1 failed (2 cached) · 2 regressions · 1 of 4 gates failed`.

    At most 140 characters, as GitHub allows.
    """
    counts = run.counts
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    text = ", ".join(parts) or "no notebooks"
    if run.cached_count:
        text += f" ({run.cached_count} cached)"
    if run.interrupted:
        text += ", interrupted"
    if comparison is not None:
        regressions = len(comparison.regressions)
        text += f" · {regressions} regression{'s' if regressions != 1 else ''}"
    if verdict is not None and verdict.results:
        failed = len(verdict.failures)
        gates = len(verdict.results)
        text += f" · {failed} of {gates} gates failed" if failed else f" · {gates} gates passed"
    return fit(text, DESCRIPTION_LIMIT)


def fit(text: str, limit: int, *, note: str = "…") -> str:
    """`text` within `limit` UTF-16 code units (never fewer than GitHub's character count)."""
    if len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    cut = text[: limit - len(note)]
    while (excess := len((cut + note).encode("utf-16-le")) // 2 - limit) > 0:
        cut = cut[:-excess]
    return cut + note
