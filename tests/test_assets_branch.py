"""The assets branch stays cheap and bounded (issues 21 and 22), on the stand-ins.

A publish reads the branch's index and lists only the folders it reads or
writes, so its requests do not depend on how many runs and review folders the
branch holds, nor on how many figures it publishes, the first time as later.
A default-branch publish prunes, in its one commit, what the rule no longer
keeps; a listing cut short never costs a baseline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import test_publish_bitbucket as bitbucket_env
import test_publish_gitlab as gitlab_env
from bitbucket_stub import BitbucketCloudStub, BitbucketDataCenterStub
from github_stub import GitHubStub
from gitlab_stub import GitLabStub
from handmade_runs import nb, run
from test_publish import make_run, options, png, pr_env, push_env

from nbci.model import Scrap
from nbci.publish import publish
from nbci.publish.gitlab.forge import ASSETS_ROOT
from nbci.publish.index import BranchIndex, Entry, Pruning, dump, parse, prune
from nbci.results import write_run

BRANCH = "nbci-assets"
REAL_RUNS = 8
"""Runs of the default branch's last commits: the baseline and the history a review reads."""


# -- a branch of many stored runs, on either stand-in --------------------------------


@dataclass
class Forge:
    """One stand-in and how the tests drive it."""

    stub: Any
    put: Callable[[dict[str, bytes]], object]
    files: Callable[[], dict[str, Any]]
    """The assets branch's files (paths from the root of nbci's files)."""
    add_review: Callable[[int, str], dict[str, str]]
    """A pull/merge request on a base commit -> the publish environment."""
    push: Callable[[str], dict[str, str]]
    flags: dict[str, Any] = field(default_factory=dict)
    """What `nbci publish` is told besides the environment (Bitbucket's --api-url)."""

    @property
    def requests(self) -> int:
        return len(self.stub.requests)


def github(stub: GitHubStub, tmp_path: Path) -> Forge:
    def add_review(number: int, base: str) -> dict[str, str]:
        stub.add_pull(number, base_sha=base)
        return pr_env(stub, tmp_path, number)

    return Forge(
        stub,
        put=lambda files: stub.put_files(BRANCH, files),
        files=lambda: stub.paths_at(BRANCH),
        add_review=add_review,
        push=lambda sha: push_env(stub, tmp_path, sha),
    )


def gitlab(stub: GitLabStub) -> Forge:
    def add_review(number: int, base: str) -> dict[str, str]:
        stub.add_merge_request(number, base_sha=base)
        return gitlab_env.mr_env(stub, number)

    def files() -> dict[str, Any]:
        prefix = ASSETS_ROOT + "/"
        every = stub.commits[stub.branches[BRANCH]]["files"]
        return {p.removeprefix(prefix): b for p, b in every.items() if p.startswith(prefix)}

    return Forge(
        stub,
        put=lambda files: stub.put_files(
            BRANCH, {f"{ASSETS_ROOT}/{p}": d for p, d in files.items()}
        ),
        files=files,
        add_review=add_review,
        push=lambda sha: gitlab_env.push_env(stub, sha),
    )


def bitbucket(stub: BitbucketCloudStub) -> Forge:
    def add_review(number: int, base: str) -> dict[str, str]:
        stub.add_pull_request(number, base=base)
        return bitbucket_env.pr_env(stub, number)

    return Forge(
        stub,
        put=lambda files: bitbucket_put(stub, files),
        files=lambda: bitbucket_files(stub),
        add_review=add_review,
        push=lambda sha: bitbucket_env.push_env(stub, sha),
        flags={"api_url": f"{stub.base_url}/2.0"},
    )


def bitbucket_put(
    stub: BitbucketCloudStub | BitbucketDataCenterStub, files: dict[str, bytes]
) -> str:
    return stub.put_files(BRANCH, {f"{ASSETS_ROOT}/{p}": d for p, d in files.items()})


def bitbucket_files(stub: BitbucketCloudStub | BitbucketDataCenterStub) -> dict[str, Any]:
    """The assets branch's files: under .nbci-assets/ on Cloud and Data Center alike."""
    prefix = ASSETS_ROOT + "/"
    every = stub.commits[stub.branches[BRANCH]]["files"]
    return {p.removeprefix(prefix): b for p, b in every.items() if p.startswith(prefix)}


def data_center(stub: BitbucketDataCenterStub) -> Forge:
    env = {"BITBUCKET_TOKEN": stub.token, "BITBUCKET_REPO_FULL_NAME": f"{stub.project}/{stub.slug}"}

    def add_review(number: int, base: str) -> dict[str, str]:
        pull = stub.add_pull_request(number, base=base)
        return {**env, "BITBUCKET_PR_ID": str(number), "BITBUCKET_COMMIT": pull.head}

    return Forge(
        stub,
        put=lambda files: bitbucket_put(stub, files),
        files=lambda: bitbucket_files(stub),
        add_review=add_review,
        push=lambda sha: {**env, "BITBUCKET_COMMIT": sha, "BITBUCKET_BRANCH": "main"},
        flags={"api_url": stub.base_url, "forge": "bitbucket"},
    )


def fake_sha(i: int) -> str:
    return hashlib.sha1(b"filler %d" % i).hexdigest()


def build_branch(forge: Forge, tmp_path: Path, line: list[str], runs: int, reviews: int) -> None:
    """An assets branch written by nbci: `runs` stored runs (those of `line`, the default
    branch's last commits, are the newest) and `reviews` review folders, half of them not
    written for 60 days, all in the index."""
    results = (make_run(tmp_path / "stored", accuracy=0.8) / "results.json").read_bytes()
    files: dict[str, bytes] = {}
    entries = []
    for i in range(runs - len(line)):  # older runs, of commits long gone from the line
        folder = f"runs/{fake_sha(i)}/nbci"
        files[f"{folder}/results.json"] = results
        written = f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        entries.append(Entry(folder, "run", fake_sha(i), "nbci", written, ("results.json",)))
    for i, sha in enumerate(line):
        folder = f"runs/{sha}/nbci"
        files[f"{folder}/results.json"] = results
        files[f"{folder}/figures/train/confusion.png"] = png(1)
        names = ("figures/train/confusion.png", "results.json")
        entries.append(Entry(folder, "run", sha, "nbci", f"2026-11-01T00:00:{i:02d}Z", names))
    for k in range(reviews):
        folder = f"pr/{1000 + k}/nbci"
        files[f"{folder}/figures/train/a.png"] = png(k)
        day = "2026-09-01" if k % 2 else _today()
        entry = Entry(folder, "review", str(1000 + k), "nbci", f"{day}T00:00:00Z", ())
        entries.append(Entry(**{**entry.__dict__, "files": ("figures/train/a.png",)}))
    files["index.json"] = dump(BranchIndex(tuple(entries)))
    forge.put(files)


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def stored_index(forge: Forge) -> BranchIndex:
    stub = forge.stub
    if isinstance(stub, GitHubStub):
        data = stub.file_at(BRANCH, "index.json")
    else:
        data = stub.file_at(BRANCH, f"{ASSETS_ROOT}/index.json")
    assert data is not None
    return parse(data, "index.json")


def publish_twice(forge: Forge, tmp_path: Path, runs: int, reviews: int) -> dict[str, Any]:
    """A review's publish and a default-branch publish on a branch holding `runs` stored
    runs and `reviews` review folders: the requests each made, and what was left."""
    line = forge.stub.add_history(REAL_RUNS)
    build_branch(forge, tmp_path / f"branch{runs}", line, runs, reviews)
    env = forge.add_review(7, line[-1])
    before = forge.requests
    review = publish(options(make_run(tmp_path / f"pr{runs}", accuracy=0.9), **forge.flags), env)
    review_requests = forge.requests - before
    assert review.baseline_sha == line[-1] and review.notes == ()
    new = forge.stub.add_history(1)[-1]
    before = forge.requests
    pushed = publish(options(make_run(tmp_path / f"main{runs}"), **forge.flags), forge.push(new))
    assert pushed.stored_baseline and pushed.baseline_sha == line[-1]
    return {
        "review": review_requests,
        "push": forge.requests - before,
        "index": stored_index(forge),
        "files": forge.files(),
        "new": new,
        "line": line,
    }


def kept_by_the_rule(result: dict[str, Any], runs: int, keep: int) -> set[str]:
    """The run folders the rule keeps: the newest `keep` (the new one, the line's, then the
    newest of the older ones)."""
    fillers = [f"runs/{fake_sha(i)}/nbci" for i in range(runs - REAL_RUNS)]
    newest = [f"runs/{result['new']}/nbci", *(f"runs/{s}/nbci" for s in result["line"])]
    return set((newest + fillers[::-1])[:keep])


@pytest.mark.parametrize("forge_name", ["github", "gitlab", "bitbucket", "bitbucket-dc"])
def test_two_thousand_stored_runs_cost_what_ten_do_and_the_prune_keeps_the_rule(
    forge_name: str, tmp_path: Path
) -> None:
    results = {}
    for runs, reviews in ((10, 6), (2000, 500)):
        if forge_name == "github":
            with GitHubStub() as gh:
                results[runs] = publish_twice(github(gh, tmp_path), tmp_path, runs, reviews)
        elif forge_name == "gitlab":
            with GitLabStub() as gl:
                results[runs] = publish_twice(gitlab(gl), tmp_path, runs, reviews)
        elif forge_name == "bitbucket":
            with BitbucketCloudStub() as bb:
                results[runs] = publish_twice(bitbucket(bb), tmp_path, runs, reviews)
        else:
            with BitbucketDataCenterStub() as dc:
                results[runs] = publish_twice(data_center(dc), tmp_path, runs, reviews)
    small, large = results[10], results[2000]
    assert small["review"] == large["review"]
    assert small["push"] == large["push"]

    # The push's one commit pruned the large branch to exactly what the rule keeps.
    index, files = large["index"], large["files"]
    runs_left = {e.folder for e in index.entries if e.kind == "run"}
    assert runs_left == kept_by_the_rule(large, 2000, 200)
    on_branch = {"/".join(p.split("/")[:3]) for p in files if p.startswith("runs/")}
    reviews_left = {e.folder for e in index.entries if e.kind == "review"}
    recent = {f"pr/{1000 + k}/nbci" for k in range(500) if k % 2 == 0}
    assert reviews_left == recent | {"pr/7/nbci"}  # written within 30 days, and the new one
    pr_on_branch = {"/".join(p.split("/")[:3]) for p in files if p.startswith("pr/")}
    if forge_name == "bitbucket-dc":  # REST 1.0 cannot delete: pruned from the index only
        assert on_branch > runs_left and pr_on_branch > reviews_left
    else:
        assert on_branch == runs_left
        assert pr_on_branch == reviews_left
    # The small branch keeps every run; its old review folders went all the same.
    assert len([e for e in small["index"].entries if e.kind == "run"]) == 11


def test_a_branch_without_an_index_is_listed_once_then_indexed(tmp_path: Path) -> None:
    with GitHubStub() as gh:
        shas = gh.add_history(2)
        old = make_run(tmp_path / "old", accuracy=0.8)
        gh.put_files(
            BRANCH,
            {
                f"runs/{shas[0]}/results.json": (old / "results.json").read_bytes(),
                "pr/3/figures/train/a.png": png(3),  # a review folder of an earlier nbci
            },
        )
        env = github(gh, tmp_path).add_review(5, shas[-1])
        first = publish(options(make_run(tmp_path / "one", accuracy=0.7)), env)
        assert first.baseline_sha == shas[0]
        assert len(gh.calls("GET", r"/git/trees/")) == 1  # the one whole listing
        index = stored_index(github(gh, tmp_path))
        assert {e.folder for e in index.entries} == {f"runs/{shas[0]}", "pr/3", "pr/5/nbci"}

        before = len(gh.calls("GET", r"/git/trees/"))
        second = publish(options(make_run(tmp_path / "two", accuracy=0.6)), env)
        assert second.baseline_sha == shas[0]
        listed = {r.path.rsplit("/", 1)[-1] for r in gh.calls("GET", r"/git/trees/")[before:]}
        roots = {commit["tree"] for commit in gh.commits.values()}
        assert not listed & roots  # the index read, only its own folder listed


# -- the first publish -------------------------------------------------------------


def publish_requests(gh: GitHubStub, tmp_path: Path, figures: int, seed: int) -> tuple[int, int]:
    """(requests, write requests) of one pull request publish of `figures` figures."""
    before, writes = len(gh.requests), len(gh.writes())
    run_dir = make_run(
        tmp_path / f"run{figures}-{seed}",
        figures={f"fig{i}": seed + i for i in range(figures)},
    )
    publish(options(run_dir), pr_env(gh, tmp_path, 9))
    return len(gh.requests) - before, len(gh.writes()) - writes


def test_the_first_publish_costs_what_every_later_one_does(tmp_path: Path) -> None:
    counts = {}
    for figures in (2, 8):
        with GitHubStub() as gh:
            gh.add_pull(9, base_sha=gh.add_history(2)[-1])
            first = publish_requests(gh, tmp_path, figures, seed=1)
            later = publish_requests(gh, tmp_path, figures, seed=50)
            assert not gh.calls("POST", r"/git/blobs$")  # no request per PNG, ever
            counts[figures] = (first, later)
    assert counts[2] == counts[8]
    (_reads, first_writes), (_, later_writes) = counts[8]
    # tree, commit, ref (the branch's small first commit), then as later: the GraphQL commit,
    # the comment, the status
    assert first_writes == later_writes + 3


# -- two reports on one pull request ---------------------------------------------


def test_two_reports_on_one_pull_request_keep_their_own_files(tmp_path: Path) -> None:
    with GitHubStub() as gh:
        gh.add_pull(5, base_sha=gh.add_history(2)[-1])
        env = pr_env(gh, tmp_path, 5)
        publish(options(make_run(tmp_path / "cpu1", figures={"a": 1}), name="cpu"), env)
        publish(options(make_run(tmp_path / "gpu1", figures={"b": 2}), name="gpu"), env)
        publish(options(make_run(tmp_path / "cpu2", figures={"c": 3}), name="cpu"), env)
        files = set(gh.paths_at(BRANCH))
        assert "pr/5/gpu/figures/train/b.png" in files  # not deleted by cpu's publishes
        assert "pr/5/cpu/figures/train/c.png" in files
        assert "pr/5/cpu/figures/train/a.png" not in files  # cpu's own earlier push: replaced
        assert len(gh.pr_comments(5)) == 2


# -- what cannot be read is said, and never costs a baseline -----------------------


def test_a_cut_listing_never_loses_the_baseline(tmp_path: Path) -> None:
    with GitHubStub() as gh:
        shas = gh.add_history(3)
        old = (make_run(tmp_path / "old", accuracy=0.8) / "results.json").read_bytes()
        filler = {f"runs/{fake_sha(i)}/results.json": old for i in range(30)}
        gh.put_files(BRANCH, {**filler, f"runs/{shas[-1]}/results.json": old})
        gh.tree_listing_limit = 10  # as GitHub past 100,000 entries
        env = github(gh, tmp_path).add_review(4, shas[-1])

        outcome = publish(options(make_run(tmp_path / "pr", accuracy=0.7)), env)

        assert outcome.baseline_sha == shas[-1]  # read by its path
        assert any("could only be listed in part" in n for n in outcome.notes)
        body = gh.pr_comments(4)[0]["body"]
        assert "0.8000" in body and "could only be listed in part" in body
        assert "No baseline" not in body
        assert stored_index(github(gh, tmp_path)).complete is False  # said so in the index

        again = publish(options(make_run(tmp_path / "again", accuracy=0.7)), env)
        assert again.baseline_sha == shas[-1]  # the partial index: still read by path


def test_no_baseline_after_a_cut_listing_says_so_not_none_stored(tmp_path: Path) -> None:
    with GitHubStub() as gh:
        shas = gh.add_history(3)
        old = (make_run(tmp_path / "old") / "results.json").read_bytes()
        gh.put_files(BRANCH, {f"runs/{fake_sha(i)}/results.json": old for i in range(30)})
        gh.tree_listing_limit = 10
        env = github(gh, tmp_path).add_review(4, shas[-1])

        outcome = publish(options(make_run(tmp_path / "pr")), env)

        assert outcome.baseline_sha is None
        body = gh.pr_comments(4)[0]["body"]
        assert "the stored results could not all be read" in body
        assert "no stored results for the base commit" not in body


def test_a_malformed_index_is_refused_with_a_note_and_the_branch_listed(tmp_path: Path) -> None:
    with GitHubStub() as gh:
        shas = gh.add_history(2)
        old = (make_run(tmp_path / "old", accuracy=0.8) / "results.json").read_bytes()
        gh.put_files(
            BRANCH,
            {
                f"runs/{shas[-1]}/nbci/results.json": old,
                "index.json": json.dumps(
                    {"schema": "nbci.assets-index/1", "entries": [{}]}
                ).encode(),
            },
        )
        env = github(gh, tmp_path).add_review(4, shas[-1])

        outcome = publish(options(make_run(tmp_path / "pr", accuracy=0.7)), env)

        assert outcome.baseline_sha == shas[-1]
        assert any("entry 0 is malformed" in n and "listed instead" in n for n in outcome.notes)


@pytest.mark.parametrize("forge_name", ["github", "gitlab"])
def test_pruning_that_fails_never_fails_the_publish(forge_name: str, tmp_path: Path) -> None:
    stub = GitHubStub() if forge_name == "github" else GitLabStub()
    with stub:
        forge = github(stub, tmp_path) if isinstance(stub, GitHubStub) else gitlab(stub)
        shas = stub.add_history(2)
        gone = Entry(
            f"runs/{fake_sha(1)}/nbci",
            "run",
            fake_sha(1),
            "nbci",
            "2020-01-01T00:00:00Z",
            ("results.json",),
        )
        forge.put({"index.json": dump(BranchIndex((gone,)))})  # its file is not there

        outcome = publish(
            options(make_run(tmp_path / "main"), keep_runs=1, history=1), forge.push(shas[-1])
        )

        assert outcome.stored_baseline
        assert any("was not pruned this time" in n for n in outcome.notes)
        assert f"runs/{shas[-1]}/nbci/results.json" in forge.files()


def test_gitlab_index_changed_meanwhile_is_committed_again_keeping_both(tmp_path: Path) -> None:
    with GitLabStub() as gl:
        line = gl.add_history(3)
        forge = gitlab(gl)
        env = forge.add_review(6, line[-1])
        publish(options(make_run(tmp_path / "one", figures={"a": 1})), env)
        other = Entry("pr/99/nbci", "review", "99", "nbci", "2026-12-01T00:00:00Z", ())
        changed = stored_index(forge).with_entry(other)
        gl.before_next(
            "POST",
            r"/repository/commits$",
            lambda: forge.put({"index.json": dump(changed)}),  # another publish's index
        )

        publish(options(make_run(tmp_path / "two", figures={"a": 2})), env)

        folders = {e.folder for e in stored_index(forge).entries}
        assert {"pr/99/nbci", "pr/6/nbci"} <= folders
        assert len(gl.calls("POST", r"/repository/commits$")) == 3  # first; refused; again


# -- the rule ---------------------------------------------------------------------


def _runs(count: int, report: str = "nbci") -> tuple[Entry, ...]:
    return tuple(
        Entry(
            f"runs/{fake_sha(i)}/{report}",
            "run",
            fake_sha(i),
            report,
            f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
        )
        for i in range(count)
    )


NOW = datetime(2026, 12, 3, tzinfo=UTC)


def test_the_rule_keeps_the_newest_runs_of_each_report_and_never_fewer_than_history() -> None:
    index = BranchIndex(_runs(30) + _runs(3, report="gpu"))
    pruned = prune(index, Pruning(keep_runs=10, keep_pr_days=30, history=20), NOW)
    kept = [e for e in pruned.index.entries if e.report == "nbci"]
    assert kept == list(_runs(30)[10:])  # the newest 20: history outranks keep_runs
    assert len([e for e in pruned.index.entries if e.report == "gpu"]) == 3
    assert len(prune(index, Pruning(keep_runs=5, history=0), NOW).index.entries) == 5 + 3


def test_keep_runs_zero_and_keep_pr_days_zero_keep_everything() -> None:
    review = Entry("pr/1/nbci", "review", "1", "nbci", "2000-01-01T00:00:00Z")
    index = BranchIndex((*_runs(500), review))
    pruned = prune(index, Pruning(keep_runs=0, keep_pr_days=0, history=20), NOW)
    assert pruned.index == index and pruned.removed == ()
    assert prune(index, Pruning(keep_runs=0, keep_pr_days=30), NOW).removed == (review,)


def test_a_stored_run_over_a_megabyte_is_read_by_path_too(tmp_path: Path) -> None:
    """GitHub's contents API sends a file over 1 MB without its content: read as a blob."""
    with GitHubStub() as gh:
        shas = gh.add_history(2)
        logged = {"log": Scrap("text", "epoch 1: loss 0.5\n" * 2_000)}  # 36 kB each
        many = tuple(replace(nb(f"job-{i:02}", accuracy=0.8), scraps=logged) for i in range(30))
        write_run(run(*many), tmp_path / "big")
        data = (tmp_path / "big" / "results.json").read_bytes()
        assert len(data) > 1024 * 1024
        gh.put_file(BRANCH, f"runs/{shas[-1]}/nbci/results.json", data)
        env = github(gh, tmp_path).add_review(4, shas[-1])

        outcome = publish(options(make_run(tmp_path / "pr", accuracy=0.7)), env)

        assert outcome.baseline_sha == shas[-1]
        assert gh.calls("GET", r"/git/blobs/")  # the content came as a blob


def test_the_index_keeps_blob_ids_and_refuses_malformed_ones() -> None:
    """Bitbucket lists no blob ids: the index carries them, checked like the rest of it."""
    from nbci.errors import ResultsError
    from nbci.publish.index import entry_for

    folder = f"runs/{fake_sha(1)}/nbci"
    blobs = {f"{folder}/results.json": ("a" * 40, 3), f"{folder}/figures/t/a.png": ("b" * 40, 9)}
    entry = entry_for(folder, list(blobs), "2026-01-01T00:00:00Z", blobs)
    (read,) = parse(dump(BranchIndex((entry,))), "index.json").entries
    assert read.blob_ids() == blobs
    row = json.loads(dump(BranchIndex((entry,))))
    for bad in ([["a" * 40, 3]], [["A" * 40, 3], ["b" * 40, 9]], [["a" * 40, -1], ["b" * 40, 9]]):
        row["entries"][0]["blobs"] = bad
        with pytest.raises(ResultsError, match="entry 0 is malformed"):
            parse(json.dumps(row).encode(), "index.json")
