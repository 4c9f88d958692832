"""History on GitHub (issue 13), against the loopback GitHub stand-in over real HTTP.

Pushes to the default branch store their runs on the assets branch; a pull
request's comment is then judged against the stored runs of the base branch's
last commits: ranges, wording and trend charts hosted like figures.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_stub import GitHubStub
from test_publish import fetch, image_urls, make_run, options, png, pr_env, push_env

from nbci._files import safe_name
from nbci.model import NotebookResult, Run
from nbci.publish import publish
from nbci.publish.forge import first_parent_line
from nbci.results import write_run

NOISY = [11.2, 12.9, 10.4, 13.8, 11.9, 12.2, 10.9, 13.1, 12.6, 11.5, 12.0, 13.4]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub() as stub:
        yield stub


def run_dir(out: Path, **metrics: float) -> Path:
    nb = NotebookResult(
        id="train", path="notebooks/train.ipynb", parameters={}, status="ok", metrics=metrics
    )
    write_run(Run(notebooks=(nb,), created="2026-11-26T22:00:00Z"), out)
    return out


def store_history(
    gh: GitHubStub, tmp_path: Path, timings: list[float], **extra: float
) -> list[str]:
    """One commit per timing on the default branch, each published (its run stored)."""
    shas = gh.add_history(len(timings))
    for i, (sha, timing) in enumerate(zip(shas, timings, strict=True)):
        out = run_dir(tmp_path / f"main-{i}", train_time_s=timing, accuracy=0.9, **extra)
        assert publish(options(out), push_env(gh, tmp_path, sha)).stored_baseline
    return shas


def test_the_comment_judges_against_the_history_and_shows_trend_charts(
    gh: GitHubStub, tmp_path: Path
) -> None:
    shas = store_history(gh, tmp_path, NOISY)
    gh.add_pull(21, base_sha=shas[-1])
    head = run_dir(tmp_path / "pr", train_time_s=NOISY[-1] + 1.0, accuracy=0.7)

    outcome = publish(options(head), pr_env(gh, tmp_path, 21))

    body = gh.pr_comments(21)[0]["body"]
    assert "within the base branch's range" in body  # the timing: noise
    assert "1 regression" in body and "regressed, " in body  # accuracy: far below its range
    assert "below the base branch's range" in body
    assert "#### Trends" in body
    charts = [u for u in image_urls(body) if "/trends/" in u]
    assert len(charts) == 2
    for url in charts:  # on the assets branch, at the commit the comment links
        assert f"/raw/{outcome.assets_commit}/pr/21/nbci/trends/train/" in url
        assert fetch(url).startswith(PNG)
    assert outcome.notes == ()


def calls_for(gh: GitHubStub, tmp_path: Path, name: str, timings: list[float], metrics: int) -> int:
    extra = {f"m{i}_score": 0.5 for i in range(metrics)}
    shas = store_history(gh, tmp_path / name, timings, **extra)
    number = 30 + len(gh.pulls)
    gh.add_pull(number, base_sha=shas[-1])
    before = len(gh.calls("GET"))
    head = run_dir(tmp_path / name / "pr", train_time_s=12.0, accuracy=0.9, **extra)
    publish(options(head, history=len(timings)), pr_env(gh, tmp_path / name, number))
    return len(gh.calls("GET")) - before


def test_requests_grow_with_the_history_not_with_the_metrics(tmp_path: Path) -> None:
    counts = {}
    for history, metrics in ((6, 1), (6, 60), (12, 1)):
        with GitHubStub() as gh:
            (tmp_path / f"{history}-{metrics}").mkdir()
            counts[history, metrics] = calls_for(
                gh, tmp_path, f"{history}-{metrics}", NOISY[:history], metrics
            )
    assert counts[6, 1] == counts[6, 60]  # sixty more metrics: not one more request
    # six more stored runs: six more blob reads, nothing else
    assert counts[12, 1] - counts[6, 1] == 6


def test_history_reads_one_blob_per_stored_run_and_lists_commits_once(
    gh: GitHubStub, tmp_path: Path
) -> None:
    shas = store_history(gh, tmp_path, NOISY[:8])
    gh.add_pull(22, base_sha=shas[-1])
    before = {kind: len(gh.calls("GET", path)) for kind, path in _KINDS.items()}
    publish(
        options(run_dir(tmp_path / "pr", train_time_s=12.0, accuracy=0.9)), pr_env(gh, tmp_path, 22)
    )
    after = {kind: len(gh.calls("GET", path)) - before[kind] for kind, path in _KINDS.items()}
    # the baseline (the base commit's run) is read once and reused by the history; each
    # stored run is read by its path, the branch's index says which commits have one
    assert after == {"runs": 8, "listings": 1, "trees": 0, "index": 1}


_KINDS = {
    "runs": r"/contents/runs/.*/results\.json$",
    "listings": r"/commits$",
    "trees": r"/git/trees/",
    "index": r"/contents/index\.json$",
}


def test_a_corrupt_stored_run_is_skipped_with_a_note(gh: GitHubStub, tmp_path: Path) -> None:
    shas = store_history(gh, tmp_path, NOISY[:7])
    broken = shas[2]
    tip = gh.ref_sha("nbci-assets")
    assert tip is not None
    with gh._lock:  # a stored run damaged on the branch
        blob = gh._store_blob(b'{"schema": "nbci.results/999", "notebooks": []}')
        tree = gh._load_tree(gh.commits[tip]["tree"])
        tree.folder("runs", broken, "nbci").entries["results.json"] = ("100644", "blob", blob)
        gh.refs["refs/heads/nbci-assets"] = gh._store_commit("tamper", gh._write_tree(tree), [tip])
    gh.add_pull(23, base_sha=shas[-1])

    outcome = publish(
        options(run_dir(tmp_path / "pr", train_time_s=13.0, accuracy=0.9)),
        pr_env(gh, tmp_path, 23),
    )

    assert outcome.passed
    assert [n for n in outcome.notes if broken[:12] in n] == [
        next(n for n in outcome.notes if "was skipped" in n)
    ]
    skipped = next(n for n in outcome.notes if "was skipped" in n)
    assert "nbci.results/999" in skipped
    body = gh.pr_comments(23)[0]["body"]
    assert "within the base branch's range" in body  # the six good runs still give a range
    assert broken[:12] in body  # the note is in the comment's small print


def test_history_zero_reads_nothing_more(gh: GitHubStub, tmp_path: Path) -> None:
    shas = store_history(gh, tmp_path, NOISY[:6])
    gh.add_pull(24, base_sha=shas[-1])
    before = len(gh.calls("GET", _KINDS["runs"]))
    publish(
        options(run_dir(tmp_path / "pr", train_time_s=13.5, accuracy=0.9), history=0),
        pr_env(gh, tmp_path, 24),
    )
    assert len(gh.calls("GET", _KINDS["runs"])) - before == 1  # the baseline only
    body = gh.pr_comments(24)[0]["body"]
    assert "within the base branch's range" not in body and "#### Trends" not in body
    assert json.loads(gh.file_at("nbci-assets", f"runs/{shas[-1]}/nbci/results.json") or b"")


def test_history_on_gitlab_too(tmp_path: Path) -> None:
    """The history reader is written against the forge interface: a merge request works alike."""
    from gitlab_stub import GitLabStub
    from test_publish_gitlab import mr_env
    from test_publish_gitlab import options as gl_options
    from test_publish_gitlab import push_env as gl_push_env

    with GitLabStub() as gl:
        shas = gl.add_history(len(NOISY))
        for i, (sha, timing) in enumerate(zip(shas, NOISY, strict=True)):
            out = run_dir(tmp_path / f"main-{i}", train_time_s=timing, accuracy=0.9)
            assert publish(gl_options(out), gl_push_env(gl, sha)).stored_baseline
        gl.add_merge_request(5, base_sha=shas[-1])
        head = run_dir(tmp_path / "mr", train_time_s=NOISY[-1] + 1.0, accuracy=0.7)

        outcome = publish(gl_options(head), mr_env(gl, 5))

        (note,) = gl.mr_notes(5)
        assert "within the base branch's range" in note["body"]
        assert "below the base branch's range" in note["body"]
        charts = [u for u in image_urls(note["body"]) if "/trends/" in u]
        assert len(charts) == 2
        for url in charts:
            assert f"/-/raw/{outcome.assets_commit}/" in url
            assert fetch(url).startswith(PNG)


def test_a_merged_branchs_stored_runs_are_neither_history_nor_baseline(
    gh: GitHubStub, tmp_path: Path
) -> None:
    """The commit listing holds a merged feature branch's commits between the default
    branch's own; only the first-parent line is the base branch's history."""
    main = store_history(gh, tmp_path, NOISY[:6])
    feature, merge = gh.add_merged_branch(3, main_commits=0)
    for i, sha in enumerate(feature):  # stored runs far off the default branch's
        out = run_dir(tmp_path / f"feature-{i}", train_time_s=90.0 + i, accuracy=0.1)
        assert publish(options(out), push_env(gh, tmp_path, sha)).stored_baseline
    listed = list_commits(gh, merge)
    assert listed[:4] == [merge, *reversed(feature)]  # the stand-in lists them like GitHub
    assert main[-1] in listed
    gh.add_pull(24, base_sha=merge)  # the merge commit has no stored run of its own

    outcome = publish(
        options(run_dir(tmp_path / "pr", train_time_s=30.0, accuracy=0.9)),
        pr_env(gh, tmp_path, 24),
    )

    assert outcome.baseline_sha == main[-1]  # the first parent, not the feature's tip
    body = gh.pr_comments(24)[0]["body"]
    assert f"{main[-1][:12]}, 1 commit before the base commit" in body
    assert not [sha for sha in feature if sha[:12] in body]
    assert "above the base branch's range" in body  # 30 s: outside the main line's spread
    assert "improved" not in body  # accuracy equals the main line's, not the feature's 0.1


def list_commits(gh: GitHubStub, sha: str) -> list[str]:
    request = urllib.request.Request(
        f"{gh.api_url}/repos/{gh.repo}/commits?sha={sha}&per_page=100",
        headers={"Authorization": f"token {gh.token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return [commit["sha"] for commit in json.load(answer)]


# -- report names: each report keeps its own stored runs --------------------------


def store_runs(
    gh: GitHubStub, tmp_path: Path, shas: list[str], name: str, **metrics: float
) -> None:
    for i, sha in enumerate(shas):
        out = run_dir(tmp_path / f"{name}-{i}", **metrics)
        assert publish(options(out, name=name), push_env(gh, tmp_path, sha)).stored_baseline


def test_two_reports_keep_their_own_stored_runs(gh: GitHubStub, tmp_path: Path) -> None:
    shas = gh.add_history(6)
    store_runs(gh, tmp_path, shas, "ml/gpu", accuracy=0.5, train_time_s=90.0)
    store_runs(gh, tmp_path, shas, "cpu", accuracy=0.9, train_time_s=12.0)
    assert safe_name("ml/gpu") != "ml/gpu"  # a file-safe folder: no runs/<sha>/ml/gpu/
    for name, accuracy in (("ml/gpu", 0.5), ("cpu", 0.9)):  # neither overwrote the other
        path = f"runs/{shas[-1]}/{safe_name(name)}/results.json"
        stored = json.loads(gh.file_at("nbci-assets", path) or b"")
        assert stored["report"] == name
        assert stored["notebooks"][0]["metrics"]["accuracy"] == accuracy
    gh.add_pull(25, base_sha=shas[-1])

    outcome = publish(
        options(run_dir(tmp_path / "pr", accuracy=0.9, train_time_s=12.0), name="cpu"),
        pr_env(gh, tmp_path, 25),
    )

    assert outcome.baseline_sha == shas[-1] and outcome.notes == ()
    body = gh.pr_comments(25)[0]["body"]
    assert "no metric regressed or improved" in body  # cpu's runs, not gpu's
    assert "0.5000" not in body and "90.00" not in body


def test_a_run_stored_without_a_name_by_an_earlier_nbci_is_still_read(
    gh: GitHubStub, tmp_path: Path
) -> None:
    shas = gh.add_history(2)
    old = make_run(tmp_path / "old", accuracy=0.8)  # with figures/train/{confusion,roc}.png
    for path in ("results.json", "figures/train/roc.png", "figures/train/confusion.png"):
        gh.put_file("nbci-assets", f"runs/{shas[0]}/{path}", (old / path).read_bytes())
    gh.add_pull(26, base_sha=shas[-1])

    outcome = publish(
        options(
            make_run(tmp_path / "pr", accuracy=0.7, figures={"confusion": 5, "roc": 2}), name="cpu"
        ),
        pr_env(gh, tmp_path, 26),
    )

    assert outcome.baseline_sha == shas[0] and outcome.notes == ()
    body = gh.pr_comments(26)[0]["body"]
    assert f"{shas[0][:12]}, 1 commit before the base commit" in body
    assert "0.8000" in body and "regressed" in body
    base_figures = [u for u in image_urls(body) if f"/runs/{shas[0]}/figures/" in u]
    # The old layout's figures are compared with: the changed one shown beside the new
    # one, the pixel-identical one only named.
    assert len(base_figures) == 1 and fetch(base_figures[0]) == png(1)
    assert "1 unchanged figure" in body


def test_a_run_stored_for_another_report_is_skipped_with_a_note(
    gh: GitHubStub, tmp_path: Path
) -> None:
    shas = gh.add_history(7)
    store_runs(gh, tmp_path, shas, "cpu", accuracy=0.9, train_time_s=12.0)
    foreign = shas[-1]  # the base commit: a run of report "gpu" put in cpu's folder
    stored = json.loads(gh.file_at("nbci-assets", f"runs/{shas[0]}/cpu/results.json") or b"")
    stored.update(report="gpu")
    stored["notebooks"][0]["metrics"]["accuracy"] = 0.1
    gh.put_file("nbci-assets", f"runs/{foreign}/cpu/results.json", json.dumps(stored).encode())
    gh.add_pull(27, base_sha=foreign)

    outcome = publish(
        options(run_dir(tmp_path / "pr", accuracy=0.9, train_time_s=12.0), name="cpu"),
        pr_env(gh, tmp_path, 27),
    )

    assert outcome.passed and outcome.baseline_sha == shas[-2]  # the nearest run of cpu's own
    skipped = [n for n in outcome.notes if foreign[:12] in n]
    assert skipped and all("is report 'gpu''s, not 'cpu''s" in n for n in skipped)
    body = gh.pr_comments(27)[0]["body"]
    assert "no metric regressed or improved" in body  # neither baseline nor history
    assert "0.1000" not in body
    assert "is report 'gpu''s" in body  # the note, in the comment's small print


def test_the_first_parent_line_reads_the_listing_no_further_than_it_needs() -> None:
    """c3 merges the feature f1-f2 into c2; listed newest first like `git log`."""
    listing = [("c3", ["c2", "f2"]), ("f2", ["f1"]), ("c2", ["c1"]), ("f1", ["c1"]), ("c1", [])]
    read: list[str] = []

    def lazily() -> Iterator[tuple[str, list[str]]]:
        for sha, parents in listing:
            read.append(sha)
            yield sha, parents

    assert first_parent_line("c3", lazily(), 2) == ["c3", "c2"]
    assert read == ["c3", "f2", "c2"]
    assert first_parent_line("c3", iter(listing), 10) == ["c3", "c2", "c1"]
    assert first_parent_line("f2", iter(listing[1:]), 10) == ["f2", "f1", "c1"]
    assert first_parent_line("gone", iter(listing), 10) == []
