"""Shards: parsing, a split that covers every job once and balances, and merging shard runs."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from nbci.errors import ResultsError, UsageError
from nbci.model import Figure, GitInfo, Job, NotebookResult, Run, Status
from nbci.results import read_run, write_run
from nbci.shards import assign, known_durations, merge_runs, parse_shard, select_shard

# -- parse_shard -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"), [("1/1", (1, 1)), ("2/3", (2, 3)), (" 3 / 3 ", (3, 3))]
)
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "-1/2", "a/b", "3", "", "1/2/3", "1.0/2"])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_shard(text)
    assert str(caught.value) == f"--shard: expected K/N with 1 ≤ K ≤ N, got '{text}'"


# -- select_shard --------------------------------------------------------------------


def jobs_named(*ids: str) -> list[Job]:
    return [Job(id=i, path=f"notebooks/{i}.ipynb") for i in ids]


job_ids = st.lists(st.text("abcdefghij-.0123", min_size=1, max_size=6), unique=True, max_size=40)
duration = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)


@st.composite
def jobs_and_durations(draw: st.DrawFn) -> tuple[list[Job], dict[str, float]]:
    jobs = jobs_named(*draw(job_ids))
    known = draw(st.lists(st.sampled_from([j.id for j in jobs]), unique=True)) if jobs else []
    return jobs, {job_id: draw(duration) for job_id in known}


@settings(max_examples=examples(150), deadline=None)
@given(case=jobs_and_durations(), n=st.integers(min_value=1, max_value=9), seed=st.integers())
def test_shards_cover_every_job_exactly_once_whatever_the_input_order(
    case: tuple[list[Job], dict[str, float]], n: int, seed: int
) -> None:
    jobs, durations = case
    shards = [select_shard(jobs, k, n, durations) for k in range(1, n + 1)]

    assert sorted(j.id for shard in shards for j in shard) == sorted(j.id for j in jobs)
    for shard in shards:  # each keeps the planned order
        assert shard == [j for j in jobs if j in shard]

    shuffled = jobs[:]
    random.Random(seed).shuffle(shuffled)
    again = [select_shard(shuffled, k, n, durations) for k in range(1, n + 1)]
    assert [{j.id for j in s} for s in again] == [{j.id for j in s} for s in shards]


@settings(max_examples=examples(150), deadline=None)
@given(case=jobs_and_durations(), n=st.integers(min_value=1, max_value=9))
def test_shards_are_balanced_within_one_job(
    case: tuple[list[Job], dict[str, float]], n: int
) -> None:
    jobs, durations = case
    known = [d for d in durations.values()]
    default = sum(known) / len(known) if known else 1.0
    weight = {j.id: durations.get(j.id, default) for j in jobs}
    loads = [0.0] * n
    for job, shard in zip(jobs, assign(jobs, n, durations), strict=True):
        loads[shard - 1] += weight[job.id]
    heaviest = max(weight.values(), default=0.0)
    # Greedy LPT: the last job put on the busiest shard went to the least busy one.
    assert max(loads) - min(loads) <= heaviest + 1e-6 * max(1.0, max(loads))


def test_without_durations_jobs_are_dealt_by_count() -> None:
    jobs = jobs_named(*(f"nb{i:02}" for i in range(10)))
    sizes = [len(select_shard(jobs, k, 3)) for k in (1, 2, 3)]
    assert sizes == [4, 3, 3]


def test_jobs_of_zero_duration_are_still_dealt_by_count() -> None:
    jobs = jobs_named("a", "b", "c", "d")
    durations = dict.fromkeys("abcd", 0.0)
    assert [len(select_shard(jobs, k, 2, durations)) for k in (1, 2)] == [2, 2]


def test_a_long_job_gets_a_shard_to_itself() -> None:
    jobs = jobs_named("big", *(f"small{i}" for i in range(6)))
    durations = {"big": 60.0} | {f"small{i}": 10.0 for i in range(6)}
    assert [j.id for j in select_shard(jobs, 1, 2, durations)] == ["big"]
    assert len(select_shard(jobs, 2, 2, durations)) == 6


def test_a_job_without_a_known_duration_weighs_the_mean() -> None:
    jobs = jobs_named("a", "b", "new")
    durations = {"a": 30.0, "b": 10.0}  # `new` weighs 20: with `b` it balances `a`
    assert [j.id for j in select_shard(jobs, 1, 2, durations)] == ["a"]
    assert [j.id for j in select_shard(jobs, 2, 2, durations)] == ["b", "new"]


def test_select_shard_rejects_an_impossible_shard() -> None:
    with pytest.raises(UsageError):
        select_shard(jobs_named("a"), 3, 2)


# -- known_durations ---------------------------------------------------------------------


def result(
    job_id: str, *, duration: float = 1.0, status: Status = "ok", **kw: Any
) -> NotebookResult:
    return NotebookResult(
        id=job_id,
        path=f"notebooks/{job_id}.ipynb",
        parameters={},
        status=status,
        duration_s=duration,
        **kw,
    )


def a_run(*notebooks: NotebookResult, shard: str | None = None, **kw: Any) -> Run:
    base = Run(
        notebooks=notebooks,
        created="2026-11-26T22:00:00Z",
        git=GitInfo(sha="abc123", branch="main", dirty=False),
        nbci_version="0.1.0",
        shard=shard,
    )
    return replace(base, **kw)


def test_known_durations_later_runs_win_and_none_or_zero_is_unknown() -> None:
    baseline = a_run(
        result("a", duration=3.0), result("b", duration=0.0), result("c", status="failed")
    )
    cached = a_run(result("a", duration=5.0, cached=True))
    assert known_durations(None, baseline, cached) == {"a": 5.0, "c": 1.0}
    assert known_durations() == {}


# -- merge_runs ---------------------------------------------------------------------------


def shard_dir(tmp_path: Path, run: Run, name: str) -> Path:
    """A shard's output directory: the files its results name, and results.json."""
    folder = tmp_path / name
    for nb in run.notebooks:
        for rel in nb.files:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(f"{name}:{rel}")
    write_run(run, folder)
    return folder


def with_files(job_id: str, **kw: Any) -> NotebookResult:
    return result(
        job_id,
        output=f"notebooks/{job_id}.ipynb",
        html=f"notebooks/{job_id}.html",
        figures=(Figure(name="fig", path=f"figures/{job_id}/fig.png"),),
        metrics={"accuracy": 0.5},
        **kw,
    )


@pytest.fixture
def three_shards(tmp_path: Path) -> tuple[list[Run], list[Path]]:
    planned = ["train", "eval", "profile", "train-lr-0.1", "report"]
    jobs = jobs_named(*planned)
    runs = [
        a_run(*(with_files(j.id) for j in select_shard(jobs, k, 3)), shard=f"{k}/3")
        for k in (1, 2, 3)
    ]
    dirs = [shard_dir(tmp_path, run, f"shard-{i + 1}") for i, run in enumerate(runs)]
    return [read_run(d) for d in dirs], dirs


def test_merge_builds_one_run_that_reads_like_a_single_machine_run(
    tmp_path: Path, three_shards: tuple[list[Run], list[Path]]
) -> None:
    runs, dirs = three_shards
    out = tmp_path / "merged"
    order = ["train", "eval", "profile", "train-lr-0.1", "report"]

    merged = merge_runs(runs[::-1], dirs[::-1], out, order=order)

    assert [nb.id for nb in merged.notebooks] == order
    assert merged.shard is None and merged.git.sha == "abc123" and not merged.interrupted
    write_run(merged, out)
    assert read_run(out) == merged
    for nb in merged.notebooks:
        assert len(nb.files) == 3 and all((out / rel).is_file() for rel in nb.files)


def test_merged_files_are_hard_links_where_allowed_else_copies(
    tmp_path: Path, three_shards: tuple[list[Run], list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linking is what keeps `nbci merge` of a 200-job sweep (600 files) fast; where the file
    system refuses links, the files are copied."""
    runs, dirs = three_shards
    merged = merge_runs(runs, dirs, tmp_path / "linked")
    shard_files = [
        (d, rel) for r, d in zip(runs, dirs, strict=True) for nb in r.notebooks for rel in nb.files
    ]
    files = [(d / rel, tmp_path / "linked" / rel) for d, rel in shard_files]
    assert len(files) == 15 and all(dst.samefile(src) for src, dst in files)

    def refused(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("nbci._files.os.link", refused)
    assert merge_runs(runs, dirs, tmp_path / "copied") == merged
    for src, linked in files:
        copy = tmp_path / "copied" / linked.relative_to(tmp_path / "linked")
        assert copy.read_bytes() == src.read_bytes() and not copy.samefile(src)


def test_merge_refuses_a_file_that_links_outside_its_shard(
    tmp_path: Path, three_shards: tuple[list[Run], list[Path]]
) -> None:
    runs, dirs = three_shards
    secret = tmp_path / "secret.txt"
    secret.write_text("not the run's")
    figure = dirs[1] / runs[1].notebooks[0].figures[0].path
    figure.unlink()
    figure.symlink_to(secret)
    with pytest.raises(ResultsError, match="points outside the run directory"):
        merge_runs(runs, dirs, tmp_path / "out")


def test_merge_orders_by_path_and_id_without_a_plan(
    tmp_path: Path, three_shards: tuple[list[Run], list[Path]]
) -> None:
    merged = merge_runs(*three_shards, tmp_path / "merged")
    by_path = sorted(merged.notebooks, key=lambda nb: (nb.path, nb.id))
    assert list(merged.notebooks) == by_path


def test_merge_into_one_of_the_shard_folders(three_shards: tuple[list[Run], list[Path]]) -> None:
    runs, dirs = three_shards
    merged = merge_runs(runs, dirs, dirs[0])
    assert len(merged.notebooks) == 5
    assert all((dirs[0] / nb.output).is_file() for nb in merged.notebooks if nb.output)


def test_merge_keeps_failures_and_interruption(tmp_path: Path) -> None:
    runs = [
        a_run(result("a", status="failed"), shard="1/2"),
        a_run(result("b"), shard="2/2", interrupted=True),
    ]
    merged = merge_runs(runs, [tmp_path / "1", tmp_path / "2"], tmp_path / "out")
    assert merged.counts["failed"] == 1 and merged.interrupted and not merged.ok


def refuse(runs: list[Run], tmp_path: Path, match: str) -> None:
    dirs = [tmp_path / f"shard-{i}" for i in range(len(runs))]
    with pytest.raises(ResultsError, match=match):
        merge_runs(runs, dirs, tmp_path / "out")


def test_merge_refuses_a_run_that_is_not_a_shard(tmp_path: Path) -> None:
    refuse([a_run(result("a"), shard="1/2"), a_run(result("b"))], tmp_path, "not a shard run")


def test_merge_refuses_shards_of_different_totals(tmp_path: Path) -> None:
    runs = [a_run(result("a"), shard="1/2"), a_run(result("b"), shard="2/3")]
    refuse(runs, tmp_path, r"shard 2/3 is of 3 shards, but .*shard-0 is of 2")


def test_merge_refuses_a_shard_given_twice(tmp_path: Path) -> None:
    runs = [a_run(result("a"), shard="1/2"), a_run(result("b"), shard="1/2")]
    refuse(runs, tmp_path, r"shard 1/2 is already given by .*shard-0")


def test_merge_refuses_missing_shards(tmp_path: Path) -> None:
    runs = [a_run(result("a"), shard="2/4"), a_run(result("b"), shard="4/4")]
    refuse(runs, tmp_path, r"missing shard\(s\) 1/4, 3/4")


def test_merge_refuses_mixed_commits(tmp_path: Path) -> None:
    other = a_run(result("b"), shard="2/2", git=GitInfo(sha="def456"))
    runs = [a_run(result("a"), shard="1/2"), other]
    refuse(runs, tmp_path, r"different git commits: 'abc123' in .*shard-0, 'def456' in .*shard-1")


def test_merge_refuses_mixed_schema_versions(tmp_path: Path) -> None:
    runs = [
        a_run(result("a"), shard="1/2"),
        a_run(result("b"), shard="2/2", schema="nbci.results/1"),
    ]
    refuse(runs, tmp_path, "different schema versions")


def test_merge_refuses_a_job_in_two_shards(tmp_path: Path) -> None:
    runs = [a_run(result("a"), shard="1/2"), a_run(result("b"), result("a"), shard="2/2")]
    refuse(runs, tmp_path, r"job 'a' is in both .*shard-0 and .*shard-1")


def test_merge_refuses_a_shard_missing_a_listed_file(
    tmp_path: Path, three_shards: tuple[list[Run], list[Path]]
) -> None:
    runs, dirs = three_shards
    victim = next(nb for nb in runs[1].notebooks)
    assert victim.html is not None
    (dirs[1] / victim.html).unlink()
    with pytest.raises(ResultsError, match=f"{victim.html} is listed in results.json but missing"):
        merge_runs(runs, dirs, tmp_path / "out")


def test_merge_refuses_nothing_to_merge(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no shard runs"):
        merge_runs([], [], tmp_path / "out")


def test_merged_run_keeps_the_first_shards_environment(tmp_path: Path) -> None:
    runs = [a_run(result("a"), shard="1/2"), a_run(result("b"), shard="2/2")]
    runs[1] = replace(runs[1], created="2026-11-26T21:00:00Z")
    merged = merge_runs(runs, [tmp_path / "1", tmp_path / "2"], tmp_path / "out")
    assert merged.created == "2026-11-26T21:00:00Z"  # the earliest shard's start
    assert merged.environment == runs[0].environment


def test_merge_refuses_a_planned_job_no_shard_ran(tmp_path: Path) -> None:
    planned = ("a", "b", "c")
    runs = [
        a_run(result("a"), shard="1/2", planned=planned),
        a_run(result("b"), shard="2/2", planned=planned),
    ]
    refuse(runs, tmp_path, r"no shard ran c \(the shards planned differently")


def test_merge_refuses_shards_that_planned_differently(tmp_path: Path) -> None:
    runs = [
        a_run(result("a"), shard="1/2", planned=("a", "b")),
        a_run(result("b"), shard="2/2", planned=("b", "a")),
    ]
    refuse(runs, tmp_path, "different plans")


def test_merged_jobs_follow_the_planned_order(tmp_path: Path) -> None:
    planned = ("z-first", "a-second", "m-third")
    runs = [
        a_run(with_files("a-second"), shard="1/2", planned=planned),
        a_run(with_files("m-third"), with_files("z-first"), shard="2/2", planned=planned),
    ]
    dirs = []
    for i, run in enumerate(runs):
        folder = tmp_path / f"shard-{i}"
        for nb in run.notebooks:
            for rel in nb.files:
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(b"\x89PNG\r\n\x1a\n" if rel.endswith(".png") else b"{}")
        dirs.append(folder)
    merged = merge_runs(runs, dirs, tmp_path / "out")
    assert [nb.id for nb in merged.notebooks] == list(planned)
