"""A commit to an existing branch in one GraphQL request: `createCommitOnBranch`.

The Git Data API takes text inline in a tree request but each binary file (a
PNG) as a request of its own; `createCommitOnBranch` carries every added file
base64-encoded, deleted paths and the message in one mutation, so a publish
costs the same number of API calls whatever the number of figures, charts or
notebooks. The mutation commits only if the branch still points at
`expectedHeadOid`; otherwise GitHub answers `STALE_DATA` and nbci re-reads the
branch (`BranchMoved`).

GitHub limits a request's body, so files whose base64 would pass
`MUTATION_PAYLOAD_BYTES` go in further mutations, each one commit on top of the
last; the returned Tip is the last, which holds them all.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any

from nbci.errors import PublishError
from nbci.publish.assets import Asset, Tip
from nbci.publish.forge import BranchMoved

MUTATION_PAYLOAD_BYTES = 40 * 1024 * 1024
"""Base64 sent in one mutation at most (GitHub rejects much larger request bodies)."""

CREATE_COMMIT = """
mutation($input: CreateCommitOnBranchInput!) {
  createCommitOnBranch(input: $input) { commit { oid tree { oid } } }
}
"""


def commit_on_branch(
    requester: Any,
    repo: str,
    tip: Tip,
    changed: Sequence[Asset],
    removed: Sequence[str],
    message: str,
) -> Tip:
    """Commit `changed` and `removed` on top of `tip` (an existing branch); the new tip."""
    head = tip.commit
    tree: str | None = tip.tree
    deletions = [{"path": path} for path in removed]
    for batch in _batches(changed):
        head, tree = _mutate(
            requester,
            {
                "branch": {"repositoryNameWithOwner": repo, "branchName": tip.branch},
                "expectedHeadOid": head,
                "message": _message(message),
                "fileChanges": {
                    "additions": [
                        {"path": a.path, "contents": base64.b64encode(a.data).decode("ascii")}
                        for a in batch
                    ],
                    "deletions": deletions,
                },
            },
        )
        deletions = []  # the first commit made them
    if head is None or head == tip.commit:
        raise PublishError("nbci had nothing to commit (a bug: the caller checks first)")
    return tip.after(head, changed, removed, tree=tree)


def _rest_status(kind: str) -> int:
    """The REST status of a GraphQL error type, so that `Session.errors` words it the same way.

    FORBIDDEN gets the permission line. A rate limit (GitHub documents
    `RATE_LIMITED` and has been seen sending `RATE_LIMIT`) is a 403 whose
    message says "rate limit", as on REST.
    """
    if kind in ("RATE_LIMITED", "RATE_LIMIT"):
        return 403
    return {"FORBIDDEN": 403, "NOT_FOUND": 404}.get(kind, 422)


def _message(message: str) -> dict[str, str]:
    headline, _, body = message.partition("\n")
    return {"headline": headline, "body": body.strip()} if body.strip() else {"headline": headline}


def _batches(changed: Sequence[Asset]) -> Iterator[list[Asset]]:
    """`changed` in runs whose base64 stays under the bound; a larger file goes alone."""
    batch: list[Asset] = []
    size = 0
    for asset in changed:
        encoded = 4 * ((len(asset.data) + 2) // 3)
        if batch and size + encoded > MUTATION_PAYLOAD_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(asset)
        size += encoded
    yield batch  # possibly empty: a commit that only deletes


def _mutate(requester: Any, mutation_input: dict[str, Any]) -> tuple[str, str]:
    """Send one `createCommitOnBranch`; (commit oid, tree oid)."""
    from github import GithubException

    headers, data = requester.requestJsonAndCheck(
        "POST",
        requester.graphql_url,
        input={"query": CREATE_COMMIT, "variables": {"input": mutation_input}},
    )
    errors = data.get("errors") if isinstance(data, dict) else None
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        kind, said = str(first.get("type") or ""), str(first.get("message") or "")
        if kind == "STALE_DATA" or said.startswith("Expected branch to point to"):
            raise BranchMoved
        raise GithubException(_rest_status(kind), {"message": said or kind}, headers)
    try:
        commit = data["data"]["createCommitOnBranch"]["commit"]
        return str(commit["oid"]), str(commit["tree"]["oid"])
    except (KeyError, TypeError):
        raise PublishError("GitHub answered createCommitOnBranch without the commit") from None
