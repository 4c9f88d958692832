"""The verdict on the commit: a commit status, or with `--check` a check run.

Both go on the commit the run tested — a pull request's head, never the merge
commit GitHub builds for it — so they show in the PR's checks and in branch
protection. The status's description carries the counts and the gate verdict
(GitHub allows 140 characters); its link points to the run. A check run also
carries the report as its output (GitHub allows 65,535 characters a field).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from nbci.model import Comparison, Run, Verdict
from nbci.publish.client import Session

logger = logging.getLogger(__name__)

DESCRIPTION_LIMIT = 140
CHECK_TEXT_LIMIT = 65_535
CHECK_TITLE_LIMIT = 255


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
    return _fit(text, DESCRIPTION_LIMIT)


def post_status(
    session: Session,
    sha: str,
    *,
    context: str,
    success: bool,
    description: str,
    target_url: str | None,
) -> None:
    state = "success" if success else "failure"
    with session.errors(f"set the commit status on {sha[:12]}", "statuses: write"):
        status = session.repo.get_commit(sha).create_status(  # lazy commit: one POST
            state=state,
            description=_fit(description, DESCRIPTION_LIMIT),
            context=_fit(context, 100),
            **({"target_url": target_url} if target_url else {}),
        )
    logger.info("status %s %r on %s", status.state, context, sha[:12])


def post_check(
    session: Session,
    sha: str,
    *,
    name: str,
    success: bool,
    title: str,
    summary: str,
    details_url: str | None,
) -> str:
    """Create a completed check run; returns its web address."""
    from github.GithubObject import NotSet

    output: dict[str, str | list[dict[str, str | int]]] = {
        "title": _fit(title, CHECK_TITLE_LIMIT),
        "summary": _fit(summary, CHECK_TEXT_LIMIT, note="\n\n(cut to fit GitHub's limit)"),
    }
    with session.errors(f"create a check run on {sha[:12]}", "checks: write"):
        run = session.repo.create_check_run(
            name=_fit(name, 100),
            head_sha=sha,
            status="completed",
            conclusion="success" if success else "failure",
            completed_at=datetime.now(UTC),
            output=output,
            details_url=details_url or NotSet,
        )
    logger.info("check run %r (%s) on %s", name, run.conclusion, sha[:12])
    return run.html_url


def _fit(text: str, limit: int, *, note: str = "…") -> str:
    """`text` within `limit` UTF-16 code units (never fewer than GitHub's character count)."""
    if len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    cut = text[: limit - len(note)]
    while (excess := len((cut + note).encode("utf-16-le")) // 2 - limit) > 0:
        cut = cut[:-excess]
    return cut + note
