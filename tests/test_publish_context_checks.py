"""The checks every forge's publish context makes of `--sha` and of its API address:
written once (`nbci.publish.forge`), each forge saying whether it stores SHA-256 repositories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nbci.errors import UsageError
from nbci.publish.bitbucket.context import resolve_bitbucket_context
from nbci.publish.github.context import resolve_context
from nbci.publish.gitlab.context import resolve_gitlab_context

SHA1 = "a" * 40
SHA256 = "b" * 64
Resolve = Callable[..., Any]
FORGES: list[tuple[str, Resolve, str]] = [
    ("github", resolve_context, "owner/name"),
    ("gitlab", resolve_gitlab_context, "group/name"),
    ("bitbucket", resolve_bitbucket_context, "workspace/name"),
]


@pytest.mark.parametrize(("forge", "resolve", "repo"), FORGES)
def test_a_full_sha1_commit_is_accepted(forge: str, resolve: Resolve, repo: str) -> None:
    assert resolve({}, repo=repo, sha=SHA1).sha == SHA1


@pytest.mark.parametrize("bad", ["abc123", "A" * 40, "a" * 41, "g" * 40, " " + "a" * 40])
@pytest.mark.parametrize(("forge", "resolve", "repo"), FORGES)
def test_anything_else_is_one_usage_line(forge: str, resolve: Resolve, repo: str, bad: str) -> None:
    with pytest.raises(UsageError, match=r"^--sha: expected a full commit SHA \(") as raised:
        resolve({}, repo=repo, sha=bad)
    assert repr(bad) in str(raised.value) and "\n" not in str(raised.value)


def test_sha256_commits_where_the_forge_stores_them() -> None:
    assert resolve_context({}, repo="owner/name", sha=SHA256).sha == SHA256
    assert resolve_gitlab_context({}, repo="group/name", sha=SHA256).sha == SHA256
    with pytest.raises(UsageError, match=r"\(40 hex digits\)"):
        resolve_bitbucket_context({}, repo="workspace/name", sha=SHA256)
    with pytest.raises(UsageError, match=r"\(40 or 64 hex digits\)"):
        resolve_context({}, repo="owner/name", sha="c" * 50)


@pytest.mark.parametrize(
    ("resolve", "repo"), [(resolve_context, "owner/name"), (resolve_gitlab_context, "group/name")]
)
@pytest.mark.parametrize(
    "bad", ["ftp://example.com", "https://", "https://exa mple.com", "https://h/api?x=1", "h/api"]
)
def test_an_api_address_that_is_no_http_url_is_one_usage_line(
    resolve: Resolve, repo: str, bad: str
) -> None:
    with pytest.raises(UsageError, match=r"^--api-url: expected an http\(s\) URL, got "):
        resolve({}, repo=repo, api_url=bad)


def test_api_addresses_lose_blanks_and_a_trailing_slash() -> None:
    github = resolve_context({}, repo="owner/name", api_url=" https://ghe.example/api/v3/ ")
    assert (github.api_url, github.server_url) == (
        "https://ghe.example/api/v3",
        "https://ghe.example",
    )
    gitlab = resolve_gitlab_context({}, repo="group/name", api_url="https://gl.example/api/v4/")
    assert gitlab.server_url == "https://gl.example"
