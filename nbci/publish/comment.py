"""The sticky PR comment: one per pull request and report name, edited in place.

The comment starts with a hidden marker, `<!-- nbci:report:NAME -->`. Every
page of the PR's comments is read to find it (a busy PR has hundreds): found,
it is edited; absent, it is created. Two publishes racing can both create one,
so after creating, the comments are read again and all but the newest marked
comment are deleted (only those by the same author: a person quoting the
marker keeps their comment).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from nbci._files import safe_name
from nbci.publish.client import Session

logger = logging.getLogger(__name__)

COMMENT_LIMIT = 65_536
"""GitHub's maximum comment body, in characters."""
PERMISSION = "pull-requests: write"
TRUNCATED_NOTE = (
    "\n\n> [!NOTE]\n> The report was cut to fit GitHub's comment size limit; "
    "the full report is in the run's artifact."
)


@dataclass(frozen=True)
class CommentResult:
    url: str
    created: bool
    deleted: int = 0
    """Older duplicates removed."""


def marker(name: str) -> str:
    """The hidden first line that identifies this report's comment."""
    return f"<!-- nbci:report:{safe_name(name)} -->"


def comment_body(name: str, report: str) -> str:
    """Marker + report, within GitHub's limit whatever the report's size.

    The report is expected to fit already (rendered with a budget); this is the
    last guard, cutting at a line boundary and saying so.
    """
    head = marker(name) + "\n"
    body = head + report
    if _length(body) <= COMMENT_LIMIT:
        return body
    room = COMMENT_LIMIT - _length(head) - _length(TRUNCATED_NOTE)
    cut = report[: max(room, 0)]
    while (excess := _length(cut) - room) > 0:  # astral characters count twice
        cut = cut[:-excess]
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    logger.warning("report cut from %d to %d characters to fit a comment", len(report), len(cut))
    return head + cut + TRUNCATED_NOTE


def _length(text: str) -> int:
    """Length in UTF-16 code units: never less than the character count GitHub checks."""
    return len(text.encode("utf-16-le")) // 2


def upsert_comment(session: Session, pr: int, name: str, body: str) -> CommentResult:
    """Edit this report's comment on `pr`, or create it when there is none."""
    tag = marker(name)
    issue = session.repo.get_issue(pr)  # lazy: no request
    with session.errors(f"read the comments of pull request #{pr}", "pull-requests: read"):
        existing = _marked(issue, tag)
    if existing:
        newest = existing[-1]
        with session.errors(f"edit nbci's comment on pull request #{pr}", PERMISSION):
            newest.edit(body)
        deleted = _delete_older(session, existing, pr)
        logger.info("edited comment %s", newest.html_url)
        return CommentResult(newest.html_url, created=False, deleted=deleted)
    with session.errors(f"comment on pull request #{pr}", PERMISSION):
        created = issue.create_comment(body)
    logger.info("created comment %s", created.html_url)
    with session.errors(f"read the comments of pull request #{pr}", "pull-requests: read"):
        after = _marked(issue, tag)
    deleted = _delete_older(session, after, pr) if len(after) > 1 else 0
    newest_url = after[-1].html_url if after else created.html_url
    return CommentResult(newest_url, created=True, deleted=deleted)


def _marked(issue: Any, tag: str) -> list[Any]:
    """Every comment starting with `tag`, oldest first, across all pages."""
    found = [c for c in issue.get_comments() if (c.body or "").startswith(tag)]
    return sorted(found, key=lambda c: (c.created_at, c.id))


def _delete_older(session: Session, marked: list[Any], pr: int) -> int:
    """Delete all but the newest marked comment, if they share its author."""
    from github import GithubException

    newest = marked[-1]
    author = newest.user.login if newest.user else None
    deleted = 0
    for comment in marked[:-1]:
        if comment.user is None or comment.user.login != author:
            continue
        with session.errors(f"delete a duplicate comment on pull request #{pr}", PERMISSION):
            try:
                comment.delete()
            except GithubException as exc:
                if exc.status != 404:  # another publish removed it first
                    raise
                continue
        deleted += 1
        logger.info("deleted duplicate comment %s", comment.html_url)
    return deleted
