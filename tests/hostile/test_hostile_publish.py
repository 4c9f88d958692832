"""`nbci publish` against untrusted artifacts and a failing GitHub (the stand-in in
tests/github_stub.py, over real HTTP).

Untrusted artifacts (the fork-PR path): a run directory that is malformed, of
another schema, with paths or links escaping it, or oversized, is rejected
with one clear line before any request reaches GitHub.

GitHub faults (timeouts, dropped connections, 502s, answers lost after the
work was done) at every step of the asset commit and of the sticky comment:
publishing either succeeds or ends with one `PublishError`; the assets branch
shows either the old figures or the new ones, never a mix; the comment never
links an image that is not there; there is never a second comment (or the
next publish removes it); the retries stay bounded; and the next publish
without faults puts everything right.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from github_stub import GitHubStub
from http_stub import git_blob_sha
from test_publish import png

from nbci.errors import PublishError, ResultsError
from nbci.model import Figure, NotebookResult, Run
from nbci.publish import PublishOptions, RetryPolicy, publish
from nbci.publish.comment import marker
from nbci.results import MAX_NOTEBOOKS, MAX_RESULTS_BYTES, write_run

from .support import cli_env
from .test_hostile_results import outside_code_blocks

MARKER = marker("nbci")
FAULTY = RetryPolicy(pace=False, retries=2, backoff=0.01, max_wait=1, max_total_wait=3, timeout=1)
STALL_S = 1.3
"""Longer than FAULTY's timeout: the client gives up, the server still does the work."""


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub() as stub:
        stub.add_history(3)
        yield stub


def make_run(out: Path, figures: dict[str, int], **metrics: Any) -> Path:
    """A run directory: one notebook `train` with PNG figures {name: seed}."""
    listed = []
    for name, seed in figures.items():
        path = f"figures/train/{name}.png"
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(png(seed))
        listed.append(Figure(name, path))
    result = NotebookResult(
        id="train",
        path="notebooks/train.ipynb",
        parameters={},
        status="ok",
        metrics={"accuracy": 0.9, **metrics},
        figures=tuple(listed),
    )
    write_run(Run(notebooks=(result,), created="2026-11-26T22:00:00Z"), out)
    return out


def event(gh: GitHubStub, tmp_path: Path, name: str, payload: dict[str, Any]) -> dict[str, str]:
    path = tmp_path / f"event-{len(list(tmp_path.glob('event-*')))}.json"
    path.write_text(json.dumps(payload))
    return {
        "GITHUB_REPOSITORY": gh.repo,
        "GITHUB_API_URL": gh.api_url,
        "GITHUB_SERVER_URL": gh.server_url,
        "GITHUB_RUN_ID": "77",
        "GITHUB_EVENT_NAME": name,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_TOKEN": gh.token,
    }


def pr_env(gh: GitHubStub, tmp_path: Path, number: int) -> dict[str, str]:
    pull = gh.pulls.get(number) or gh.add_pull(number, base_sha=gh.ref_sha("main") or "")
    payload = {
        "pull_request": {"number": number, "head": {"sha": pull.head_sha}},
        "repository": {"default_branch": "main"},
    }
    return event(gh, tmp_path, "pull_request", payload)


def push_env(gh: GitHubStub, tmp_path: Path) -> dict[str, str]:
    payload: dict[str, Any] = {
        "ref": "refs/heads/main",
        "after": gh.ref_sha("main"),
        "repository": {},
    }
    return event(gh, tmp_path, "push", payload)


def marked(gh: GitHubStub, number: int) -> list[dict[str, Any]]:
    return [c for c in gh.pr_comments(number) if c["body"].startswith(MARKER)]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url.replace("&amp;", "&"), timeout=10) as answer:
        data: bytes = answer.read()
        return data


# -- untrusted artifacts -------------------------------------------------------------


def _symlinked_results(run_dir: Path) -> None:
    elsewhere = make_run(run_dir.parent / "elsewhere", {})
    (run_dir / "results.json").unlink()
    (run_dir / "results.json").symlink_to(elsewhere / "results.json")


def _oversized(run_dir: Path) -> None:
    with (run_dir / "results.json").open("r+b") as f:
        f.truncate(MAX_RESULTS_BYTES + 1)  # sparse: costs no disk


def _edit(change: Any) -> Any:
    def apply(run_dir: Path) -> None:
        path = run_dir / "results.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data, ensure_ascii=True))

    return apply


def _replace(text: str) -> Any:
    return lambda run_dir: (run_dir / "results.json").write_text(text)


def _too_many(data: dict[str, Any]) -> None:
    """One notebook over the bound, each a valid one with only the fields a notebook must
    have: the count alone is wrong, and checking 10,001 of them takes 0.3 s, not 2."""
    template = {key: data["notebooks"][0][key] for key in ("path", "status")}
    data["notebooks"] = [{**template, "id": f"j{i}"} for i in range(MAX_NOTEBOOKS + 1)]


def _results_is_a_folder(run_dir: Path) -> None:
    (run_dir / "results.json").unlink()
    (run_dir / "results.json").mkdir()


def _link_pr_number(run_dir: Path) -> None:
    (run_dir.parent / "number").write_text("1")
    (run_dir / "pr-number").symlink_to(run_dir.parent / "number")


UNTRUSTED = {
    "symlinked results.json": (_symlinked_results, "not a regular file"),
    "results.json a folder": (_results_is_a_folder, "not a regular file"),
    "oversized": (_oversized, "larger than"),
    "cut short": (lambda d: _replace((d / "results.json").read_text()[:200])(d), "not valid"),
    "NaN constant": (_replace('{"schema": "nbci.results/1", "notebooks": NaN}'), "not valid"),
    "another schema": (_edit(lambda d: d.update(schema="nbci.results/9")), "not supported"),
    "no schema": (_edit(lambda d: d.pop("schema")), "schema"),
    "too many notebooks": (_edit(_too_many), "at most 10000"),
    "output escaping": (
        _edit(lambda d: d["notebooks"][0].update(output="notebooks/../../x.ipynb")),
        "output: expected a relative path",
    ),
    "html absolute": (
        _edit(lambda d: d["notebooks"][0].update(html="/etc/passwd")),
        "html: expected a relative path",
    ),
    "figure escaping": (
        _edit(lambda d: d["notebooks"][0]["figures"].append({"name": "x", "path": "../x.png"})),
        "path: expected a relative path below figures/",
    ),
    "lone surrogate": (
        _edit(lambda d: d["notebooks"][0]["metrics"].update({"acc\ud800": 1})),
        "valid Unicode text",
    ),
    "infinite duration": (
        lambda d: _replace(
            (d / "results.json").read_text().replace('"duration_s": 0.0', '"duration_s": 1e400')
        )(d),
        "duration_s: expected a finite number",
    ),
    "symlinked pr-number": (_link_pr_number, "pr-number"),
}


@pytest.mark.parametrize(("tamper", "says"), UNTRUSTED.values(), ids=UNTRUSTED.keys())
def test_an_untrusted_artifact_is_rejected_before_any_request(
    gh: GitHubStub, tmp_path: Path, tamper: Any, says: str
) -> None:
    run_dir = make_run(tmp_path / "artifact", {"a": 1})
    tamper(run_dir)
    # A push to the default branch: the path that would also store the run as a baseline.
    env = push_env(gh, tmp_path)

    with pytest.raises(ResultsError) as caught:
        publish(PublishOptions(out_dir=run_dir, retry=FAULTY), env)

    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert gh.requests == []


def test_figures_reached_through_links_are_never_uploaded(gh: GitHubStub, tmp_path: Path) -> None:
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / "key.png").write_bytes(png(66))  # a PNG, so only the path gives it away
    run_dir = make_run(tmp_path / "artifact", {"good": 1})
    (run_dir / "figures" / "linked").symlink_to(secret_dir, target_is_directory=True)
    data = json.loads((run_dir / "results.json").read_text())
    data["notebooks"][0]["figures"].append({"name": "key", "path": "figures/linked/key.png"})
    (run_dir / "results.json").write_text(json.dumps(data))

    outcome = publish(PublishOptions(out_dir=run_dir, retry=FAULTY), pr_env(gh, tmp_path, 5))

    assert git_blob_sha(png(66)) not in gh.blobs
    assert set(gh.paths_at("nbci-assets")) == {
        "README.md",  # the branch's first, small commit
        "index.json",
        "pr/5/nbci/figures/train/good.png",
    }
    assert any("figures/linked/key.png" in note for note in outcome.notes)


def test_hostile_strings_in_an_artifact_are_posted_inert(gh: GitHubStub, tmp_path: Path) -> None:
    names = ["<script>alert(1)</script>", "@admin please", "#1", "[x](javascript:alert(1))"]
    run_dir = make_run(tmp_path / "artifact", {}, **{name: 1.0 for name in names})

    publish(PublishOptions(out_dir=run_dir, retry=FAULTY), pr_env(gh, tmp_path, 6))

    (comment,) = marked(gh, 6)
    text = outside_code_blocks(comment["body"])
    assert "<script" not in text
    assert "@admin" not in text  # a zero-width space after the @: nobody is pinged
    assert not re.search(r"(?<!\\)\]\(javascript:", text)  # no link, only escaped text
    assert gh.statuses and "\n" not in gh.statuses[-1]["description"]


@pytest.mark.tools
def test_the_command_line_names_the_bad_field_in_one_line(gh: GitHubStub, tmp_path: Path) -> None:
    import subprocess
    import sys

    run_dir = make_run(tmp_path / "artifact", {"a": 1})
    _edit(lambda d: d["notebooks"][0].update(status="pwned"))(run_dir)
    env = cli_env("publish", **pr_env(gh, tmp_path, 7))

    done = subprocess.run(
        [sys.executable, "-m", "nbci", "publish", str(run_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("nbci: error: ") and "results.json" in line
    assert "notebooks[0].status: 'pwned' is not one of" in line
    assert gh.token not in done.stderr
    assert [r for r in gh.requests if "/pulls/" not in r.path] == []


# -- GitHub faults -------------------------------------------------------------------


def _images_resolve(gh: GitHubStub, body: str) -> list[bytes]:
    """Every image the comment shows, fetched: a broken link fails here."""
    urls = re.findall(r'<img src="([^"]+)"', body)
    return [fetch(url) for url in urls]


def _figures_on_branch(gh: GitHubStub, number: int) -> dict[str, str]:
    if gh.ref_sha("nbci-assets") is None:
        return {}
    prefix = f"pr/{number}/nbci/"
    return {p: sha for p, sha in gh.paths_at("nbci-assets").items() if p.startswith(prefix)}


def _expected(number: int, figures: dict[str, int]) -> dict[str, str]:
    return {
        f"pr/{number}/nbci/figures/train/{name}.png": git_blob_sha(png(seed))
        for name, seed in figures.items()
    }


OLD, NEW = {"a": 1, "b": 2}, {"a": 3, "c": 4}

# (method, path, kind of fault, whether the branch exists before)
FAULTS = {
    # The branch exists: each commit is one GraphQL createCommitOnBranch.
    "mutation-502s": ("POST", r"^/api/graphql$", "fail", True),
    "mutation-stall": ("POST", r"^/api/graphql$", "stall", True),
    "mutation-reset": ("POST", r"^/api/graphql$", "reset", True),
    "mutation-lost": ("POST", r"^/api/graphql$", "lost", True),
    # No branch yet: a small commit creates it through the Git Data API, then the
    # figures go in the same single GraphQL commit as on every later publish.
    "first-mutation-502s": ("POST", r"^/api/graphql$", "fail", False),
    "first-mutation-stall": ("POST", r"^/api/graphql$", "stall", False),
    "tree-reset": ("POST", r"/git/trees$", "reset", False),
    "tree-502s": ("POST", r"/git/trees$", "fail", False),
    "commit-lost": ("POST", r"/git/commits$", "lost", False),
    "ref-create-lost": ("POST", r"/git/refs$", "lost", False),
    "ref-create-502s": ("POST", r"/git/refs$", "fail", False),
    "tip-read-reset": ("GET", r"/git/ref/", "reset", True),
    "comment-list-reset": ("GET", r"/issues/\d+/comments$", "reset", True),
    "comment-list-502s": ("GET", r"/issues/\d+/comments$", "fail", True),
    "comment-edit-lost": ("PATCH", r"/issues/comments/", "lost", True),
    "comment-edit-502s": ("PATCH", r"/issues/comments/", "fail", True),
    "comment-create-lost": ("POST", r"/issues/\d+/comments$", "lost", False),
    "comment-create-stall": ("POST", r"/issues/\d+/comments$", "stall", False),
    "comment-create-502s": ("POST", r"/issues/\d+/comments$", "fail", False),
    "status-lost": ("POST", r"/statuses/", "lost", True),
}


def inject(gh: GitHubStub, method: str, path: str, kind: str) -> None:
    if kind == "fail":
        gh.fail(method, path, 502, times=100)  # for good
    elif kind == "lost":
        gh.fail_after_doing(method, path, 502)
    elif kind == "reset":
        gh.reset_connection(method, path)
    else:
        gh.stall(method, path, STALL_S)


@pytest.mark.parametrize(("method", "path", "kind", "existing"), FAULTS.values(), ids=FAULTS)
def test_a_fault_leaves_a_consistent_branch_and_one_comment(
    gh: GitHubStub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    kind: str,
    existing: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="nbci")
    number = 40
    env = pr_env(gh, tmp_path, number)
    old: dict[str, str] = {}
    if existing:  # an earlier push of the pull request was published
        publish(PublishOptions(make_run(tmp_path / "old", OLD), retry=FAULTY), env)
        old = _expected(number, OLD)
        assert _figures_on_branch(gh, number) == old
    inject(gh, method, path, kind)
    fault = gh.faults[-1]
    times_left = fault.times
    first_request = len(gh.requests)

    try:
        publish(PublishOptions(make_run(tmp_path / "new", NEW), retry=FAULTY), env)
    except PublishError as error:
        assert "\n" not in str(error) and gh.token not in str(error)
    gh.wait_for_stalls()  # the server finishes what the client gave up on
    assert gh.stalls[1] == gh.stalls[0] <= 1
    assert fault.times < times_left, "the publish never made the request the fault is on"

    # Bounded: every request is retried at most twice, and all waits fit the budget.
    assert len(gh.requests) - first_request < 60
    waits = [float(w) for w in re.findall(r"retry \d+ of \d+ in ([\d.]+) s", caplog.text)]
    assert sum(waits) <= FAULTY.max_total_wait
    # The branch holds the old figures or the new ones, never a mix.
    assert _figures_on_branch(gh, number) in (old, _expected(number, NEW))
    comments = marked(gh, number)
    # A create that GitHub carries out after the client gave up (and retried) can land
    # after the duplicate check: two comments until the next publish removes the older.
    assert len(comments) <= (2 if path.endswith("comments$") and kind == "stall" else 1)
    for comment in comments:
        assert all(data.startswith(b"\x89PNG") for data in _images_resolve(gh, comment["body"]))

    # The next publish, without faults, puts everything right.
    gh.faults.clear()
    publish(PublishOptions(make_run(tmp_path / "again", NEW), retry=FAULTY), env)
    assert _figures_on_branch(gh, number) == _expected(number, NEW)
    (comment,) = marked(gh, number)
    images = _images_resolve(gh, comment["body"])
    assert sorted(images) == sorted(png(seed) for seed in NEW.values())


def test_baseline_storing_faults_never_leave_a_half_stored_run(
    gh: GitHubStub, tmp_path: Path
) -> None:
    """On the default branch the results and figures go in one commit: all or nothing."""
    run_dir = make_run(tmp_path / "main", {"a": 1})
    env = push_env(gh, tmp_path)
    sha = gh.ref_sha("main")
    for method, path in (("POST", r"/git/trees$"), ("POST", r"/git/refs$")):
        gh.fail(method, path, 502, times=100)
        with pytest.raises(PublishError):
            publish(PublishOptions(out_dir=run_dir, retry=FAULTY), env)
        assert gh.ref_sha("nbci-assets") is None
        gh.faults.clear()
    gh.fail_after_doing("POST", r"/git/refs$", 502)

    publish(PublishOptions(out_dir=run_dir, retry=FAULTY), env)

    stored = gh.paths_at("nbci-assets")
    assert {f"runs/{sha}/nbci/results.json", f"runs/{sha}/nbci/figures/train/a.png"} <= set(stored)
    assert len([c for c in gh.commits.values() if c["message"].startswith("nbci:")]) >= 1


def test_an_unreachable_github_ends_in_one_line_quickly(tmp_path: Path) -> None:
    """Nothing listens: every request fails to connect; the retries stay within budget."""
    with GitHubStub() as stub:
        stub.add_history(1)
        env = pr_env(stub, tmp_path, 3)
    # The stub is closed now: its port refuses connections.
    run_dir = make_run(tmp_path / "out", {"a": 1})

    with pytest.raises(PublishError, match="could not reach GitHub") as caught:
        publish(PublishOptions(out_dir=run_dir, retry=FAULTY), env)

    assert "\n" not in str(caught.value)
    assert os.environ.get("GITHUB_TOKEN", "never-set") not in str(caught.value)
