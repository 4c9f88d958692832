"""The GraphQL side of the GitHub stand-in: `createCommitOnBranch`, as docs.github.com documents it.

It writes to the stub's own object store (the same blobs, trees, commits and
refs the REST Git Data endpoints use), commits only when the branch is at
`expectedHeadOid`, checks the token's `contents` permission, and answers errors
the way GitHub's GraphQL API does: HTTP 200 with `{"data": ..., "errors": [...]}`
(`STALE_DATA`, `FORBIDDEN`, `NOT_FOUND`, `UNPROCESSABLE`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

GRAPHQL_PATH = "/api/graphql"
"""GitHub Enterprise Server's GraphQL endpoint for an API under /api/v3."""


class GraphQLError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def answer(stub: Any, body: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON) for one GraphQL request; authentication is checked by the caller."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return 400, {
            "message": "Problems parsing JSON",
            "documentation_url": "https://docs.github.com/graphql",
        }
    if "createCommitOnBranch" not in body["query"]:
        return 200, _errors("undefinedField", "the stand-in serves only createCommitOnBranch")
    mutation_input = (body.get("variables") or {}).get("input")
    try:
        commit = _create_commit_on_branch(stub, mutation_input)
    except GraphQLError as exc:
        return 200, {"data": {"createCommitOnBranch": None}, **_errors(exc.kind, exc.message)}
    return 200, {"data": {"createCommitOnBranch": {"commit": commit}}}


def _errors(kind: str, message: str) -> dict[str, Any]:
    return {
        "errors": [
            {
                "type": kind,
                "path": ["createCommitOnBranch"],
                "locations": [{"line": 2, "column": 3}],
                "message": message,
            }
        ]
    }


def _create_commit_on_branch(stub: Any, given: Any) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise GraphQLError(
            "INVALID_INPUT",
            "Variable $input of type CreateCommitOnBranchInput! was provided invalid value",
        )
    branch = given.get("branch") or {}
    if branch.get("repositoryNameWithOwner") != stub.repo:
        name = branch.get("repositoryNameWithOwner")
        raise GraphQLError(
            "NOT_FOUND", f"Could not resolve to a Repository with the name '{name}'."
        )
    if stub.permissions.get("contents", "none") != "write":
        raise GraphQLError("FORBIDDEN", "Resource not accessible by integration")
    ref = f"refs/heads/{branch.get('branchName')}"
    head = stub.refs.get(ref)
    if head is None:
        raise GraphQLError("NOT_FOUND", f'A ref named "{ref}" does not exist.')
    expected = given.get("expectedHeadOid")
    if expected != head:
        raise GraphQLError(
            "STALE_DATA",
            f'Expected branch to point to "{expected}" but it did not. Pull and try again.',
        )
    changes = given.get("fileChanges") or {}
    tree = stub._load_tree(stub.commits[head]["tree"])
    for deletion in changes.get("deletions") or []:
        _apply(stub, tree, {"path": deletion.get("path"), "sha": None})
    for addition in changes.get("additions") or []:
        try:
            data = base64.b64decode(addition.get("contents") or "", validate=True)
        except (binascii.Error, ValueError):
            raise GraphQLError(
                "UNPROCESSABLE", f"{addition.get('path')}: contents is not valid base64"
            ) from None
        sha = stub._store_blob(data)
        _apply(
            stub, tree, {"path": addition.get("path"), "mode": "100644", "type": "blob", "sha": sha}
        )
    message = given.get("message") or {}
    text = str(message.get("headline") or "")
    if not text:
        raise GraphQLError("UNPROCESSABLE", "A commit message headline is required")
    if message.get("body"):
        text += "\n\n" + str(message["body"])
    tree_sha = stub._write_tree(tree)
    commit = stub._store_commit(text, tree_sha, [head])
    stub.refs[ref] = commit
    return {"oid": commit, "tree": {"oid": tree_sha}}


def _apply(stub: Any, tree: Any, entry: dict[str, Any]) -> None:
    from github_stub import ApiError  # imported late: github_stub imports this module

    try:
        stub._apply(tree, entry)
    except ApiError as exc:
        raise GraphQLError("UNPROCESSABLE", f"{entry.get('path')}: {exc}") from None
