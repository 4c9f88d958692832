"""The verdict's words: passed or not, and the one-line description a commit status carries.

The forge posts it (`Forge.set_status`, or on GitHub with `--check` a check
run) on the commit the run tested — a review's head, never the merge commit
built for it — so it shows in the review's checks and in branch protection.
The description carries the counts and the gate verdict within 140
characters (GitHub's limit; GitLab allows more); its link points to the run.
"""

from __future__ import annotations

from nbci._text import utf16_length
from nbci.model import Comparison, Run, Verdict
from nbci.vocabulary import STATUS_LABEL, verdict_facts

DESCRIPTION_LIMIT = 140


def describe(run: Run, verdict: Verdict | None, comparison: Comparison | None = None) -> str:
    """The status line: `interrupted · 3 passed · 1 failed · 2 cached · gates: 1 of 4 failed ·
    2 regressions`, the report's counts in its words (`nbci.vocabulary.verdict_facts`).

    At most 140 characters, as GitHub allows.
    """
    facts = verdict_facts(run, comparison, verdict, passed_count=bool(run.notebooks))
    if not run.notebooks:
        facts.insert(0, "no notebooks")
    if run.interrupted:
        facts.insert(0, STATUS_LABEL["interrupted"])
    return fit(" · ".join(facts), DESCRIPTION_LIMIT)


def fit(text: str, limit: int, *, note: str = "…") -> str:
    """`text` within `limit` UTF-16 code units (never fewer than GitHub's character count)."""
    if utf16_length(text) <= limit:
        return text
    cut = text[: limit - len(note)]
    while (excess := utf16_length(cut + note) - limit) > 0:
        cut = cut[:-excess]
    return cut + note
