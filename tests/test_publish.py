"""`nbci publish` against the GitHub stand-in: PyGithub over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import re
import struct
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from github_stub import READ_ONLY, GitHubStub

from nbci.errors import PublishError, ResultsError, UsageError
from nbci.gates import parse_gates
from nbci.judge import Criteria, judge
from nbci.model import ErrorInfo, Figure, NotebookResult, Run, Scrap
from nbci.publish import PublishOptions, PublishOutcome, RetryPolicy, publish
from nbci.publish.comment import COMMENT_LIMIT, comment_body, marker
from nbci.publish.status import describe
from nbci.render.build import build_view
from nbci.results import read_run, run_from_json, run_json, write_run

FAST = RetryPolicy(pace=False, backoff=0.05, max_wait=10, max_total_wait=30, timeout=10)
MARKER = marker("nbci")


# -- fixtures ----------------------------------------------------------------------


def png(seed: int) -> bytes:
    """A tiny valid PNG whose bytes depend on `seed`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    pixels = b"".join(b"\x00" + bytes([seed % 256, 7, 9]) * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


def make_run(
    out: Path,
    *,
    accuracy: float = 0.9,
    figures: dict[str, int] | None = None,
    status: str = "ok",
    extra: tuple[NotebookResult, ...] = (),
) -> Path:
    """A run directory with one notebook `train` and PNG figures {name: seed}."""
    figures = {"confusion": 1, "roc": 2} if figures is None else figures
    files = []
    for name, seed in figures.items():
        path = f"figures/train/{name}.png"
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(png(seed))
        files.append(Figure(name, path))
    nb = NotebookResult(
        id="train",
        path="notebooks/train.ipynb",
        parameters={"lr": 0.1},
        status=status,  # type: ignore[arg-type]
        metrics={"accuracy": accuracy, "loss": 0.25},
        figures=tuple(files),
        error=ErrorInfo(cell=3, ename="ValueError", evalue="bad", traceback="x")
        if status != "ok"
        else None,
    )
    write_run(Run(notebooks=(nb, *extra), created="2026-11-26T22:00:00Z"), out)
    return out


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub() as stub:
        yield stub


def actions_env(
    gh: GitHubStub, tmp_path: Path, event: str, payload: dict[str, Any], **extra: str
) -> dict[str, str]:
    event_file = tmp_path / f"event-{event}-{len(list(tmp_path.iterdir()))}.json"
    event_file.write_text(json.dumps(payload))
    env = {
        "GITHUB_REPOSITORY": gh.repo,
        "GITHUB_API_URL": gh.api_url,
        "GITHUB_SERVER_URL": gh.server_url,
        "GITHUB_RUN_ID": "4242",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(event_file),
        "GITHUB_TOKEN": gh.token,
    }
    env.update(extra)
    return env


def pr_env(gh: GitHubStub, tmp_path: Path, number: int) -> dict[str, str]:
    pull = gh.pulls[number]
    payload = {
        "pull_request": {"number": number, "head": {"sha": pull.head_sha}},
        "repository": {"default_branch": gh.default_branch},
    }
    return actions_env(gh, tmp_path, "pull_request", payload)


def push_env(gh: GitHubStub, tmp_path: Path, sha: str, branch: str = "main") -> dict[str, str]:
    payload = {
        "ref": f"refs/heads/{branch}",
        "after": sha,
        "repository": {"default_branch": "main"},
    }
    return actions_env(gh, tmp_path, "push", payload)


def options(out: Path, **kw: object) -> PublishOptions:
    return PublishOptions(out_dir=out, retry=FAST, **kw)  # type: ignore[arg-type]


def image_urls(body: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', body)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url.replace("&amp;", "&"), timeout=10) as answer:
        data: bytes = answer.read()
        return data


@pytest.fixture
def main_history(gh: GitHubStub) -> list[str]:
    return gh.add_history(5)


# -- the sticky comment -------------------------------------------------------------


def test_comment_is_created_once_then_edited_over_three_pages(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(7, base_sha=main_history[-1])
    for i in range(230):  # three pages of 100 of other people's comments
        gh.add_comment(7, f"comment {i}")
    env = pr_env(gh, tmp_path, 7)
    run_dir = make_run(tmp_path / "out")

    first = publish(options(run_dir), env)
    second_dir = make_run(tmp_path / "out2", accuracy=0.95)
    second = publish(options(second_dir), env)

    marked = [c for c in gh.pr_comments(7) if c["body"].startswith(MARKER)]
    assert len(marked) == 1
    assert len(gh.calls("POST", r"/issues/7/comments$")) == 1
    assert len(gh.calls("PATCH", r"/issues/comments/")) == 1
    assert "0.9500" in marked[0]["body"]
    assert first.comment_url == second.comment_url == marked[0]["html_url"]
    pages = {r.query.get("page", "1") for r in gh.calls("GET", r"/issues/7/comments$")}
    assert pages == {"1", "2", "3"}
    assert len(gh.pr_comments(7)) == 231


def test_a_race_leaves_one_comment_the_newest(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(8, base_sha=main_history[-1])
    older = gh.add_comment(8, f"{MARKER}\nold report", user=gh.bot_login, bot=True)
    gh.add_comment(8, f"> {MARKER}\nquoted by a person")
    human = gh.add_comment(8, f"{MARKER}\npasted by a person", user="someone")
    newer = gh.add_comment(8, f"{MARKER}\nnewer report", user=gh.bot_login, bot=True)

    publish(options(make_run(tmp_path / "out")), pr_env(gh, tmp_path, 8))

    ids = [c["id"] for c in gh.pr_comments(8)]
    assert older["id"] not in ids
    assert newer["id"] in ids and human["id"] in ids
    assert gh.calls("DELETE") and len(gh.calls("DELETE")) == 1
    assert not gh.calls("POST", r"/comments$")
    kept = next(c for c in gh.pr_comments(8) if c["id"] == newer["id"])
    assert "accuracy" in kept["body"]


def test_an_oversized_report_is_still_posted_under_the_limit(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(9, base_sha=main_history[-1])
    many = tuple(
        NotebookResult(
            id=f"job-{i}",
            path=f"notebooks/n{i}.ipynb",
            parameters={},
            status="failed",
            metrics={f"metric_{k}": k * 0.5 for k in range(40)},
            scraps={"log": Scrap("text", "x" * 20_000)},
            error=ErrorInfo(cell=1, ename="RuntimeError", evalue="e" * 500, traceback="t\n" * 5000),
        )
        for i in range(60)
    )
    run_dir = make_run(tmp_path / "out", extra=many)

    outcome = publish(options(run_dir), pr_env(gh, tmp_path, 9))

    (comment,) = gh.pr_comments(9)
    assert len(comment["body"]) <= COMMENT_LIMIT
    assert comment["body"].startswith(MARKER)
    assert not outcome.passed
    assert gh.statuses[-1]["state"] == "failure"


def test_comment_body_guard_cuts_at_a_line_and_says_so() -> None:
    report = "\n".join(f"🙂 line {i} " + "x" * 80 for i in range(2000))
    body = comment_body("nbci", report)
    assert len(body.encode("utf-16-le")) // 2 <= COMMENT_LIMIT
    assert body.startswith(MARKER) and "cut to fit" in body


# -- figures ------------------------------------------------------------------------


def test_figures_go_in_one_commit_linked_by_its_sha(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(3, base_sha=main_history[-1])
    run_dir = make_run(tmp_path / "out", figures={"a": 1, "b": 2, "c": 3})

    outcome = publish(options(run_dir), pr_env(gh, tmp_path, 3))

    # The orphan branch is created with one small commit (a tree sent inline), then the
    # figures go in one GraphQL commit, as on every later publish: no blob requests.
    assert len(gh.calls("POST", r"/git/commits$")) == 1
    assert len(gh.calls("POST", r"/git/trees$")) == 1
    assert len(gh.calls("POST", r"/git/blobs$")) == 0
    assert len(gh.calls("POST", r"/git/refs$")) == 1
    assert len(gh.graphql_commits()) == 1
    commit = gh.ref_sha("nbci-assets")
    assert commit is not None and outcome.assets_commit == commit
    [first] = gh.commits[commit]["parents"]
    assert gh.commits[first]["parents"] == []
    urls = image_urls(gh.pr_comments(3)[0]["body"])
    assert len(urls) == 3
    for url, seed in zip(sorted(urls), (1, 2, 3), strict=True):
        assert f"/{gh.repo}/raw/{commit}/pr/3/nbci/figures/train/" in url
        assert fetch(url) == png(seed)


def test_svg_figures_and_figures_up_to_the_collect_cap_are_hosted(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    """What collect keeps and report.html shows is what the pull request shows: an SVG
    figure, and a PNG of 9 MiB (under the one figure cap, `nbci.formats.MAX_FIGURE_BYTES`)."""
    gh.add_pull(3, base_sha=main_history[-1])
    run_dir = make_run(tmp_path / "out", figures={"big": 1})
    big = png(1) + b"\0" * (9 * 2**20)
    (run_dir / "figures/train/big.png").write_bytes(big)
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>\n'
    (run_dir / "figures/train/plot.svg").write_bytes(svg)
    run = read_run(run_dir)
    nb = replace(
        run.notebooks[0],
        figures=(*run.notebooks[0].figures, Figure("plot", "figures/train/plot.svg")),
    )
    write_run(replace(run, notebooks=(nb,)), run_dir)

    outcome = publish(options(run_dir), pr_env(gh, tmp_path, 3))

    assert outcome.notes == ()
    commit = gh.ref_sha("nbci-assets")
    assert set(gh.paths_at("nbci-assets")) == {
        "README.md",  # the branch's first, small commit
        "index.json",
        "pr/3/nbci/figures/train/big.png",
        "pr/3/nbci/figures/train/plot.svg",
    }
    urls = sorted(image_urls(gh.pr_comments(3)[0]["body"]))
    assert [url.rsplit("/", 1)[-1] for url in urls] == ["big.png", "plot.svg"]
    assert fetch(urls[1]) == svg
    assert f"/raw/{commit}/" in urls[0]


def test_an_svg_figure_that_is_not_svg_is_left_out(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(3, base_sha=main_history[-1])
    run_dir = make_run(tmp_path / "out", figures={"good": 1})
    (run_dir / "figures/train/fake.svg").write_bytes(png(2))
    run = read_run(run_dir)
    figures = (*run.notebooks[0].figures, Figure("fake", "figures/train/fake.svg"))
    write_run(replace(run, notebooks=(replace(run.notebooks[0], figures=figures),)), run_dir)

    outcome = publish(options(run_dir), pr_env(gh, tmp_path, 3))

    assert set(gh.paths_at("nbci-assets")) == {
        "README.md",
        "index.json",
        "pr/3/nbci/figures/train/good.png",
    }
    assert any("fake.svg: not an SVG image" in note for note in outcome.notes)


def test_unchanged_figures_are_not_uploaded_again(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(4, base_sha=main_history[-1])
    env = pr_env(gh, tmp_path, 4)
    publish(options(make_run(tmp_path / "one", figures={"a": 1, "b": 2})), env)
    first_commit = gh.ref_sha("nbci-assets")
    assert first_commit is not None
    [_first] = gh.graphql_commits()  # created with a small commit, then one createCommitOnBranch

    publish(options(make_run(tmp_path / "two", figures={"a": 1, "b": 2})), env)
    assert gh.ref_sha("nbci-assets") == first_commit  # nothing changed: no commit
    assert len(gh.graphql_commits()) == 1

    publish(options(make_run(tmp_path / "three", figures={"a": 1, "c": 5})), env)
    [_first, sent] = gh.graphql_commits()  # the branch exists: one createCommitOnBranch
    added = [a["path"] for a in sent["fileChanges"]["additions"]]
    assert added == ["pr/4/nbci/figures/train/c.png", "index.json"]
    assert sent["fileChanges"]["deletions"] == [{"path": "pr/4/nbci/figures/train/b.png"}]
    assert sent["expectedHeadOid"] == first_commit
    files = gh.paths_at("nbci-assets")
    assert "pr/4/nbci/figures/train/c.png" in files
    assert "pr/4/nbci/figures/train/b.png" not in files  # the old push's figure: gone from the tip
    assert gh.file_at(first_commit, "pr/4/nbci/figures/train/b.png") == png(2)  # old links work
    tip = gh.ref_sha("nbci-assets")
    assert tip is not None and gh.commits[tip]["parents"] == [first_commit]


def test_a_branch_moved_by_another_publish_is_committed_to_again(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(17, base_sha=main_history[-1])
    env = pr_env(gh, tmp_path, 17)
    publish(options(make_run(tmp_path / "one", figures={"a": 1})), env)
    gh.move_branch_before("POST", r"^/api/graphql$", "nbci-assets")

    outcome = publish(options(make_run(tmp_path / "two", figures={"a": 2})), env)

    _made, first, second = gh.graphql_commits()  # STALE_DATA, then again from the new tip
    assert first["expectedHeadOid"] != second["expectedHeadOid"]
    assert gh.file_at("nbci-assets", "concurrent/0.txt") == b"another writer\n"  # kept
    assert gh.ref_sha("nbci-assets") == outcome.assets_commit
    assert gh.file_at("nbci-assets", "pr/17/nbci/figures/train/a.png") == png(2)
    assert outcome.assets_commit in gh.pr_comments(17)[0]["body"]


def test_a_run_without_figures_commits_nothing(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(18, base_sha=main_history[-1])
    publish(options(make_run(tmp_path / "out", figures={})), pr_env(gh, tmp_path, 18))
    assert not gh.calls("POST", r"/git/") and not gh.calls("PATCH", r"/git/")
    assert len(gh.pr_comments(18)) == 1


def test_without_contents_write_the_comment_points_to_the_artifact(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.permissions["contents"] = "read"
    gh.add_pull(5, base_sha=main_history[-1])

    outcome = publish(options(make_run(tmp_path / "out")), pr_env(gh, tmp_path, 5))

    body = gh.pr_comments(5)[0]["body"]
    assert "The figures are in [the run's artifact](" in body
    assert f"{gh.server_url}/{gh.repo}/actions/runs/4242" in body
    assert not image_urls(body)
    assert not gh.calls("POST", r"/git/commits$")
    assert outcome.assets_commit is None
    assert any("contents: write" in note for note in outcome.notes)
    assert gh.statuses[-1]["state"] == "success"


def test_unsafe_figure_files_are_left_out_not_uploaded(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(6, base_sha=main_history[-1])
    secret = tmp_path / "secret.png"
    secret.write_bytes(png(9))
    run_dir = make_run(tmp_path / "out", figures={"good": 1, "fake": 2, "link": 3})
    (run_dir / "figures/train/fake.png").write_bytes(b"<html>not a png</html>")
    (run_dir / "figures/train/link.png").unlink()
    (run_dir / "figures/train/link.png").symlink_to(secret)

    outcome = publish(options(run_dir), pr_env(gh, tmp_path, 6))

    [sent] = gh.graphql_commits()
    added = [a["path"] for a in sent["fileChanges"]["additions"]]
    assert added == ["pr/6/nbci/figures/train/good.png", "index.json"]
    assert set(gh.paths_at("nbci-assets")) == {
        "README.md",  # the branch's first, small commit
        "index.json",
        "pr/6/nbci/figures/train/good.png",
    }
    assert len(outcome.notes) == 2
    assert "not a PNG" in gh.pr_comments(6)[0]["body"]


# -- the baseline -------------------------------------------------------------------


def test_baseline_stored_on_push_and_found_for_a_later_pr(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    base = main_history[-1]
    stored = publish(
        options(make_run(tmp_path / "main", accuracy=0.9)), push_env(gh, tmp_path, base)
    )
    assert stored.kind == "baseline" and stored.stored_baseline
    results = json.loads(gh.file_at("nbci-assets", f"runs/{base}/nbci/results.json") or b"")
    assert results["notebooks"][0]["metrics"]["accuracy"] == 0.9
    stored_text = gh.file_at("nbci-assets", f"runs/{base}/nbci/results.json") or b""
    again = run_json(run_from_json(stored_text, source="stored"))
    assert stored_text.decode() == again  # serialised as a run folder's results.json is
    assert gh.file_at("nbci-assets", f"runs/{base}/nbci/figures/train/roc.png") == png(2)
    assert gh.statuses[-1]["sha"] == base
    assert len(gh.calls("POST", r"/git/commits$")) == 1  # results and figures: one commit

    gh.add_pull(11, base_sha=base)
    pr_run = make_run(tmp_path / "pr", accuracy=0.8, figures={"confusion": 3, "roc": 2})
    outcome = publish(options(pr_run), pr_env(gh, tmp_path, 11))

    assert outcome.baseline_sha == base
    body = gh.pr_comments(11)[0]["body"]
    assert f"{base[:12]}, the base commit" in body
    assert "0.9000" in body and "0.8000" in body
    # The changed figure beside the baseline's; the pixel-identical one named only.
    base_urls = [u for u in image_urls(body) if f"/runs/{base}/nbci/" in u]
    assert len(base_urls) == 1 and fetch(base_urls[0]) == png(1)
    assert "1 unchanged figure</summary>\n\nroc" in body


def test_the_nearest_stored_ancestor_is_the_baseline(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    publish(
        options(make_run(tmp_path / "old", accuracy=0.7)), push_env(gh, tmp_path, main_history[1])
    )
    gh.add_pull(12, base_sha=main_history[-1])  # three commits later, none of them stored

    outcome = publish(options(make_run(tmp_path / "pr")), pr_env(gh, tmp_path, 12))

    assert outcome.baseline_sha == main_history[1]
    body = gh.pr_comments(12)[0]["body"]
    assert "3 commits before the base commit" in body and "0.7000" in body
    assert len(gh.calls("GET", r"/commits$")) == 1


def test_a_push_compares_with_its_parent_and_gates_use_it(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    publish(
        options(make_run(tmp_path / "a", accuracy=0.9)), push_env(gh, tmp_path, main_history[3])
    )
    gates = parse_gates({"accuracy": {"max_drop": 0.05}}, "nbci.toml")

    outcome = publish(
        options(make_run(tmp_path / "b", accuracy=0.8), gates=gates),
        push_env(gh, tmp_path, main_history[4]),
    )

    assert outcome.baseline_sha == main_history[3]
    assert not outcome.passed
    status = gh.statuses[-1]
    assert status["state"] == "failure" and status["sha"] == main_history[4]
    assert status["description"] == "1 passed · gates: 1 of 1 failed · 1 regression"


def test_the_status_description_counts_in_the_reports_words() -> None:
    """The commit status and the report's line under the headline are worded alike."""
    jobs = [
        NotebookResult(id=f"{status}-{i}", path=f"nb/{status}.ipynb", parameters={"i": i},
                       status=status, cached=i == 0, metrics={"accuracy": 0.5 + i / 10})
        for status in ("ok", "timeout", "died") for i in range(2)
    ]  # fmt: skip
    run = Run(notebooks=tuple(jobs), created="2026-11-26T22:00:00Z")
    base = Run(
        notebooks=tuple(replace(nb, metrics={"accuracy": 0.9}) for nb in jobs),
        created="2026-11-25T22:00:00Z",
    )
    gates = parse_gates({"accuracy": {"max_drop": 0.5}}, "nbci.toml")
    judgement = judge(run, base, label="base", criteria=Criteria(gates))

    description = describe(run, judgement.verdict, judgement.comparison)
    facts = build_view(run, comparison=judgement.comparison, verdict=judgement.verdict)

    assert description == " · ".join(facts.verdict.facts)
    assert description == (
        "2 passed · 2 timed out · 2 kernel died · 3 cached · gates: 4 of 6 failed · 6 regressions"
    )
    interrupted = replace(run, interrupted=True, notebooks=())
    assert describe(interrupted, None) == "interrupted · no notebooks"


def test_no_baseline_says_so(gh: GitHubStub, main_history: list[str], tmp_path: Path) -> None:
    gh.add_pull(13, base_sha=main_history[-1])
    outcome = publish(options(make_run(tmp_path / "out")), pr_env(gh, tmp_path, 13))
    assert outcome.baseline_sha is None
    assert "No baseline" in gh.pr_comments(13)[0]["body"]


def test_a_tampered_stored_baseline_is_rejected_not_trusted(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    base = main_history[-1]
    publish(options(make_run(tmp_path / "main")), push_env(gh, tmp_path, base))
    path = f"runs/{base}/nbci/results.json"
    bad = json.loads(gh.file_at("nbci-assets", path) or b"")
    bad["notebooks"][0]["figures"] = [{"name": "x", "path": "figures/../../../etc/passwd"}]
    tip = gh.ref_sha("nbci-assets")
    assert tip is not None
    with gh._lock:  # rewrite the branch as a hostile writer would
        blob = gh._store_blob(json.dumps(bad).encode())
        tree = gh._load_tree(gh.commits[tip]["tree"])
        tree.folder("runs", base, "nbci").entries["results.json"] = ("100644", "blob", blob)
        gh.refs["refs/heads/nbci-assets"] = gh._store_commit("tamper", gh._write_tree(tree), [tip])
    gh.add_pull(14, base_sha=base)

    outcome = publish(options(make_run(tmp_path / "pr")), pr_env(gh, tmp_path, 14))

    assert outcome.baseline_sha is None
    assert any("stored baseline was rejected" in note for note in outcome.notes)


# -- the verdict ----------------------------------------------------------------------


def test_status_goes_on_the_head_sha_not_the_merge_sha(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    pull = gh.add_pull(15, base_sha=main_history[-1])
    env = pr_env(gh, tmp_path, 15) | {"GITHUB_SHA": pull.merge_sha}

    outcome = publish(options(make_run(tmp_path / "out")), env)

    (status,) = gh.statuses
    assert status["sha"] == pull.head_sha == outcome.sha != pull.merge_sha
    assert status["context"] == "nbci" and status["state"] == "success"
    assert status["description"].startswith("1 passed")
    assert len(status["description"]) <= 140
    assert status["target_url"] == f"{gh.server_url}/{gh.repo}/actions/runs/4242"


def test_check_run_mode_carries_the_report(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    pull = gh.add_pull(16, base_sha=main_history[-1])
    run_dir = make_run(tmp_path / "out", status="failed")

    outcome = publish(options(run_dir, check=True, name="models"), pr_env(gh, tmp_path, 16))

    assert not gh.statuses
    (check,) = gh.check_runs
    assert check["head_sha"] == pull.head_sha
    assert check["name"] == "models"
    assert check["status"] == "completed" and check["conclusion"] == "failure"
    assert "ValueError" in check["output"]["summary"]
    assert len(check["output"]["summary"]) <= 65_535
    assert outcome.check_url and not outcome.passed
    assert gh.pr_comments(16)[0]["body"].startswith(marker("models"))


@pytest.mark.parametrize("fault", ["answer lost after creating", "502 without creating"])
def test_a_check_run_whose_create_failed_is_never_created_twice(
    gh: GitHubStub, main_history: list[str], tmp_path: Path, fault: str
) -> None:
    """GitHub cannot delete a check run: a create is not resent blindly; the retry looks
    for the one the lost answer hid and completes it, or creates it when there is none."""
    pull = gh.add_pull(17, base_sha=main_history[-1])
    if fault == "answer lost after creating":
        gh.fail_after_doing("POST", r"/check-runs$", 502)
    else:
        gh.fail("POST", r"/check-runs$", 502)

    outcome = publish(options(make_run(tmp_path / "out"), check=True), pr_env(gh, tmp_path, 17))

    (check,) = gh.check_runs
    assert check["head_sha"] == pull.head_sha and check["conclusion"] == "success"
    assert outcome.check_url == check["html_url"]
    assert len(gh.calls("GET", rf"/commits/{pull.head_sha}/check-runs$")) == 1


# -- fork pull requests through workflow_run --------------------------------------------


def workflow_run_env(
    gh: GitHubStub, tmp_path: Path, head_sha: str, head_branch: str
) -> dict[str, str]:
    payload = {
        "workflow_run": {
            "event": "pull_request",
            "head_sha": head_sha,
            "head_branch": head_branch,
            "head_repository": {"full_name": "fork/notebooks"},
            "html_url": f"{gh.server_url}/{gh.repo}/actions/runs/99",
            "pull_requests": [],  # GitHub leaves this empty for forks
        },
        "repository": {"default_branch": "main"},
    }
    return actions_env(gh, tmp_path, "workflow_run", payload)


def test_workflow_run_publishes_to_the_pr_named_in_the_artifact(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    pull = gh.add_pull(21, base_sha=main_history[-1], head_repo="fork/notebooks")
    run_dir = make_run(tmp_path / "out")
    (run_dir / "pr-number").write_text("21\n")

    outcome = publish(options(run_dir), workflow_run_env(gh, tmp_path, pull.head_sha, "feature"))

    assert outcome.pr == 21 and len(gh.pr_comments(21)) == 1
    assert gh.statuses[0]["sha"] == pull.head_sha
    assert gh.statuses[0]["target_url"].endswith("/actions/runs/99")


def test_workflow_run_refuses_a_pr_number_of_another_branch(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(22, base_sha=main_history[-1], head_ref="victim")
    run_dir = make_run(tmp_path / "out")
    (run_dir / "pr-number").write_text("22")

    with pytest.raises(PublishError, match="refusing to publish"):
        publish(options(run_dir), workflow_run_env(gh, tmp_path, "f" * 40, "attacker"))
    assert not gh.writes()


# -- failures -------------------------------------------------------------------------


def test_read_only_token_ends_with_guidance_and_never_shows_the_token(
    gh: GitHubStub,
    main_history: list[str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    gh.permissions = dict(READ_ONLY)
    gh.add_pull(31, base_sha=main_history[-1])

    with pytest.raises(PublishError) as caught:
        publish(options(make_run(tmp_path / "out")), pr_env(gh, tmp_path, 31))

    message = str(caught.value)
    assert "\n" not in message
    assert "`pull-requests: write`" in message and "Resource not accessible" in message
    assert "workflow_run" in message
    captured = capsys.readouterr()
    everything = message + caplog.text + captured.out + captured.err
    assert gh.token not in everything
    assert gh.token not in repr(caught.value.__cause__) + repr(caught.value.__context__)
    assert caught.value.__cause__ is None
    assert not gh.pr_comments(31)
    assert any(r.headers.get("authorization", "").endswith(gh.token) for r in gh.requests)


def test_bad_credentials_name_the_variable_not_the_token(
    gh: GitHubStub, main_history: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gh.add_pull(32, base_sha=main_history[-1])
    wrong = "ghp_wrongTokenThatMustNotLeak42"
    env = pr_env(gh, tmp_path, 32) | {"NBCI_TOKEN": wrong}

    with pytest.raises(PublishError, match=r"rejected the token in \$NBCI_TOKEN \(401") as caught:
        publish(options(make_run(tmp_path / "out"), token_env="NBCI_TOKEN"), env)
    assert wrong not in str(caught.value) + caplog.text


def test_missing_token_is_one_line(gh: GitHubStub, tmp_path: Path) -> None:
    env = pr_env_without_pull(gh, tmp_path)
    del env["GITHUB_TOKEN"]
    with pytest.raises(PublishError, match=r"no GitHub token in \$GITHUB_TOKEN"):
        publish(options(make_run(tmp_path / "out")), env)
    assert not gh.requests


def pr_env_without_pull(gh: GitHubStub, tmp_path: Path) -> dict[str, str]:
    payload = {"pull_request": {"number": 1, "head": {"sha": "a" * 40}}}
    return actions_env(gh, tmp_path, "pull_request", payload)


def test_server_errors_are_retried_then_succeed(
    gh: GitHubStub, main_history: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nbci")
    gh.add_pull(33, base_sha=main_history[-1])
    gh.fail("POST", r"/issues/33/comments$", 502, times=2)
    gh.fail("POST", r"/git/commits$", 503, times=1)
    gh.reset_connection("GET", r"/pulls/33$", times=1)

    publish(options(make_run(tmp_path / "out")), pr_env(gh, tmp_path, 33))

    assert len(gh.pr_comments(33)) == 1
    assert len(gh.calls("POST", r"/issues/33/comments$")) == 3
    assert re.search(
        r"POST \S+/issues/33/comments: GitHub answered 502 Bad Gateway; retry 1 of", caplog.text
    )
    assert "GitHub answered 503" in caplog.text
    assert re.search(
        r"GET \S+/pulls/33: the connection failed \(ProtocolError\); retry 1", caplog.text
    )
    assert len([c for c in gh.commits.values() if c["message"].startswith("nbci:")]) == 1


def test_a_lost_answer_to_a_new_comment_leaves_one_comment(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(37, base_sha=main_history[-1])
    gh.fail_after_doing("POST", r"/issues/37/comments$", 502)

    publish(options(make_run(tmp_path / "out")), pr_env(gh, tmp_path, 37))

    assert len(gh.calls("POST", r"/issues/37/comments$")) == 2  # the retry made a second one
    assert len(gh.calls("DELETE", r"/issues/comments/")) == 1  # and the older one went
    (comment,) = gh.pr_comments(37)
    assert comment["body"].startswith(MARKER)


def test_a_stalled_answer_times_out_and_is_retried(
    gh: GitHubStub, main_history: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nbci")
    gh.add_pull(38, base_sha=main_history[-1])
    gh.stall("GET", r"/pulls/38$", seconds=3)
    policy = RetryPolicy(pace=False, backoff=0.05, timeout=1)

    publish(
        PublishOptions(out_dir=make_run(tmp_path / "out"), retry=policy), pr_env(gh, tmp_path, 38)
    )

    assert "connection failed (ReadTimeoutError)" in caplog.text
    assert len(gh.pr_comments(38)) == 1


def test_persistent_failure_mid_commit_leaves_the_branch_intact(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(34, base_sha=main_history[-1])
    env = pr_env(gh, tmp_path, 34)
    publish(options(make_run(tmp_path / "one", figures={"a": 1})), env)
    before = gh.ref_sha("nbci-assets")
    gh.fail("POST", r"^/api/graphql$", 502, times=100)  # the branch exists: GraphQL commits
    policy = RetryPolicy(pace=False, retries=2, backoff=0.01, max_wait=1, max_total_wait=2)

    with pytest.raises(PublishError, match=r"kept failing \(502"):
        publish(
            PublishOptions(out_dir=make_run(tmp_path / "two", figures={"a": 7}), retry=policy), env
        )

    assert gh.ref_sha("nbci-assets") == before
    assert gh.file_at("nbci-assets", "pr/34/nbci/figures/train/a.png") == png(1)
    assert len(gh.pr_comments(34)) == 1


def test_a_rate_limit_resetting_soon_is_waited_for(
    gh: GitHubStub,
    main_history: list[str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    retry_waits: list[float],
) -> None:
    caplog.set_level(logging.WARNING, logger="nbci")
    gh.add_pull(35, base_sha=main_history[-1])
    gh.rate_limit("GET", r"/pulls/35$", reset_in=2)
    gh.rate_limit("POST", r"/statuses/", retry_after=1, status=429)

    publish(options(make_run(tmp_path / "out")), pr_env(gh, tmp_path, 35))

    assert len(gh.calls("GET", r"/pulls/35$")) == 2
    assert len(gh.statuses) == 1
    waits = [float(w) for w in re.findall(r"retry 1 of \d+ in ([\d.]+) s", caplog.text)]
    assert len(waits) == 2 and all(0 < w <= 10 for w in waits)
    assert [round(w, 1) for w in retry_waits] == waits  # each logged wait is waited


def test_a_rate_limit_resetting_in_an_hour_is_not_waited_for(
    gh: GitHubStub, main_history: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nbci")
    gh.add_pull(36, base_sha=main_history[-1])
    gh.rate_limit("GET", r"/pulls/36$", reset_in=3600, times=10)

    with pytest.raises(PublishError, match="rate limit") as caught:
        publish(options(make_run(tmp_path / "out")), pr_env(gh, tmp_path, 36))

    assert "resets at" in str(caught.value)
    assert len(gh.calls("GET", r"/pulls/36$")) == 1
    assert "not retrying" in caplog.text


# -- untrusted artifacts ----------------------------------------------------------------


def _tamper(run_dir: Path, change: object) -> None:
    path = run_dir / "results.json"
    data = json.loads(path.read_text())
    if callable(change):
        change(data)
    else:
        data = change
    path.write_text(json.dumps(data))


MALICIOUS = {
    "dotdot figure": lambda d: d["notebooks"][0]["figures"].append(
        {"name": "x", "path": "figures/../../../home/.ssh/id_rsa"}
    ),
    "absolute output": lambda d: d["notebooks"][0].update(output="/etc/passwd"),
    "huge field": lambda d: d["notebooks"][0]["scraps"].update(
        big={"kind": "text", "value": "x" * (3 * 1024 * 1024)}
    ),
    "wrong schema": lambda d: d.update(schema="evil/9"),
    "not a run": ["just", "a", "list"],
    "bad status": lambda d: d["notebooks"][0].update(status="rm -rf"),
}


@pytest.mark.parametrize("change", MALICIOUS.values(), ids=MALICIOUS.keys())
def test_a_malicious_artifact_is_rejected_before_any_request(
    gh: GitHubStub, tmp_path: Path, change: object
) -> None:
    run_dir = make_run(tmp_path / "out")
    _tamper(run_dir, change)
    with pytest.raises(ResultsError):
        publish(options(run_dir), pr_env_without_pull(gh, tmp_path))
    assert gh.requests == []


@pytest.mark.parametrize("content", ["12; curl evil", "-3", "", "1" * 40, "0x10"])
def test_a_malicious_pr_number_is_rejected_before_any_request(
    gh: GitHubStub, tmp_path: Path, content: str
) -> None:
    run_dir = make_run(tmp_path / "out")
    (run_dir / "pr-number").write_text(content)
    with pytest.raises(ResultsError, match="pr-number"):
        publish(options(run_dir), workflow_run_env(gh, tmp_path, "a" * 40, "feature"))
    assert gh.requests == []


@pytest.mark.parametrize("branch", ["../main", "refs//x", "-f", "a.lock", "x y"])
def test_an_unusable_assets_branch_is_a_usage_error(
    gh: GitHubStub, tmp_path: Path, branch: str
) -> None:
    with pytest.raises(UsageError, match="--assets-branch"):
        publish(options(make_run(tmp_path / "out"), assets_branch=branch), {})
    assert gh.requests == []


def test_invalid_json_and_deep_nesting_are_rejected(gh: GitHubStub, tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "out")
    for text in ("{not json", "[" * 100_000 + "]" * 100_000, '{"schema": NaN}'):
        (run_dir / "results.json").write_text(text)
        with pytest.raises(ResultsError):
            publish(options(run_dir), pr_env_without_pull(gh, tmp_path))
    assert gh.requests == []


# -- context ------------------------------------------------------------------------------


def test_nothing_to_publish_to_is_a_usage_error(gh: GitHubStub, tmp_path: Path) -> None:
    env = {"GITHUB_REPOSITORY": gh.repo, "GITHUB_API_URL": gh.api_url, "GITHUB_TOKEN": gh.token}
    with pytest.raises(UsageError, match="--pr NUMBER or --sha SHA"):
        publish(options(make_run(tmp_path / "out")), env)


def test_flags_override_the_environment_outside_actions(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    pull = gh.add_pull(41, base_sha=main_history[-1])
    env = {"GITHUB_TOKEN": gh.token}

    outcome = publish(
        options(make_run(tmp_path / "out"), repo=gh.repo, pr=41, api_url=gh.api_url), env
    )

    assert isinstance(outcome, PublishOutcome) and outcome.sha == pull.head_sha
    body = gh.pr_comments(41)[0]["body"]
    assert all(url.startswith(gh.server_url + "/") for url in image_urls(body))  # GHES: /api/v3


def test_a_push_to_another_branch_only_sets_a_status(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    sha = main_history[2]
    outcome = publish(options(make_run(tmp_path / "out")), push_env(gh, tmp_path, sha, "topic"))
    assert outcome.kind == "commit" and gh.statuses[0]["sha"] == sha
    assert not gh.calls("POST", r"/git/")
    assert gh.writes() == gh.calls("POST", r"/statuses/")


def test_the_job_summary_gets_the_report(
    gh: GitHubStub, main_history: list[str], tmp_path: Path
) -> None:
    gh.add_pull(42, base_sha=main_history[-1])
    summary = tmp_path / "summary.md"
    env = pr_env(gh, tmp_path, 42) | {"GITHUB_STEP_SUMMARY": str(summary)}
    publish(options(make_run(tmp_path / "out")), env)
    assert "accuracy" in summary.read_text()


def test_the_planned_wait_is_slept(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `retry_waits` records instead of sleeping is what a publish sleeps."""
    from nbci.publish import retry

    slept: list[float] = []
    monkeypatch.setattr("nbci.publish.retry.time.sleep", slept.append)
    waiting = retry.BoundedRetry.for_policy(FAST)
    waiting.sleep()  # nothing planned yet: the first try
    waiting.planned_wait = 2.5
    waiting.sleep()
    assert slept == [2.5]


def test_no_network_is_three_logged_waits_of_14_s_without_urllib3s_lines(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    retry_waits: list[float],
) -> None:
    import socket

    from nbci.cli import ExitCode, main

    with socket.socket() as closed:  # a port nobody listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken-for-nothing")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    caplog.set_level(logging.DEBUG)
    out = make_run(tmp_path / "out")
    argv = ["publish", str(out), "--repo", "o/r", "--pr", "1", "--sha", "a" * 40]

    assert main([*argv, "--api-url", f"http://127.0.0.1:{port}/api"]) == ExitCode.PUBLISH

    assert retry_waits == [2.0, 4.0, 8.0]
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3 and retries[-1].endswith("retry 3 of 3 in 8.0 s")
    assert not [r for r in caplog.records if r.name.startswith("urllib3")]
