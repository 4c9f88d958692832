"""Commits to an existing assets branch go in one GraphQL `createCommitOnBranch`.

Against the GitHub stand-in (PyGithub over real HTTP on 127.0.0.1, GraphQL at
/api/graphql sharing the REST endpoints' git objects): the number of requests a
publish makes does not grow with its figures and charts, every linked image is
on the branch at the linked commit, a concurrent writer is retried over, and a
read-only token or an exhausted GraphQL rate limit ends in the same one line as
on the REST path.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_stub import GitHubStub
from test_publish import fetch, image_urls, make_run, options, png, pr_env
from test_publish_review import with_curve

from nbci.errors import PublishError
from nbci.publish import PublishOptions, RetryPolicy, publish
from nbci.publish.github import graphql as github_graphql

BRANCH = "nbci-assets"
REFUSED = (
    "GitHub refused to let nbci commit figures to the nbci-assets branch (403 Resource "
    "not accessible by integration): the token needs `contents: write`; grant it with "
    "`permissions: {contents: write}` on the publishing job (a fork's pull_request token "
    "is read-only: publish from the workflow_run workflow that `nbci init` writes)"
)
"""What the REST path logged before this change, word for word."""


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub() as stub:
        yield stub


def with_branch(gh: GitHubStub) -> str:
    """The default branch's history and an assets branch that exists already; its tip."""
    gh.add_history(3)
    return gh.put_file(BRANCH, "README.md", b"nbci's figures\n")


def publish_figures(gh: GitHubStub, tmp_path: Path, count: int) -> int:
    """Requests one pull-request publish of `count` figures and a chart makes."""
    base = gh.add_history(1)[-1]
    gh.add_pull(9, base_sha=base)
    figures = {f"fig{i:02d}": i + 1 for i in range(count)}
    run_dir = with_curve(make_run(tmp_path / f"run{count}", figures=figures), [1.0, 0.5, 0.25])
    before = len(gh.requests)
    publish(options(run_dir), pr_env(gh, tmp_path, 9))
    return len(gh.requests) - before


def test_one_or_thirty_figures_cost_the_same_requests(tmp_path: Path) -> None:
    counts = {}
    for count in (1, 30):
        with GitHubStub() as gh:
            with_branch(gh)
            counts[count] = publish_figures(gh, tmp_path, count)
            (sent,) = gh.graphql_commits()
            additions = sent["fileChanges"]["additions"]
            assert len(additions) == count + 2  # the figures, the chart, the index
            assert not gh.calls("POST", r"/git/(blobs|trees|commits|refs)")
    assert counts[1] == counts[30]


def test_every_linked_image_is_on_the_branch_at_the_linked_commit(
    gh: GitHubStub, tmp_path: Path
) -> None:
    first = with_branch(gh)
    publish_figures(gh, tmp_path, 30)

    tip = gh.ref_sha(BRANCH)
    assert gh.commits[str(tip)]["parents"] == [first]
    assert gh.file_at(str(tip), "README.md") == b"nbci's figures\n"  # the rest is kept
    urls = image_urls(gh.pr_comments(9)[0]["body"])
    assert len(urls) == 31  # 30 figures and the chart
    for url in urls:
        assert f"/{gh.repo}/raw/{tip}/" in url
        assert fetch(url)[:4] == b"\x89PNG"
    assert fetch(next(u for u in urls if u.endswith("/fig07.png"))) == png(8)


def test_a_branch_moved_meanwhile_is_committed_to_from_its_new_tip(
    gh: GitHubStub, tmp_path: Path
) -> None:
    first = with_branch(gh)
    gh.move_branch_before("POST", r"^/api/graphql$", BRANCH)

    publish_figures(gh, tmp_path, 2)

    stale, fresh = gh.graphql_commits()
    assert stale["expectedHeadOid"] == first
    moved = gh.commits[str(gh.ref_sha(BRANCH))]["parents"][0]
    assert fresh["expectedHeadOid"] == moved != first
    assert gh.file_at(BRANCH, "concurrent/0.txt") == b"another writer\n"
    tip = gh.ref_sha(BRANCH)
    assert all(f"/raw/{tip}/" in url for url in image_urls(gh.pr_comments(9)[0]["body"]))


def test_a_read_only_token_says_the_same_line_as_on_the_rest_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nbci")
    notes, warned = {}, {}
    for existing in (False, True):
        with GitHubStub() as gh:
            if existing:
                with_branch(gh)
            gh.permissions["contents"] = "read"
            base = gh.add_history(1)[-1]
            gh.add_pull(5, base_sha=base)
            outcome = publish(
                options(make_run(tmp_path / f"ro{existing}")), pr_env(gh, tmp_path, 5)
            )
            assert outcome.assets_commit is None
            assert len(gh.graphql_commits()) == int(existing)
            notes[existing] = [n for n in outcome.notes if "contents: write" in n]
            warned[existing] = [
                r.getMessage() for r in caplog.records if "refused" in r.getMessage()
            ]
            caplog.clear()
    assert notes[True] == notes[False] and len(notes[True]) == 1
    (line,) = notes[True]
    assert line == "figures not hosted: the token lacks `contents: write`"
    assert warned[True] == warned[False] == [REFUSED]


def test_server_errors_on_the_mutation_are_retried(
    gh: GitHubStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nbci")
    with_branch(gh)
    gh.fail("POST", r"^/api/graphql$", 502, times=2)

    publish_figures(gh, tmp_path, 3)

    assert len(gh.graphql_commits()) == 3
    assert re.search(r"POST \S*/api/graphql: GitHub answered 502 Bad Gateway; retry 1", caplog.text)
    assert len(gh.paths_at(BRANCH)) == 1 + 3 + 1 + 1  # README, figures, chart, index


def test_an_answer_lost_after_the_commit_is_not_committed_twice(
    gh: GitHubStub, tmp_path: Path
) -> None:
    first = with_branch(gh)
    gh.fail_after_doing("POST", r"^/api/graphql$", 502)

    publish_figures(gh, tmp_path, 2)

    tip = str(gh.ref_sha(BRANCH))
    assert gh.commits[tip]["parents"] == [first]  # the retry saw STALE_DATA, then nothing new
    assert all(f"/raw/{tip}/" in url for url in image_urls(gh.pr_comments(9)[0]["body"]))


def test_a_payload_over_the_bound_is_split_into_commits_and_the_last_is_linked(
    gh: GitHubStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(github_graphql, "MUTATION_PAYLOAD_BYTES", 250)  # about two tiny PNGs
    first = with_branch(gh)
    publish_figures(gh, tmp_path, 1)
    earlier = len(gh.graphql_commits())

    policy = RetryPolicy(pace=False, backoff=0.05, max_wait=10, max_total_wait=30, timeout=10)
    run_dir = make_run(tmp_path / "big", figures={f"f{i}": i + 40 for i in range(5)})
    outcome = publish(PublishOptions(out_dir=run_dir, retry=policy), pr_env(gh, tmp_path, 9))

    sent = gh.graphql_commits()[earlier:]
    assert len(sent) > 1
    assert sent[0]["fileChanges"]["deletions"] and not sent[-1]["fileChanges"]["deletions"]
    for older, newer in itertools.pairwise(sent):
        assert newer["expectedHeadOid"] != older["expectedHeadOid"]
    tip = str(gh.ref_sha(BRANCH))
    assert outcome.assets_commit == tip and tip != first
    urls = image_urls(gh.pr_comments(9)[0]["body"])
    assert len(urls) == 5
    for url in urls:
        assert f"/raw/{tip}/" in url and fetch(url)[:4] == b"\x89PNG"


@pytest.mark.parametrize("kind", ["RATE_LIMITED", "RATE_LIMIT"])
def test_the_graphql_rate_limit_is_worded_as_the_rest_one(
    gh: GitHubStub, tmp_path: Path, kind: str
) -> None:
    with_branch(gh)
    gh.graphql_rate_limit(kind)
    base = gh.add_history(1)[-1]
    gh.add_pull(9, base_sha=base)

    with pytest.raises(PublishError) as caught:
        publish(options(make_run(tmp_path / "run", figures={"a": 1})), pr_env(gh, tmp_path, 9))

    said = str(caught.value)
    assert said.startswith(
        "GitHub's rate limit stopped nbci from trying to commit figures to the nbci-assets "
        "branch (403 API rate limit already exceeded for user ID 4242.; resets at "
    )
    assert said.endswith("UTC): nbci does not wait that long; run the job again later")
    assert len(gh.graphql_commits()) == 1  # asked once: the limit resets in an hour
