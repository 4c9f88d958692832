"""The sticky comment: one per review (pull request, merge request) and report name.

The comment starts with a hidden marker, `<!-- nbci:report:NAME -->`. Every
page of the review's comments is read to find it (a busy one has hundreds): found,
it is edited; absent, it is created. Two publishes racing can both create one,
so after creating, the comments are read again and all but the newest marked
comment are deleted (only those by the same author: a person quoting the
marker keeps their comment).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbci._files import safe_name
from nbci._text import utf16_length

if TYPE_CHECKING:
    from nbci.publish.forge import Comment, Forge

logger = logging.getLogger(__name__)

COMMENT_LIMIT = 65_536
"""GitHub's maximum comment body, in characters; GitLab's notes (1,000,000) keep the same
budget so that the report reads the same on both."""
TRUNCATED_NOTE = (
    "\n\n> [!NOTE]\n> The report was cut to fit the comment size limit; "
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


def comment_limit(forge: Forge) -> int:
    """The forge's comment limit where it is below `COMMENT_LIMIT` (Bitbucket: 32,767)."""
    return min(COMMENT_LIMIT, getattr(forge, "comment_limit", COMMENT_LIMIT))


def comment_body(name: str, report: str, *, limit: int = COMMENT_LIMIT) -> str:
    """Marker + report, within `limit` (default `COMMENT_LIMIT`) whatever the report's size.

    The report is expected to fit already (rendered with a budget); this is the
    last guard, cutting at a line boundary and saying so.
    """
    head = marker(name) + "\n"
    body = head + report
    if utf16_length(body) <= limit:
        return body
    room = limit - utf16_length(head) - utf16_length(TRUNCATED_NOTE)
    cut = report[: max(room, 0)]
    while (excess := utf16_length(cut) - room) > 0:  # astral characters count twice
        cut = cut[:-excess]
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    logger.warning("report cut from %d to %d characters to fit a comment", len(report), len(cut))
    return head + cut + TRUNCATED_NOTE


def upsert_comment(forge: Forge, number: int, name: str, body: str) -> CommentResult:
    """Edit this report's comment on review `number`, or create it when there is none."""
    tag = marker(name)
    existing = _marked(forge.comments(number), tag)
    if existing:
        newest = existing[-1]
        forge.edit_comment(number, newest, body)
        deleted = _delete_older(forge, existing, number)
        logger.info("edited comment %s", newest.url)
        return CommentResult(newest.url, created=False, deleted=deleted)
    created = forge.create_comment(number, body)
    logger.info("created comment %s", created.url)
    after = _marked(forge.comments(number), tag)
    deleted = _delete_older(forge, after, number) if len(after) > 1 else 0
    newest_url = after[-1].url if after else created.url
    return CommentResult(newest_url, created=True, deleted=deleted)


def _marked(comments: list[Comment], tag: str) -> list[Comment]:
    """Every comment starting with `tag`, oldest first."""
    found = [c for c in comments if c.body.startswith(tag)]
    return sorted(found, key=lambda c: (c.created_at, c.id))


def _delete_older(forge: Forge, marked: list[Comment], number: int) -> int:
    """Delete all but the newest marked comment, if they share its author."""
    author = marked[-1].author
    deleted = 0
    for comment in marked[:-1]:
        if comment.author is None or comment.author != author:
            continue
        if forge.delete_comment(number, comment):
            deleted += 1
            logger.info("deleted duplicate comment %s", comment.url)
    return deleted
