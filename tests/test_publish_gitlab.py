"""`nbci publish` on GitLab: python-gitlab over real HTTP against the loopback stand-in."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gitlab_stub import GitLabStub, Token
from test_publish import FAST, MARKER, fetch, image_urls, make_run

from nbci.cli import EXIT_PUBLISH, main
from nbci.errors import PublishError, UsageError
from nbci.publish import PublishOptions, publish
from nbci.publish.connect import detect_forge
from nbci.publish.gitlab.forge import ASSETS_ROOT


@pytest.fixture
def gl() -> Iterator[GitLabStub]:
    with GitLabStub() as stub:
        yield stub


@pytest.fixture
def main_history(gl: GitLabStub) -> list[str]:
    return gl.add_history(5)


def ci_env(gl: GitLabStub, **extra: str) -> dict[str, str]:
    """The predefined variables of a GitLab CI job in the stand-in's project."""
    env = {
        "GITLAB_CI": "true",
        "CI_SERVER_URL": gl.base_url,
        "CI_API_V4_URL": f"{gl.base_url}/api/v4",
        "CI_PROJECT_ID": "4242",
        "CI_PROJECT_PATH": gl.project,
        "CI_DEFAULT_BRANCH": gl.default_branch,
        "CI_PIPELINE_URL": f"{gl.web_url}/-/pipelines/777",
        "CI_JOB_TOKEN": "glcbt-jobTokenNeverUsed",
        "GITLAB_TOKEN": gl.token,
    }
    env.update(extra)
    return env


def mr_env(gl: GitLabStub, iid: int, **extra: str) -> dict[str, str]:
    mr = gl.merge_requests[iid]
    variables = {
        "CI_MERGE_REQUEST_IID": str(iid),
        "CI_MERGE_REQUEST_PROJECT_ID": "4242",
        "CI_MERGE_REQUEST_PROJECT_PATH": gl.project,
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "4242",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": mr.base_sha,
        "CI_MERGE_REQUEST_EVENT_TYPE": "detached",
        "CI_COMMIT_SHA": mr.sha,
    }
    return ci_env(gl, **{**variables, **extra})


def push_env(gl: GitLabStub, sha: str, branch: str = "main") -> dict[str, str]:
    return ci_env(gl, CI_COMMIT_SHA=sha, CI_COMMIT_BRANCH=branch)


def options(out: Path, **kw: object) -> PublishOptions:
    return PublishOptions(out_dir=out, retry=FAST, **kw)  # type: ignore[arg-type]


def store_baseline(gl: GitLabStub, tmp_path: Path, sha: str, accuracy: float = 0.8) -> None:
    out = make_run(tmp_path / f"base-{sha[:6]}", accuracy=accuracy, figures={"confusion": 7})
    outcome = publish(options(out), push_env(gl, sha))
    assert outcome.kind == "baseline" and outcome.stored_baseline


# -- where it runs ------------------------------------------------------------------


def test_gitlab_ci_is_recognised_and_the_flag_overrides() -> None:
    assert detect_forge({"GITLAB_CI": "true"}) == "gitlab"
    assert detect_forge({"GITHUB_ACTIONS": "true"}) == "github"
    assert detect_forge({"GITLAB_CI": "true"}, "github") == "github"
    assert detect_forge({}, "gitlab") == "gitlab"


# -- baseline, note, images, status ---------------------------------------------------


def test_default_branch_publish_stores_the_baseline(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    sha = main_history[-1]
    out = make_run(tmp_path / "out", figures={"confusion": 3})
    outcome = publish(options(out), push_env(gl, sha))
    assert outcome.kind == "baseline" and outcome.stored_baseline
    stored = gl.file_at("nbci-assets", f"{ASSETS_ROOT}/runs/{sha}/nbci/results.json")
    assert stored is not None and b'"accuracy"' in stored
    assert gl.file_at("nbci-assets", f"{ASSETS_ROOT}/runs/{sha}/nbci/figures/train/confusion.png")
    assert len(gl.calls("POST", r"/repository/commits$")) == 1
    (status,) = gl.statuses
    assert (status["sha"], status["status"], status["name"]) == (sha, "success", "nbci")
    assert status["target_url"] == f"{gl.web_url}/-/pipelines/777"


def test_mr_publish_creates_one_note_with_deltas_and_images_then_edits_it(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    store_baseline(gl, tmp_path, main_history[-1], accuracy=0.8)
    mr = gl.add_merge_request(7, base_sha=main_history[-1])
    out = make_run(tmp_path / "out", accuracy=0.9, figures={"confusion": 1, "roc": 2})
    commits_before = len(gl.calls("POST", r"/repository/commits$"))

    first = publish(options(out), mr_env(gl, 7))

    assert first.kind == "pull_request" and first.review == "merge request !7"
    assert first.baseline_sha == main_history[-1]
    (note,) = gl.mr_notes(7)
    assert note["body"].startswith(MARKER)
    assert "0.8" in note["body"] and "0.9" in note["body"]  # the delta against the baseline
    urls = image_urls(note["body"])
    assert len(urls) >= 2
    for url in urls:
        assert f"/-/raw/{first.assets_commit}/" in url
        assert fetch(url).startswith(b"\x89PNG")  # exists at the linked commit
    assert len(gl.calls("POST", r"/repository/commits$")) == commits_before + 1  # one commit
    assert first.comment_url == f"{gl.web_url}/-/merge_requests/7#note_{note['id']}"
    assert [line for line in first.lines if "merge request !7" in line]

    make_run(out, accuracy=0.95, figures={"confusion": 5})
    second = publish(options(out), mr_env(gl, 7))
    (edited,) = gl.mr_notes(7)
    assert edited["id"] == note["id"] and "0.95" in edited["body"]
    assert second.comment_url == first.comment_url
    assert gl.calls("PUT", rf"/notes/{note['id']}$")
    assert gl.file_at("nbci-assets", f"{ASSETS_ROOT}/pr/7/nbci/figures/train/roc.png") is None
    assert all(s["sha"] == mr.sha for s in gl.statuses if s["sha"] != main_history[-1])


def test_an_mr_is_compared_with_the_nearest_stored_first_parent_ancestor(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    gl.branches["nbci-assets"] = main_history[0]  # made by hand, without nbci's folder
    store_baseline(gl, tmp_path, main_history[1], accuracy=0.5)
    gl.add_merge_request(17, base_sha=main_history[-1])  # base has no stored run of its own
    outcome = publish(options(make_run(tmp_path / "out", accuracy=0.75)), mr_env(gl, 17))
    assert outcome.baseline_sha == main_history[1]
    (note,) = gl.mr_notes(17)
    assert "3 commits before the base commit" in note["body"]
    (history,) = gl.calls("GET", r"/repository/commits$")
    assert history.query["ref_name"] == main_history[-1]
    assert history.query["first_parent"].lower() == "true"


@pytest.mark.parametrize("honours_first_parent", [True, False])
def test_a_merged_branchs_stored_runs_are_never_the_baseline(
    gl: GitLabStub, main_history: list[str], tmp_path: Path, honours_first_parent: bool
) -> None:
    """Only first parents are followed, also where the server lists every ancestor."""
    gl.honours_first_parent = honours_first_parent
    store_baseline(gl, tmp_path, main_history[-1], accuracy=0.5)
    feature, merge = gl.add_merged_branch(2, main_commits=0)
    for sha in feature:
        store_baseline(gl, tmp_path, sha, accuracy=0.99)
    gl.add_merge_request(18, base_sha=merge)  # the merge commit has no stored run

    outcome = publish(options(make_run(tmp_path / "out", accuracy=0.75)), mr_env(gl, 18))

    assert outcome.baseline_sha == main_history[-1]
    (note,) = gl.mr_notes(18)
    assert "1 commit before the base commit" in note["body"]


def test_the_note_on_page_3_of_150_is_found(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    gl.add_merge_request(8, base_sha=main_history[-1])
    gl.max_per_page = 50  # a server that caps pages lower than asked: follow its links
    ours = None
    for i in range(150):
        if i == 119:
            ours = gl.add_note(8, MARKER + "\nold report", user="project_4242_bot_nbci")
        elif i % 40 == 1:
            gl.add_note(8, "changed the description", user="someone", system=True)
        else:
            gl.add_note(8, f"review comment {i}")
    assert ours is not None
    outcome = publish(options(make_run(tmp_path / "out")), mr_env(gl, 8))
    assert [n["id"] for n in gl.mr_notes(8) if n["body"].startswith(MARKER)] == [ours["id"]]
    assert gl.calls("PUT", rf"/notes/{ours['id']}$")
    assert not gl.calls("POST", r"/notes$")
    reads = gl.calls("GET", r"/merge_requests/8/notes$")
    assert [r.query.get("page", "1") for r in reads] == ["1", "2", "3"]  # ours is on page 3
    assert outcome.comment_url and outcome.comment_url.endswith(f"#note_{ours['id']}")


def test_a_race_duplicate_is_removed(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    gl.add_merge_request(9, base_sha=main_history[-1])
    quoting = gl.add_note(9, "> " + MARKER + "\n> what does this mean?", user="someone")
    bot = "project_4242_bot_nbci"
    # another pipeline's publish creates its note at the same time
    other_job: list[dict[str, Any]] = []
    gl.before_next(
        "POST",
        r"/merge_requests/9/notes$",
        lambda: other_job.append(gl.add_note(9, MARKER, user=bot)),
    )
    outcome = publish(options(make_run(tmp_path / "out")), mr_env(gl, 9))
    notes = gl.mr_notes(9)
    ours = [n for n in notes if n["author"]["username"] == bot]
    assert len(ours) == 1 and ours[0]["id"] != other_job[0]["id"]  # the older duplicate is gone
    assert gl.calls("DELETE", rf"/notes/{other_job[0]['id']}$")
    assert quoting["id"] in [n["id"] for n in notes]  # a person's note is never removed
    assert outcome.comment_url and outcome.comment_url.endswith(f"#note_{ours[0]['id']}")


def test_status_lands_on_the_head_sha_in_a_merged_results_pipeline(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    mr = gl.add_merge_request(10, base_sha=main_history[-1])
    merge_commit = "f" * 40  # what CI_COMMIT_SHA is in a merged-results pipeline
    env = mr_env(gl, 10, CI_MERGE_REQUEST_EVENT_TYPE="merged_result", CI_COMMIT_SHA=merge_commit)
    out = make_run(tmp_path / "out", status="failed")
    outcome = publish(options(out, name="nightly"), env)
    (status,) = gl.statuses
    assert status["sha"] == mr.sha == outcome.sha
    assert (status["status"], status["name"]) == ("failed", "nightly")
    assert "1 failed" in status["description"]
    env["CI_MERGE_REQUEST_SOURCE_BRANCH_SHA"] = mr.sha
    publish(options(out, name="nightly"), env)
    assert gl.statuses[-1]["sha"] == mr.sha


# -- tokens and faults ---------------------------------------------------------------


def test_ci_job_token_only_says_what_to_create_and_writes_nothing(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    gl.add_merge_request(11, base_sha=main_history[-1])
    env = mr_env(gl, 11)
    del env["GITLAB_TOKEN"]
    with pytest.raises(PublishError) as caught:
        publish(options(make_run(tmp_path / "out")), env)
    message = str(caught.value)
    assert "\n" not in message and "CI_JOB_TOKEN" in message
    for words in ("project access token", "Developer", "`api`", "masked CI/CD variable"):
        assert words in message
    assert gl.requests == []  # not a single request, let alone a write


def test_a_token_without_the_role_ends_in_one_line_naming_it(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    gl.tokens[gl.token] = Token(role="reporter")
    gl.add_merge_request(12, base_sha=main_history[-1])
    with pytest.raises(PublishError) as caught:
        publish(options(make_run(tmp_path / "out")), mr_env(gl, 12))
    message = str(caught.value)
    assert "\n" not in message and "403" in message
    assert "`api` scope" in message and "Developer role" in message
    assert gl.token not in message


def test_502_and_429_are_retried_with_logged_waits(
    gl: GitLabStub,
    main_history: list[str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    retry_waits: list[float],
) -> None:
    gl.add_merge_request(13, base_sha=main_history[-1])
    gl.fail("POST", r"/merge_requests/13/notes$", 502, times=2)
    gl.rate_limit("POST", r"/statuses/", retry_after=1)
    gl.reset_connection("GET", r"/merge_requests/13$")
    caplog.set_level(logging.WARNING, logger="nbci")
    outcome = publish(options(make_run(tmp_path / "out")), mr_env(gl, 13))
    assert outcome.comment_url and len(gl.mr_notes(13)) == 1
    assert len(gl.statuses) == 1
    assert [r.status for r in gl.calls("POST", r"/merge_requests/13/notes$")] == [502, 502, 201]
    assert [r.status for r in gl.calls("POST", r"/statuses/")] == [429, 201]
    logged = caplog.text
    assert "GitLab answered 502" in logged and "GitLab answered 429" in logged
    assert "retry 1 of" in logged and "in 1.0 s" in logged  # the Retry-After wait
    assert "connection failed" in logged
    assert 1.0 in retry_waits


def test_a_limit_beyond_the_budget_is_not_waited_for(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    gl.add_merge_request(14, base_sha=main_history[-1])
    gl.rate_limit("GET", r"/merge_requests/14$", retry_after=3600)
    with pytest.raises(PublishError, match="rate limit") as caught:
        publish(options(make_run(tmp_path / "out")), mr_env(gl, 14))
    assert "\n" not in str(caught.value)
    assert len(gl.calls("GET", r"/merge_requests/14$")) == 1


def test_the_token_is_absent_from_all_output(
    gl: GitLabStub,
    main_history: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    retry_waits: list[float],
) -> None:
    gl.add_merge_request(15, base_sha=main_history[-1])
    gl.fail("POST", r"/notes$", 500, times=1)
    out = make_run(tmp_path / "out")
    for key, value in mr_env(gl, 15).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    assert main(["publish", str(out)]) == 0
    gl.tokens.clear()  # now the token is refused: the 401 message must not show it either
    assert main(["publish", str(out)]) == EXIT_PUBLISH  # a publish the forge refused
    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text
    assert "Commented on merge request !15" in captured.out
    assert "GitLab rejected the token in $GITLAB_TOKEN" in captured.err
    assert gl.token not in everything


# -- forks and usage -----------------------------------------------------------------


def test_a_fork_pipeline_leaves_the_report_in_the_artifacts(
    gl: GitLabStub, main_history: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gl.add_merge_request(16, base_sha=main_history[-1])
    env = mr_env(gl, 16, CI_PROJECT_ID="5151", CI_MERGE_REQUEST_SOURCE_PROJECT_ID="5151")
    del env["GITLAB_TOKEN"]  # a fork's pipeline has none of the parent's variables
    outcome = publish(options(make_run(tmp_path / "out")), env)
    assert outcome.kind == "artifact" and outcome.passed
    (line,) = outcome.lines
    assert "artifacts" in line and "Run pipeline" in line and gl.project in line
    assert gl.requests == []


def test_check_runs_are_github_only(gl: GitLabStub, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--check"):
        publish(options(make_run(tmp_path / "out"), check=True), push_env(gl, "a" * 40))
    assert gl.requests == []


def test_the_flags_mean_the_same_on_gitlab_outside_its_ci(
    gl: GitLabStub,
    main_history: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--forge gitlab from a laptop: --repo as the project id, --pr as the MR iid."""
    mr = gl.add_merge_request(18, base_sha=main_history[-1])
    for key in [k for k in os.environ if k.startswith(("GITLAB", "CI_", "GITHUB"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MY_GITLAB_TOKEN", gl.token)
    monkeypatch.chdir(tmp_path)
    out = make_run(tmp_path / "out")
    args = ["publish", str(out), "--forge", "gitlab", "--repo", "4242", "--pr", "18"]
    args += ["--api-url", f"{gl.base_url}/api/v4", "--token-env", "MY_GITLAB_TOKEN"]
    assert main([*args, "--name", "nightly", "--assets-branch", "reports"]) == 0
    (note,) = gl.mr_notes(18)
    assert note["body"].startswith(MARKER.replace("nbci -->", "nightly -->"))
    for url in image_urls(note["body"]):
        assert url.startswith(f"{gl.web_url}/-/raw/")  # the project's path, not its id
        assert fetch(url).startswith(b"\x89PNG")
    assert gl.branches.get("reports")
    (status,) = gl.statuses
    assert (status["sha"], status["name"]) == (mr.sha, "nightly")
    assert f"Commented on merge request !18: {gl.web_url}/-/merge_requests/18#note_" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda gl: gl.tokens.clear(), "GitLab rejected the token in $GITLAB_TOKEN (401"),
        (
            lambda gl: gl.tokens.update({gl.token: Token(scopes=("read_api",))}),
            "needs the `api` scope and at least the Developer role",
        ),
        (lambda gl: gl.merge_requests.pop(19), "GitLab answered 404 Not Found"),
        (lambda gl: gl.fail("POST", r"/notes$", 422), "GitLab rejected nbci's request to add"),
        (lambda gl: gl.fail("POST", r"/notes$", 503, times=9), "GitLab kept failing (503"),
    ],
    ids=["401", "403-scope", "404", "422", "5xx"],
)
def test_every_refusal_ends_in_one_line_without_the_token(
    gl: GitLabStub,
    main_history: list[str],
    tmp_path: Path,
    setup: Callable[[GitLabStub], object],
    expected: str,
    retry_waits: list[float],
) -> None:
    gl.add_merge_request(19, base_sha=main_history[-1])
    env = mr_env(gl, 19)
    setup(gl)
    with pytest.raises(PublishError) as caught:
        publish(options(make_run(tmp_path / "out")), env)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and gl.token not in message


def test_a_tampered_stored_baseline_is_rejected_not_trusted(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    store_baseline(gl, tmp_path, main_history[-1])
    path = f"{ASSETS_ROOT}/runs/{main_history[-1]}/nbci/results.json"
    gl.before_next(
        "GET",
        r"/repository/files/.*results\.json",
        lambda: gl.blobs.update({gl.commits[gl.branches["nbci-assets"]]["files"][path]: b"[1,"}),
    )
    gl.add_merge_request(20, base_sha=main_history[-1])
    outcome = publish(options(make_run(tmp_path / "out")), mr_env(gl, 20))
    assert outcome.baseline_sha is None
    assert any("stored baseline was rejected" in note for note in outcome.notes)
    (note,) = gl.mr_notes(20)
    assert "stored baseline was rejected" in note["body"]


def test_a_commit_racing_on_the_assets_branch_is_redone_from_the_new_tip(
    gl: GitLabStub, main_history: list[str], tmp_path: Path
) -> None:
    store_baseline(gl, tmp_path, main_history[-1])
    gl.add_merge_request(21, base_sha=main_history[-1])
    path = f"{ASSETS_ROOT}/pr/21/nbci/figures/train/confusion.png"

    def other_publish() -> None:  # lands between our read of the branch and our commit
        files = dict(gl.commits[gl.branches["nbci-assets"]]["files"])
        files[path] = gl._store_blob(b"an older figure")
        gl.branches["nbci-assets"] = gl._store_commit("other", files, [gl.branches["nbci-assets"]])

    gl.before_next("POST", r"/repository/commits$", other_publish)
    outcome = publish(options(make_run(tmp_path / "out")), mr_env(gl, 21))
    assert [r.status for r in gl.calls("POST", r"/repository/commits$")][-2:] == [400, 201]
    data = gl.file_at("nbci-assets", path)
    assert data is not None and data.startswith(b"\x89PNG")  # ours, on top of theirs
    assert outcome.assets_commit == gl.branches["nbci-assets"]
