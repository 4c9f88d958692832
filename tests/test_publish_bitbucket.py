"""`nbci publish` on Bitbucket Cloud and Data Center: the real client over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bitbucket_stub import COMMENT_LIMIT, BitbucketCloudStub, BitbucketDataCenterStub
from http_stub import Reply
from test_publish import FAST, fetch, make_run

from nbci.cli import ExitCode, main
from nbci.errors import PublishError, UsageError
from nbci.gates import parse_gates
from nbci.model import Job, NotebookResult
from nbci.publish import PublishOptions, publish
from nbci.publish.bitbucket.forge import ASSETS_ROOT, report_key
from nbci.publish.connect import detect_forge
from nbci.publish.index import INDEX_FILE, parse

BOT = "{bot-uuid-1}"
MARKER = "[//]: # (nbci:report:nbci)"
"""nbci's marker as Bitbucket stores it: a link reference definition, rendered as nothing."""
HTML_TAG = re.compile(r"<(table|tr|td|img|details|summary|sub|br|b|i|!--)\b")


def image_urls(body: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", body)


@pytest.fixture
def bb() -> Iterator[BitbucketCloudStub]:
    with BitbucketCloudStub() as stub:
        yield stub


@pytest.fixture
def main_history(bb: BitbucketCloudStub) -> list[str]:
    return bb.add_history(5)


def pipelines_env(bb: BitbucketCloudStub, **extra: str) -> dict[str, str]:
    """Bitbucket Pipelines' variables in the stand-in's repository."""
    workspace, slug = bb.repo.split("/")
    env = {
        "CI": "true",
        "BITBUCKET_BUILD_NUMBER": "77",
        "BITBUCKET_REPO_FULL_NAME": bb.repo,
        "BITBUCKET_WORKSPACE": workspace,
        "BITBUCKET_REPO_SLUG": slug,
        "BITBUCKET_TOKEN": bb.token,
    }
    env.update(extra)
    return env


def pr_env(bb: BitbucketCloudStub, number: int, **extra: str) -> dict[str, str]:
    pull = bb.pull_requests[number]
    variables = {
        "BITBUCKET_PR_ID": str(number),
        "BITBUCKET_COMMIT": pull.head,
        "BITBUCKET_BRANCH": pull.source_branch,
        "BITBUCKET_PR_DESTINATION_BRANCH": pull.destination_branch,
    }
    return pipelines_env(bb, **{**variables, **extra})


def push_env(bb: BitbucketCloudStub, sha: str, branch: str = "main") -> dict[str, str]:
    return pipelines_env(bb, BITBUCKET_COMMIT=sha, BITBUCKET_BRANCH=branch)


def options(bb: BitbucketCloudStub, out: Path, **kw: object) -> PublishOptions:
    api = f"{bb.base_url}/2.0"
    return PublishOptions(out_dir=out, retry=FAST, api_url=api, **kw)  # type: ignore[arg-type]


def store_baseline(bb: BitbucketCloudStub, tmp_path: Path, sha: str, accuracy: float = 0.8) -> None:
    out = make_run(tmp_path / f"base-{sha[:6]}", accuracy=accuracy, figures={"confusion": 7})
    outcome = publish(options(bb, out), push_env(bb, sha))
    assert outcome.kind == "baseline" and outcome.stored_baseline


# -- where it runs ------------------------------------------------------------------


def test_bitbucket_pipelines_is_recognised_and_the_flag_overrides(bb: BitbucketCloudStub) -> None:
    assert detect_forge(pipelines_env(bb)) == "bitbucket"
    assert detect_forge(pipelines_env(bb), "github") == "github"
    assert detect_forge({}, "bitbucket") == "bitbucket"
    assert detect_forge({"GITLAB_CI": "true"}) == "gitlab"
    assert detect_forge({}) == "github"
    with pytest.raises(UsageError, match="github, gitlab or bitbucket"):
        detect_forge({}, "gitea")


# -- Cloud: baseline, comment, images, status, Code Insights --------------------------


def test_default_branch_publish_stores_the_baseline_in_one_commit(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    sha = main_history[-1]
    outcome = publish(
        options(bb, make_run(tmp_path / "out", figures={"a": 1, "b": 2})), push_env(bb, sha)
    )
    assert outcome.kind == "baseline" and outcome.stored_baseline
    stored = bb.file_at("nbci-assets", f"{ASSETS_ROOT}/runs/{sha}/nbci/results.json")
    assert stored is not None and b'"accuracy"' in stored
    assert bb.file_at("nbci-assets", f"{ASSETS_ROOT}/runs/{sha}/nbci/figures/train/b.png")
    assert bb.file_at("nbci-assets", f"{ASSETS_ROOT}/{INDEX_FILE}")
    (commit,) = bb.calls("POST", r"/src$")  # results, two figures and the index: one request
    assert commit.status == 201
    (status,) = bb.statuses
    assert (status["sha"], status["state"], status["key"]) == (sha, "SUCCESSFUL", "nbci")
    assert status["url"] == f"{bb.base_url}/{bb.repo}/pipelines/results/77"
    report = bb.reports[(sha, report_key("nbci"))]
    assert report["result"] == "PASSED" and report["report_type"] == "TEST"
    data = {d["title"]: d["value"] for d in report["data"]}
    assert data["Notebooks passed"] == 1 and data["train: accuracy"] == 0.9


def test_a_pr_gets_one_comment_with_images_then_it_is_edited(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    store_baseline(bb, tmp_path, main_history[-1], accuracy=0.8)
    pull = bb.add_pull_request(7, base=main_history[-1])
    out = make_run(tmp_path / "out", accuracy=0.9, figures={"confusion": 1, "roc": 2})
    commits_before = len(bb.calls("POST", r"/src$"))

    first = publish(options(bb, out), pr_env(bb, 7))

    assert first.kind == "pull_request" and first.review == "pull request #7"
    assert first.baseline_sha == main_history[-1]  # the destination branch's stored run
    (comment,) = bb.pr_comments(7)
    assert comment["body"].startswith(MARKER) and comment["user"] == BOT
    assert "0.8" in comment["body"] and "0.9" in comment["body"]
    urls = image_urls(comment["body"])
    assert len(urls) >= 2
    for url in urls:
        assert f"/raw/{first.assets_commit}/" in url
        assert fetch(url).startswith(b"\x89PNG")
    assert len(bb.calls("POST", r"/src$")) == commits_before + 1
    assert first.comment_url == f"{bb.web_url}/pull-requests/7#comment-{comment['id']}"
    assert not HTML_TAG.search(comment["body"])  # Bitbucket escapes HTML: none is sent
    assert "| confusion" in comment["body"]  # the figure table, as a markdown table

    make_run(out, accuracy=0.95, figures={"confusion": 5})
    publish(options(bb, out), pr_env(bb, 7))
    (edited,) = bb.pr_comments(7)
    assert edited["id"] == comment["id"] and "0.95" in edited["body"]
    assert bb.calls("PUT", rf"/comments/{comment['id']}$")
    assert bb.file_at("nbci-assets", f"{ASSETS_ROOT}/pr/7/figures/train/roc.png") is None  # stale
    assert {s["sha"] for s in bb.statuses} == {main_history[-1], pull.head}


def test_status_and_code_insights_on_the_head_of_a_failing_pr(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    store_baseline(bb, tmp_path, main_history[-1], accuracy=0.9)
    pull = bb.add_pull_request(8, base=main_history[-1])
    broken = NotebookResult.of(Job("prep", "notebooks/prep.ipynb"), "failed", "boom")
    out = make_run(tmp_path / "out", accuracy=0.7, extra=(broken,))
    gates = parse_gates({"accuracy": {"min": 0.8}}, "nbci.toml")

    outcome = publish(options(bb, out, name="nightly", gates=gates), pr_env(bb, 8))

    assert not outcome.passed and outcome.sha == pull.head
    (status,) = [s for s in bb.statuses if s["sha"] == pull.head]
    assert (status["state"], status["key"], status["name"]) == ("FAILED", "nightly", "nightly")
    report = bb.reports[(pull.head, report_key("nightly"))]
    assert report["result"] == "FAILED" and "1 failed" in report["details"]
    notes = bb.annotations[(pull.head, report_key("nightly"))]
    by_key = {a["external_id"]: a for a in notes}
    assert by_key["notebook-prep"]["path"] == "notebooks/prep.ipynb"
    assert "boom" in by_key["notebook-prep"]["summary"]
    (gate,) = [a for a in notes if a["external_id"].startswith("gate-")]
    assert "accuracy" in gate["summary"] and gate["result"] == "FAILED"

    publish(options(bb, make_run(out, accuracy=0.9), name="nightly", gates=gates), pr_env(bb, 8))
    assert bb.reports[(pull.head, report_key("nightly"))]["result"] == "PASSED"
    assert bb.annotations[(pull.head, report_key("nightly"))] == []  # replaced with the report


def test_the_comment_on_page_3_of_150_is_found(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    bb.add_pull_request(9, base=main_history[-1])
    bb.max_per_page = 50  # a server that caps pages lower than asked: follow `next`
    ours = None
    for i in range(150):
        if i == 119:
            ours = bb.add_comment(9, MARKER + "\nold report", user=BOT)
        elif i == 130:
            bb.add_comment(9, "> " + MARKER + "\n> quoted by a person", user="{someone}")
        else:
            bb.add_comment(9, f"review comment {i}")
    assert ours is not None
    outcome = publish(options(bb, make_run(tmp_path / "out")), pr_env(bb, 9))
    assert bb.calls("PUT", rf"/comments/{ours['id']}$")
    assert not bb.calls("POST", r"/comments$")
    reads = bb.calls("GET", r"/pullrequests/9/comments$")
    assert [r.query.get("page", "1") for r in reads] == ["1", "2", "3"]  # ours is on page 3
    assert outcome.comment_url and outcome.comment_url.endswith(f"#comment-{ours['id']}")


def test_a_race_duplicate_is_removed_and_another_reports_comment_is_left(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    bb.add_pull_request(10, base=main_history[-1])
    other_report = bb.add_comment(10, MARKER.replace(":nbci)", ":nightly)"), user=BOT)
    other_job: list[dict[str, Any]] = []  # another pipeline's publish creates its comment meanwhile
    bb.before_next(
        "POST", r"/comments$", lambda: other_job.append(bb.add_comment(10, MARKER, user=BOT))
    )
    outcome = publish(options(bb, make_run(tmp_path / "out")), pr_env(bb, 10))
    left = {c["id"]: c for c in bb.pr_comments(10)}
    ours = [c for c in left.values() if c["body"].startswith(MARKER)]
    assert len(ours) == 1 and ours[0]["id"] != other_job[0]["id"]
    assert bb.calls("DELETE", rf"/comments/{other_job[0]['id']}$")
    assert other_report["id"] in left  # another report name's comment is not ours to touch
    assert outcome.comment_url and outcome.comment_url.endswith(f"#comment-{ours[0]['id']}")


@pytest.mark.parametrize("honours", ["first parents only"])
def test_a_merged_branchs_stored_runs_are_never_the_baseline(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path, honours: str
) -> None:
    """Bitbucket lists every ancestor: only first parents of the destination are followed."""
    store_baseline(bb, tmp_path, main_history[-1], accuracy=0.5)
    feature, merge = bb.add_merged_branch(2)
    for sha in feature:
        store_baseline(bb, tmp_path, sha, accuracy=0.99)
    bb.add_pull_request(11, base=merge)
    outcome = publish(options(bb, make_run(tmp_path / "out", accuracy=0.75)), pr_env(bb, 11))
    assert outcome.baseline_sha == main_history[-1]
    (comment,) = bb.pr_comments(11)
    assert "1 commit before the base commit" in comment["body"]


def test_the_report_fits_bitbuckets_comment_limit(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    bb.add_pull_request(12, base=main_history[-1])
    many = tuple(
        NotebookResult.of(Job(f"job-{i}", f"notebooks/n{i}.ipynb"), "failed", "x" * 400)
        for i in range(300)
    )
    outcome = publish(options(bb, make_run(tmp_path / "out", extra=many)), pr_env(bb, 12))
    (comment,) = bb.pr_comments(12)
    assert outcome.comment_url
    assert comment["body"].startswith(MARKER)
    assert 20_000 < len(comment["body"]) <= COMMENT_LIMIT  # the stand-in refuses longer


# -- Cloud: tokens and faults -----------------------------------------------------------


def test_502_then_429_are_retried_with_logged_waits(
    bb: BitbucketCloudStub,
    main_history: list[str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    retry_waits: list[float],
) -> None:
    bb.add_pull_request(13, base=main_history[-1])
    bb.fail("POST", r"/pullrequests/13/comments$", 502, times=1)
    bb.rate_limit("POST", r"/statuses/build$", retry_after=1)
    bb.reset_connection("GET", r"/pullrequests/13$")
    caplog.set_level(logging.WARNING, logger="nbci")
    outcome = publish(options(bb, make_run(tmp_path / "out")), pr_env(bb, 13))
    assert outcome.comment_url and len(bb.pr_comments(13)) == 1
    assert [r.status for r in bb.calls("POST", r"/pullrequests/13/comments$")] == [502, 201]
    assert [r.status for r in bb.calls("POST", r"/statuses/build$")] == [429, 201]
    assert "Bitbucket answered 502" in caplog.text and "Bitbucket answered 429" in caplog.text
    assert "in 1.0 s" in caplog.text and "connection failed" in caplog.text
    assert 1.0 in retry_waits


def test_a_token_without_the_write_scope_ends_in_one_line_naming_it(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    bb.tokens[bb.token] = ("repository", "pullrequest")
    bb.add_pull_request(14, base=main_history[-1])
    with pytest.raises(PublishError) as caught:
        publish(options(bb, make_run(tmp_path / "out")), pr_env(bb, 14))
    message = str(caught.value)
    assert "\n" not in message and "403" in message
    assert "the token needs the `pullrequest:write` scope" in message
    assert bb.token not in message
    assert [r.status for r in bb.calls("POST", r"/src$")] == [403]  # figures refused too
    assert bb.pr_comments(14) == []


def test_a_limit_beyond_the_budget_is_not_waited_for(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    bb.add_pull_request(15, base=main_history[-1])
    bb.rate_limit("GET", r"/pullrequests/15$", retry_after=3600)
    with pytest.raises(PublishError, match="rate limit") as caught:
        publish(options(bb, make_run(tmp_path / "out")), pr_env(bb, 15))
    assert "\n" not in str(caught.value)
    assert len(bb.calls("GET", r"/pullrequests/15$")) == 1


def test_the_token_is_absent_from_all_output(
    bb: BitbucketCloudStub,
    main_history: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    retry_waits: list[float],
) -> None:
    bb.add_pull_request(16, base=main_history[-1])
    bb.fail("POST", r"/comments$", 500, times=1)
    out = make_run(tmp_path / "out")
    for key in [k for k in os.environ if k.startswith(("GITLAB", "CI_", "GITHUB"))]:
        monkeypatch.delenv(key)
    for key, value in pr_env(bb, 16).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    args = ["publish", str(out), "--api-url", f"{bb.base_url}/2.0"]
    assert main(args) == 0
    bb.tokens.clear()  # now the token is refused: the 401 message must not show it either
    assert main(args) == ExitCode.PUBLISH
    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text
    assert "Commented on pull request #16" in captured.out
    assert "Bitbucket rejected the token in $BITBUCKET_TOKEN" in captured.err
    assert bb.token not in everything
    assert all(bb.token not in r.path + str(r.query) for r in bb.requests)  # never in a URL


def test_a_fork_pr_pipeline_leaves_the_report_in_the_artifacts(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    bb.add_pull_request(17, base=main_history[-1])
    env = pr_env(bb, 17)
    del env["BITBUCKET_TOKEN"]  # Bitbucket withholds secured variables from fork PR pipelines
    outcome = publish(options(bb, make_run(tmp_path / "out")), env)
    assert outcome.kind == "artifact" and outcome.passed
    (line,) = outcome.lines
    assert "artifacts" in line and "forks" in line and "BITBUCKET_TOKEN" in line
    assert bb.requests == []


def test_check_runs_are_github_only(bb: BitbucketCloudStub, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--check"):
        publish(options(bb, make_run(tmp_path / "out"), check=True), push_env(bb, "a" * 40))
    assert bb.requests == []


def test_the_flags_mean_the_same_outside_pipelines(
    bb: BitbucketCloudStub,
    main_history: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pull = bb.add_pull_request(18, base=main_history[-1])
    for key in [k for k in os.environ if k.startswith(("GITLAB", "CI_", "GITHUB", "BITBUCKET"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MY_BB_TOKEN", bb.token)
    monkeypatch.chdir(tmp_path)
    args = ["publish", str(make_run(tmp_path / "out")), "--forge", "bitbucket", "--repo", bb.repo]
    args += ["--pr", "18", "--api-url", f"{bb.base_url}/2.0", "--token-env", "MY_BB_TOKEN"]
    assert main([*args, "--run-url", "https://ci.example.com/build/5"]) == 0
    (status,) = bb.statuses
    assert (status["sha"], status["url"]) == (pull.head, "https://ci.example.com/build/5")
    assert "Commented on pull request #18" in capsys.readouterr().out


# -- Data Center ----------------------------------------------------------------------


@pytest.fixture
def dc() -> Iterator[BitbucketDataCenterStub]:
    with BitbucketDataCenterStub() as stub:
        yield stub


def dc_options(
    dc: BitbucketDataCenterStub, out: Path, pr: int | None, sha: str | None, **kw: object
) -> PublishOptions:
    return PublishOptions(
        out_dir=out,
        retry=FAST,
        forge="bitbucket",
        repo=f"{dc.project}/{dc.slug}",
        pr=pr,
        sha=sha,
        api_url=dc.base_url,
        run_url="https://jenkins.example.com/job/nbci/12/",
        **kw,  # type: ignore[arg-type]
    )


DC_ENV = {"BITBUCKET_TOKEN": BitbucketDataCenterStub().token}


def dc_baseline(dc: BitbucketDataCenterStub, tmp_path: Path, sha: str, accuracy: float) -> None:
    out = make_run(tmp_path / f"base-{sha[:6]}", accuracy=accuracy, figures={"confusion": 7})
    env = {**DC_ENV, "BITBUCKET_BRANCH": "main"}  # what a Jenkins job would pass on
    outcome = publish(dc_options(dc, out, None, sha), env)
    assert outcome.kind == "baseline" and outcome.stored_baseline


def test_data_center_stores_a_baseline_one_file_a_commit(
    dc: BitbucketDataCenterStub, tmp_path: Path
) -> None:
    sha = dc.add_history(3)[-1]
    dc_baseline(dc, tmp_path, sha, 0.8)
    stored = dc.file_at("nbci-assets", f"{ASSETS_ROOT}/runs/{sha}/nbci/results.json")
    assert stored is not None and b'"accuracy"' in stored
    puts = dc.calls("PUT", r"/browse/")
    assert [r.status for r in puts] == [200, 200, 200]  # results, a figure, then the index
    assert puts[-1].path.endswith(INDEX_FILE)
    (status,) = dc.statuses
    assert (status["sha"], status["state"], status["key"]) == (sha, "SUCCESSFUL", "nbci")
    assert status["url"] == "https://jenkins.example.com/job/nbci/12/"
    assert dc.reports[(sha, report_key("nbci"))]["result"] == "PASS"

    dc_baseline(dc, tmp_path, sha, 0.8)  # the same again: nothing rewritten
    assert len(dc.calls("PUT", r"/browse/")) == 3


def test_data_center_prunes_its_index_only_and_never_fails_over_it(
    dc: BitbucketDataCenterStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """REST 1.0 cannot delete files: pruned runs leave the index, their files stay."""
    shas = dc.add_history(3)
    for sha in shas[:2]:
        dc_baseline(dc, tmp_path, sha, 0.8)
    out = make_run(tmp_path / "newest", accuracy=0.8)
    env = {**DC_ENV, "BITBUCKET_BRANCH": "main"}
    with caplog.at_level(logging.WARNING):
        outcome = publish(dc_options(dc, out, None, shas[2], keep_runs=1, history=1), env)
    assert outcome.stored_baseline and outcome.baseline_sha == shas[1]
    index = parse(dc.file_at("nbci-assets", f"{ASSETS_ROOT}/{INDEX_FILE}") or b"", "index")
    assert [e.folder for e in index.entries] == [f"runs/{shas[2]}/nbci"]
    assert dc.file_at("nbci-assets", f"{ASSETS_ROOT}/runs/{shas[0]}/nbci/results.json")
    assert "cannot delete files" in caplog.text


def test_data_center_pr_comment_images_baseline_and_insights(
    dc: BitbucketDataCenterStub, tmp_path: Path
) -> None:
    history = dc.add_history(4)
    dc_baseline(dc, tmp_path, history[-2], 0.8)
    pull = dc.add_pull_request(21, base=history[-1])  # the base itself has no stored run
    broken = NotebookResult.of(Job("prep", "notebooks/prep.ipynb"), "failed", "boom")
    out = make_run(tmp_path / "out", accuracy=0.9, extra=(broken,))

    first = publish(dc_options(dc, out, 21, None), DC_ENV)

    assert first.baseline_sha == history[-2] and first.sha == pull.head
    (comment,) = dc.pr_comments(21)
    assert (
        comment["body"].startswith(MARKER) and "1 commit before the base commit" in comment["body"]
    )
    for url in image_urls(comment["body"]):
        assert fetch(url).startswith(b"\x89PNG")
    (status,) = [s for s in dc.statuses if s["sha"] == pull.head]
    assert status["state"] == "FAILED"
    key = (pull.head, report_key("nbci"))
    assert dc.reports[key]["result"] == "FAIL" and len(dc.reports[key]["data"]) <= 6
    (note,) = dc.annotations[key]
    assert note["path"] == "notebooks/prep.ipynb" and "boom" in note["message"]

    publish(dc_options(dc, out, 21, None), DC_ENV)
    (edited,) = dc.pr_comments(21)
    assert edited["id"] == comment["id"] and edited["version"] == 1
    assert len(dc.annotations[key]) == 1  # the old annotations were deleted first


def test_data_center_comment_on_page_3_and_a_race_duplicate(
    dc: BitbucketDataCenterStub, tmp_path: Path
) -> None:
    history = dc.add_history(2)
    dc.add_pull_request(22, base=history[-1])
    ours = None
    for i in range(70):
        if i == 2:  # activities list newest first: the oldest comments come last
            ours = dc.add_comment(22, MARKER + "\nold", user="nbci-bot")
        else:
            dc.add_comment(22, f"review comment {i}")
    assert ours is not None
    publish(dc_options(dc, make_run(tmp_path / "a"), 22, None), DC_ENV)
    reads = dc.calls("GET", r"/pull-requests/22/activities$")
    assert [r.query.get("start") for r in reads] == ["0", "25", "50"]
    assert [c["id"] for c in dc.pr_comments(22) if c["body"].startswith(MARKER)] == [ours["id"]]

    dc.add_pull_request(23, base=history[-1])
    other: list[dict[str, Any]] = []
    dc.before_next(
        "POST", r"/23/comments$", lambda: other.append(dc.add_comment(23, MARKER, user="nbci-bot"))
    )
    publish(dc_options(dc, make_run(tmp_path / "b"), 23, None), DC_ENV)
    left = [c for c in dc.pr_comments(23) if c["body"].startswith(MARKER)]
    assert len(left) == 1 and left[0]["id"] != other[0]["id"]


def test_data_center_read_only_token_comments_but_hosts_nothing(
    dc: BitbucketDataCenterStub, tmp_path: Path
) -> None:
    history = dc.add_history(2)
    dc.add_pull_request(24, base=history[-1])
    dc.tokens[dc.token] = ("REPO_READ",)
    outcome = publish(dc_options(dc, make_run(tmp_path / "out"), 24, None), DC_ENV)
    assert any(
        "figures not hosted" in note and "Repository write" in note for note in outcome.notes
    )
    (comment,) = dc.pr_comments(24)
    assert "figures not hosted" in comment["body"] and dc.token not in comment["body"]

    with pytest.raises(PublishError) as caught:  # storing a baseline is the point: it fails
        dc_baseline(dc, tmp_path, history[-1], 0.8)
    message = str(caught.value)
    assert "\n" not in message and "Repository write" in message and dc.token not in message


def test_data_center_502_then_429_are_retried(
    dc: BitbucketDataCenterStub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    retry_waits: list[float],
) -> None:
    history = dc.add_history(2)
    dc.add_pull_request(25, base=history[-1])
    dc.fail("POST", r"/25/comments$", 502, times=1)
    dc.rate_limit("POST", r"/builds$", retry_after=1)
    caplog.set_level(logging.WARNING, logger="nbci")
    outcome = publish(dc_options(dc, make_run(tmp_path / "out"), 25, None), DC_ENV)
    assert outcome.comment_url and len(dc.pr_comments(25)) == 1
    assert [r.status for r in dc.calls("POST", r"/builds$")] == [429, 204]
    assert "Bitbucket answered 502" in caplog.text and "in 1.0 s" in caplog.text
    assert 1.0 in retry_waits


# -- Cloud: history, stored data, races --------------------------------------------------


def test_history_from_the_destination_branch(bb: BitbucketCloudStub, tmp_path: Path) -> None:
    """The stored runs of the destination branch's last commits give each metric its range."""
    from test_publish_history import NOISY, PNG, run_dir

    shas = bb.add_history(len(NOISY))
    for i, (sha, timing) in enumerate(zip(shas, NOISY, strict=True)):
        out = run_dir(tmp_path / f"main-{i}", train_time_s=timing, accuracy=0.9)
        assert publish(options(bb, out), push_env(bb, sha)).stored_baseline
    bb.add_pull_request(30, base=shas[-1])
    head = run_dir(tmp_path / "pr", train_time_s=NOISY[-1] + 1.0, accuracy=0.7)
    reads_before = len(bb.calls("GET", r"/src/"))

    outcome = publish(options(bb, head), pr_env(bb, 30))

    (comment,) = bb.pr_comments(30)
    assert "within the base branch's range" in comment["body"]
    assert "below the base branch's range" in comment["body"]
    for url in [u for u in image_urls(comment["body"]) if "/trends/" in u]:
        assert f"/raw/{outcome.assets_commit}/" in url and fetch(url).startswith(PNG)
    reads = bb.calls("GET", r"/src/")[reads_before:]
    listed = [r.path.split(f"/{ASSETS_ROOT}/", 1)[-1] for r in reads if r.path.endswith("/")]
    assert sorted(listed) == ["pr/30/nbci/", f"runs/{shas[-1]}/nbci/"]  # one folder each, no tree
    files = [r for r in reads if not r.path.endswith("/")]
    assert all(r.path.endswith(("results.json", INDEX_FILE)) for r in files)  # by path
    assert len(files) <= len(NOISY) + 1


def test_a_tampered_stored_baseline_or_index_is_rejected_not_trusted(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    store_baseline(bb, tmp_path, main_history[-1])
    path = f"{ASSETS_ROOT}/runs/{main_history[-1]}/nbci/results.json"
    tip = bb.commits[bb.branches["nbci-assets"]]
    bb.blobs[tip["files"][path]] = b"[1,"
    bb.add_pull_request(31, base=main_history[-1])
    outcome = publish(options(bb, make_run(tmp_path / "out")), pr_env(bb, 31))
    assert outcome.baseline_sha is None
    assert any("stored baseline was rejected" in note for note in outcome.notes)

    index = f"{ASSETS_ROOT}/{INDEX_FILE}"
    hostile = json.dumps(  # an index of the right schema naming a file outside its folder
        {
            "schema": "nbci.assets-index/1",
            "entries": [
                {
                    "folder": f"runs/{main_history[-1]}/nbci",
                    "kind": "run",
                    "key": main_history[-1],
                    "report": "nbci",
                    "written": "2026-01-01T00:00:00Z",
                    "files": ["../../etc/passwd", "results.json"],
                    "blobs": [["a" * 40, 1], ["b" * 40, 2]],
                }
            ],
        }
    ).encode()
    bb.blobs[bb.commits[bb.branches["nbci-assets"]]["files"][index]] = hostile
    publish(options(bb, make_run(tmp_path / "again")), pr_env(bb, 31))
    assert not [r for r in bb.requests if "passwd" in r.path]
    (comment,) = bb.pr_comments(31)
    assert comment["body"].startswith(MARKER)


def test_a_branch_of_the_earlier_bitbucket_layout_is_listed_once_then_indexed(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    """nbci on Bitbucket kept a manifest.json and no index.json: the branch is listed whole
    once (its stored run still the baseline), then read through the index it got."""
    base = main_history[-1]
    results = (make_run(tmp_path / "old", accuracy=0.8) / "results.json").read_bytes()
    manifest = b'{"version": 1, "files": {}}'
    bb.put_files(
        "nbci-assets",
        {
            f"{ASSETS_ROOT}/runs/{base}/nbci/results.json": results,
            f"{ASSETS_ROOT}/manifest.json": manifest,
        },
    )
    whole = rf"/src/[0-9a-f]{{40}}/{re.escape(ASSETS_ROOT)}/$"
    for number in (40, 41):
        bb.add_pull_request(number, base=base)
        outcome = publish(options(bb, make_run(tmp_path / f"pr{number}")), pr_env(bb, number))
        assert outcome.baseline_sha == base
        assert len(bb.calls("GET", whole)) == 1  # the first publish only
    index = parse(bb.file_at("nbci-assets", f"{ASSETS_ROOT}/{INDEX_FILE}") or b"", "index")
    assert f"runs/{base}/nbci" in {e.folder for e in index.entries}


def test_an_assets_commit_racing_another_publish_is_redone_from_the_new_tip(
    bb: BitbucketCloudStub, main_history: list[str], tmp_path: Path
) -> None:
    store_baseline(bb, tmp_path, main_history[-1])
    bb.add_pull_request(32, base=main_history[-1])

    def other_publish() -> None:  # lands between our read of the branch and our commit
        tip = bb.branches["nbci-assets"]
        files = dict(bb.commits[tip]["files"])
        files[f"{ASSETS_ROOT}/pr/99/x.png"] = bb.store_blob(b"theirs")
        bb.branches["nbci-assets"] = bb.store_commit("other", files, [tip])

    bb.before_next("POST", r"/src$", other_publish)
    outcome = publish(options(bb, make_run(tmp_path / "out")), pr_env(bb, 32))
    assert [r.status for r in bb.calls("POST", r"/src$")][-2:] == [409, 201]
    assert outcome.assets_commit == bb.branches["nbci-assets"]
    assert bb.file_at("nbci-assets", f"{ASSETS_ROOT}/pr/99/x.png") == b"theirs"  # kept
    figure = bb.file_at("nbci-assets", f"{ASSETS_ROOT}/pr/32/nbci/figures/train/roc.png")
    assert figure is not None and figure.startswith(b"\x89PNG")


def test_a_page_link_to_another_host_is_not_followed(
    bb: BitbucketCloudStub,
    main_history: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The token goes only where --api-url points: a `next` link elsewhere ends the publish."""
    bb.add_pull_request(33, base=main_history[-1])
    for i in range(120):
        bb.add_comment(33, f"review comment {i}")
    elsewhere = BitbucketCloudStub(token="unused").serve()
    try:
        paged = bb._page

        def page_elsewhere(items: list[Any], query: dict[str, str], path: str) -> Reply:
            status, answer, headers = paged(items, query, path)
            if "next" in answer:
                answer["next"] = answer["next"].replace(bb.base_url, elsewhere.base_url)
            return status, answer, headers

        monkeypatch.setattr(bb, "_page", page_elsewhere)
        with pytest.raises(PublishError, match="another host") as caught:
            publish(options(bb, make_run(tmp_path / "out")), pr_env(bb, 33))
        assert "\n" not in str(caught.value) and bb.token not in str(caught.value)
        assert elsewhere.requests == []
    finally:
        elsewhere.close()


def test_data_center_edit_racing_another_edit_uses_the_new_version(
    dc: BitbucketDataCenterStub, tmp_path: Path
) -> None:
    history = dc.add_history(2)
    dc.add_pull_request(26, base=history[-1])
    ours = dc.add_comment(26, MARKER + "\nold", user="nbci-bot")

    def other_publish_edits() -> None:
        ours["body"], ours["version"] = MARKER + "\ntheirs", 1

    dc.before_next("PUT", rf"/comments/{ours['id']}$", other_publish_edits)
    publish(dc_options(dc, make_run(tmp_path / "out"), 26, None), DC_ENV)
    assert [r.status for r in dc.calls("PUT", rf"/comments/{ours['id']}$")] == [409, 200]
    (comment,) = dc.pr_comments(26)
    assert comment["version"] == 2 and "theirs" not in comment["body"]


def test_bitbucket_markdown_converts_only_nbcis_own_html() -> None:
    from nbci.publish.bitbucket.markdown_dialect import from_bitbucket, to_bitbucket

    body = (
        "<!-- nbci:report:nightly -->\n### report\n"
        "<details><summary>Run <b>details</b></summary>\n\nx\n\n</details>\n"
        "<table>\n<tr><th>A</th><th>B</th></tr>\n<tr><td>a<br><sub>note | 2</sub></td>"
        '<td><img src="https://h/x.png" alt="fig [1]" width="360"></td></tr>\n</table>\n'
        "a notebook printed &lt;img src=&quot;https://evil/x&quot;&gt; and &lt;!-- x --&gt;"
    )
    converted = to_bitbucket(body)
    assert converted.startswith("[//]: # (nbci:report:nightly)\n")
    assert "**Run **details****" in converted and "</details>" not in converted
    assert "| A | B |\n|---|---|\n| a note \\| 2 | ![fig \\[1\\]](https://h/x.png) |" in converted
    assert "&lt;img src=&quot;https://evil/x&quot;&gt;" in converted  # escaped text stays text
    assert len(converted) <= len(body) + 1
    assert from_bitbucket(converted).startswith("<!-- nbci:report:nightly -->\n")
    assert from_bitbucket("> [//]: # (nbci:report:nbci)") == "> [//]: # (nbci:report:nbci)"
