"""Past one machine: split the jobs over N CI machines, then merge their runs into one.

`nbci run --shard K/N` runs `select_shard(jobs, K, N, durations)`. Every shard
machine must compute the same split, so the split depends only on the job ids
and `durations`, and `durations` must come from a source that every machine
sees identically: the baseline run's `results.json` (downloaded by every
shard), never a machine's local cache. With no durations every job counts
the same and the split is by count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nbci._files import is_within, link_or_copy
from nbci.errors import ResultsError, UsageError
from nbci.model import GitInfo, Job, NotebookResult, Run

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """`"K/N"` (1-based) as `(K, N)`."""
    match = _SHARD.fullmatch(text)
    k, n = (int(match[1]), int(match[2])) if match else (0, 0)
    if not 1 <= k <= n:
        raise UsageError(f"--shard: expected K/N with 1 ≤ K ≤ N, got '{text}'")
    return k, n


def resolve_shard(text: str, env: Mapping[str, str]) -> tuple[int, int]:
    """`--shard K/N`, or `--shard auto`: this job's place in a GitLab `parallel: N` job set
    or a Bitbucket Pipelines `parallel` group.

    GitLab CI numbers parallel jobs `CI_NODE_INDEX` (1-based) of `CI_NODE_TOTAL`;
    without `parallel:` it sets only `CI_NODE_TOTAL=1`, which is shard 1/1.
    Bitbucket numbers a parallel group's steps `BITBUCKET_PARALLEL_STEP` (0-based) of
    `BITBUCKET_PARALLEL_STEP_COUNT`.
    """
    if text.strip() != "auto":
        return parse_shard(text)
    if "BITBUCKET_PARALLEL_STEP_COUNT" in env:
        return _bitbucket_shard(env)
    index, total = env.get("CI_NODE_INDEX", "").strip(), env.get("CI_NODE_TOTAL", "").strip()
    if not index and total == "1":
        return 1, 1
    if not (index.isdigit() and total.isdigit()):
        got = f"CI_NODE_INDEX={index!r}, CI_NODE_TOTAL={total!r}"
        raise UsageError(
            f"--shard auto: expected CI_NODE_INDEX and CI_NODE_TOTAL from a GitLab CI "
            f"`parallel:` job (or BITBUCKET_PARALLEL_STEP and BITBUCKET_PARALLEL_STEP_COUNT "
            f"from a Bitbucket `parallel` group), got {got}; pass --shard K/N elsewhere"
        )
    k, n = int(index), int(total)
    if not 1 <= k <= n:
        raise UsageError(f"--shard auto: CI_NODE_INDEX={k} is not within 1..CI_NODE_TOTAL={n}")
    return k, n


def _bitbucket_shard(env: Mapping[str, str]) -> tuple[int, int]:
    step = env.get("BITBUCKET_PARALLEL_STEP", "").strip()
    count = env.get("BITBUCKET_PARALLEL_STEP_COUNT", "").strip()
    if not (step.isdigit() and count.isdigit() and int(step) < int(count)):
        raise UsageError(
            "--shard auto: expected BITBUCKET_PARALLEL_STEP (0-based) below "
            f"BITBUCKET_PARALLEL_STEP_COUNT, got {step!r} of {count!r}"
        )
    return int(step) + 1, int(count)


def select_shard(
    jobs: Sequence[Job], k: int, n: int, durations: Mapping[str, float] | None = None
) -> list[Job]:
    """The jobs of shard `k` of `n`, in their planned order.

    Longest processing time first: jobs sorted by expected duration (longest
    first, ties by job id) each go to the shard with the least work so far
    (ties to the one with fewest jobs, then the lowest). A job without a known
    duration is expected to take the mean of the known ones; with none known
    every job weighs 1, which deals the jobs out by count. Every job lands in
    exactly one shard.
    """
    if not 1 <= k <= n:
        raise UsageError(f"--shard: expected K/N with 1 ≤ K ≤ N, got '{k}/{n}'")
    return [job for job, shard in zip(jobs, assign(jobs, n, durations), strict=True) if shard == k]


def assign(jobs: Sequence[Job], n: int, durations: Mapping[str, float] | None = None) -> list[int]:
    """The shard (1-based) of each job in `jobs`, as `select_shard` splits them."""
    weights = _weights(jobs, durations or {})
    loads = [0.0] * n
    counts = [0] * n
    shards = [0] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda i: (-weights[i], jobs[i].id, i))
    for i in order:
        lightest = min(range(n), key=lambda s: (loads[s], counts[s], s))
        loads[lightest] += weights[i]
        counts[lightest] += 1
        shards[i] = lightest + 1
    return shards


def _weights(jobs: Sequence[Job], durations: Mapping[str, float]) -> list[float]:
    known = {job.id: durations[job.id] for job in jobs if _usable(durations.get(job.id))}
    default = math.fsum(known.values()) / len(known) if known else 1.0
    return [known.get(job.id, default) for job in jobs]


def _usable(duration: object) -> bool:
    return isinstance(duration, int | float) and math.isfinite(duration) and duration >= 0


def known_durations(*runs: Run | None) -> dict[str, float]:
    """Job id → seconds, from runs given oldest first (a later run's figure wins).

    Every status counts (a failed job's time is still the best guess);
    a cached result keeps the duration of the run that produced it.
    """
    durations: dict[str, float] = {}
    for run in runs:
        for nb in run.notebooks if run else ():
            if nb.duration_s > 0 and _usable(nb.duration_s):
                durations[nb.id] = nb.duration_s
    return durations


# -- merge ---------------------------------------------------------------------


def merge_runs(
    runs: Sequence[Run],
    dirs: Sequence[Path],
    out_dir: Path,
    *,
    order: Sequence[str] = (),
) -> Run:
    """One run from the N shard runs read from `dirs`; links (or copies) their files into
    `out_dir`.

    Refuses (ResultsError) runs that are not shards, shards of different N or a
    missing or repeated shard, mixed commits or schema versions, and a job id
    in two shards (or a file results.json lists but the folder lacks), and a
    planned job that no shard ran. The merged run has `shard=None`, its jobs
    in `order` (default: the shards' planned order; others after, by path and
    id) and reads like a single-machine run.
    Writing `results.json` and the reports is the caller's.
    """
    if len(runs) != len(dirs):
        raise ValueError("merge_runs: one directory per run")
    if not runs:
        raise ResultsError("nbci merge: no shard runs given")
    _check_shards(runs, dirs)
    _check_same(runs, dirs, "schema version", lambda r: r.schema)
    _check_same(runs, dirs, "git commit", lambda r: r.git.sha)
    _check_same(runs, dirs, "plan", lambda r: r.planned)
    notebooks = _unique_notebooks(runs, dirs)
    planned = runs[0].planned
    unrun = sorted(set(planned) - {nb.id for nb in notebooks})
    if unrun:
        raise ResultsError(
            f"nbci merge: no shard ran {', '.join(unrun[:10])}"
            + (f" and {len(unrun) - 10} more" if len(unrun) > 10 else "")
            + " (the shards planned differently: same commit and configuration everywhere?)"
        )
    order = order or planned
    for run, folder in zip(runs, dirs, strict=True):
        _copy_files(run.notebooks, folder, out_dir)
    rank = {job_id: i for i, job_id in enumerate(order)}
    notebooks.sort(key=lambda nb: (rank.get(nb.id, len(rank)), nb.path, nb.id))
    first = runs[0]
    dirty = [r.git.dirty for r in runs if r.git.dirty is not None]
    return Run(
        notebooks=tuple(notebooks),
        created=min(r.created for r in runs),
        git=GitInfo(
            sha=first.git.sha, branch=first.git.branch, dirty=any(dirty) if dirty else None
        ),
        environment=first.environment,
        nbci_version=first.nbci_version,
        schema=first.schema,
        interrupted=any(r.interrupted for r in runs),
        shard=None,
    )


def _check_shards(runs: Sequence[Run], dirs: Sequence[Path]) -> None:
    seen: dict[int, Path] = {}
    total: tuple[int, Path] | None = None
    for run, folder in zip(runs, dirs, strict=True):
        if run.shard is None:
            raise ResultsError(f"{folder}: not a shard run (it was not made with --shard K/N)")
        k, n = parse_shard(run.shard)
        if total is None:
            total = (n, folder)
        elif n != total[0]:
            raise ResultsError(
                f"{folder}: shard {run.shard} is of {n} shards, but {total[1]} is of {total[0]}"
            )
        if k in seen:
            raise ResultsError(f"{folder}: shard {run.shard} is already given by {seen[k]}")
        seen[k] = folder
    assert total is not None
    missing = [f"{k}/{total[0]}" for k in range(1, total[0] + 1) if k not in seen]
    if missing:
        raise ResultsError(f"nbci merge: missing shard(s) {', '.join(missing)}")


def _check_same(
    runs: Sequence[Run], dirs: Sequence[Path], what: str, get: Callable[[Run], object]
) -> None:
    values = {get(run): folder for run, folder in zip(runs, dirs, strict=True)}
    if len(values) > 1:
        shown = ", ".join(f"{value!r} in {folder}" for value, folder in values.items())
        raise ResultsError(f"nbci merge: the shard runs have different {what}s: {shown}")


def _unique_notebooks(runs: Sequence[Run], dirs: Sequence[Path]) -> list[NotebookResult]:
    owner: dict[str, Path] = {}
    notebooks: list[NotebookResult] = []
    for run, folder in zip(runs, dirs, strict=True):
        for nb in run.notebooks:
            if nb.id in owner:
                raise ResultsError(
                    f"nbci merge: job {nb.id!r} is in both {owner[nb.id]} and {folder} "
                    "(were the shards planned with different configs or durations?)"
                )
            owner[nb.id] = folder
            notebooks.append(nb)
    return notebooks


def _copy_files(notebooks: Sequence[NotebookResult], source: Path, out_dir: Path) -> None:
    made: set[Path] = set()  # a 200-job sweep has 600 files in 400 folders: mkdir each once
    for nb in notebooks:
        for rel in nb.files:
            src, dst = source / rel, out_dir / rel
            if not is_within(src, source):
                raise ResultsError(f"{source}: {rel} points outside the run directory")
            if not src.is_file():
                raise ResultsError(f"{source}: {rel} is listed in results.json but missing")
            if dst.exists() and dst.samefile(src):
                continue  # merging into one of the shard folders
            if dst.parent not in made:
                dst.parent.mkdir(parents=True, exist_ok=True)
                made.add(dst.parent)
            link_or_copy(src, dst)
