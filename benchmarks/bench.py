"""How long does a folder of notebooks take: a papermill loop, nbmake, and nbci cold and warm.

    python benchmarks/bench.py                  # 12 notebooks, 3 repetitions
    python benchmarks/bench.py --notebooks 24 --repeat 5
    python benchmarks/bench.py --memory         # nbci's parent memory at 12 and 96 notebooks

Generates N small notebooks (numpy work, three metrics glued with scrapbook and
one matplotlib figure each) in a temporary project, then times, alternating
within each repetition so that drift in the machine's load hits every tool
alike:

- `papermill` CLI loop: one `papermill` process per notebook, one after another;
- `pytest --nbmake -n <cores>`;
- `nbci run` cold: empty cache, both reports written;
- `nbci run` warm: the same command again, nothing changed.

It prints the medians, nbci's ratios to each peer, the peak resident memory of
nbci's own (parent) process, and a lower bound: the notebooks' own cell time
(papermill's per-cell durations) divided by the cores. Only the standard
library is used here; the tools measured must be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TARGETS = {"cold/papermill": 0.40, "cold/nbmake": 0.85, "warm/cold": 0.05}
MEMORY_SIZES = (12, 96)

# nbci runs inside this wrapper, in-process, so that RUSAGE_SELF is nbci's own
# parent process: its peak RSS excludes kernels and workers (they are children).
_NBCI_WRAPPER = """
import json, os, resource, sys
from nbci.cli import main
code = 1
try:
    code = main(sys.argv[1:])
finally:
    usage = {
        "parent_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "largest_child_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    with open(os.environ["NBCI_BENCH_RUSAGE"], "w") as f:
        json.dump(usage, f)
sys.exit(code)
"""


# -- the notebooks -----------------------------------------------------------------


def _cell(kind: str, source: str, tags: Sequence[str] = ()) -> dict[str, object]:
    cell: dict[str, object] = {
        "cell_type": kind,
        "metadata": {"tags": list(tags)},
        "source": source,
    }
    if kind == "code":
        cell |= {"execution_count": None, "outputs": []}
    return cell


def notebook(index: int) -> dict[str, object]:
    """A small, realistic notebook: fit, evaluate, glue three metrics and a figure."""
    cells = [
        _cell("markdown", f"# Benchmark notebook {index}"),
        _cell("code", f"seed = {index}\nsamples = 4000", tags=["parameters"]),
        _cell(
            "code", "import matplotlib.pyplot as plt\nimport numpy as np\nimport scrapbook as sb"
        ),
        _cell(
            "code",
            "rng = np.random.default_rng(seed)\n"
            "X = rng.normal(size=(samples, 60))\n"
            "w = rng.normal(size=60)\n"
            "y = X @ w + rng.normal(scale=0.5, size=samples)\n"
            "w_hat, *_ = np.linalg.lstsq(X, y, rcond=None)\n"
            "residuals = y - X @ w_hat\n"
            "A = rng.normal(size=(300, 300))\n"
            "eigenvalues = np.linalg.eigvalsh(A @ A.T)",
        ),
        _cell(
            "code",
            'sb.glue("rmse", float(np.sqrt(np.mean(residuals**2))))\n'
            'sb.glue("max_weight_error", float(np.abs(w_hat - w).max()))\n'
            'sb.glue("condition", float(eigenvalues[-1] / eigenvalues[0]))',
        ),
        _cell(
            "code",
            "fig, ax = plt.subplots(figsize=(4, 3))\n"
            "ax.hist(residuals, bins=40)\n"
            'ax.set_title("residuals")\n'
            'sb.glue("residuals", fig, encoder="display", display=True)\n'
            "plt.close(fig)",
        ),
    ]
    return {
        "cells": [{"id": f"cell-{n}", **cell} for n, cell in enumerate(cells)],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def make_project(root: Path, count: int) -> list[Path]:
    """`root/notebooks/bench_XX.ipynb` and an `nbci.toml` that runs them."""
    folder = root / "notebooks"
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"bench_{i:03}.ipynb"
        path.write_text(json.dumps(notebook(i), indent=1), encoding="utf-8")
        paths.append(path)
    (root / "nbci.toml").write_text(
        'notebooks = ["notebooks/*.ipynb"]\nout = "nbci-out"\ncache_dir = ".nbci-cache"\n',
        encoding="utf-8",
    )
    return paths


# -- running the tools -------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    parent_kib: int | None = None
    largest_child_kib: int | None = None


@dataclass
class Tool:
    name: str
    run: Callable[[], Sample]
    samples: list[Sample] = field(default_factory=list)
    failures: int = 0
    """Runs that exited non-zero and were timed again."""

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    def median_kib(self, attribute: str) -> float | None:
        values = [getattr(s, attribute) for s in self.samples if getattr(s, attribute)]
        return statistics.median(values) if values else None


class RunFailed(Exception):
    """A timed command exited non-zero (for peers, e.g. a kernel that lost a port race)."""


def _run(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-30:])
        raise RunFailed(f"`{' '.join(argv)}` failed ({done.returncode}):\n{tail}")
    return seconds


def papermill_loop(project: Path, notebooks: Sequence[Path]) -> Callable[[], Sample]:
    out = project / "papermill-out"

    def run() -> Sample:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        total = 0.0
        for path in notebooks:
            argv = ["papermill", str(path), str(out / path.name), "-k", "python3"]
            total += _run([*argv, "--no-progress-bar", "--log-level", "WARNING"], project)
        return Sample(total)

    return run


def nbmake(project: Path, cores: int) -> Callable[[], Sample]:
    argv = [sys.executable, "-m", "pytest", "--nbmake", "-n", str(cores), "-q"]
    argv += ["-p", "no:cacheprovider", "notebooks"]
    return lambda: Sample(_run(argv, project))


def nbci(project: Path, cores: int, *, cold: bool) -> Callable[[], Sample]:
    rusage = project / "nbci-rusage.json"
    env = dict(os.environ, NBCI_BENCH_RUSAGE=str(rusage))
    argv = [sys.executable, "-c", _NBCI_WRAPPER, "run", "--out", "nbci-out", "--jobs", str(cores)]

    def run() -> Sample:
        if cold:
            shutil.rmtree(project / ".nbci-cache", ignore_errors=True)
            shutil.rmtree(project / "nbci-out", ignore_errors=True)
        seconds = _run(argv, project, env)
        usage = json.loads(rusage.read_text())
        results = json.loads((project / "nbci-out" / "results.json").read_text())
        cached = sum(nb["cached"] for nb in results["notebooks"])
        expected = len(results["notebooks"]) if not cold else 0
        if cached != expected:  # e.g. nbci's own source changed between the runs
            kind = "cold" if cold else "warm"
            print(f"  warning: {kind} nbci run had {cached}/{len(results['notebooks'])} cached")
        return Sample(seconds, usage["parent_kib"], usage["largest_child_kib"])

    return run


def lower_bound(executed: Path, cores: int) -> float:
    """The notebooks' own cell time (papermill's per-cell durations) divided by the cores."""
    total = 0.0
    for path in sorted(executed.glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        total += sum(c["metadata"].get("papermill", {}).get("duration") or 0.0 for c in cells)
    return total / cores


ATTEMPTS = 3
"""A failed run is timed again (and counted): one flaky kernel start should not end the session."""


def measure(tools: Sequence[Tool], repeat: int) -> None:
    """Each repetition runs every tool once; the order rotates from one repetition to the next."""
    for rep in range(repeat):
        shift = rep % len(tools)
        for tool in [*tools[shift:], *tools[:shift]]:
            sample = _attempt(tool)
            tool.samples.append(sample)
            print(f"  rep {rep + 1}/{repeat}  {tool.name:<28} {sample.seconds:7.2f} s", flush=True)


def _attempt(tool: Tool) -> Sample:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return tool.run()
        except RunFailed as failure:
            tool.failures += 1
            last = str(failure).splitlines()[-1]
            print(f"  {tool.name} failed ({last}); attempt {attempt} of {ATTEMPTS}", flush=True)
            if attempt == ATTEMPTS:
                raise SystemExit(f"bench: {failure}") from None
    raise AssertionError("unreachable")


# -- reporting ---------------------------------------------------------------------------


def _mib(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f} MiB"


def _ratio(name: str, value: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return f"{name} = {value:.2f}"
    verdict = "ok" if value <= target else "MISSED"
    return f"{name} = {value:.3f} (target ≤ {target:.2f}: {verdict})"


def report(tools: dict[str, Tool], count: int, cores: int, bound: float | None) -> None:
    print(
        f"\n{count} notebooks, {cores} cores, medians of {len(next(iter(tools.values())).samples)}:"
    )
    for tool in tools.values():
        spread = ", ".join(f"{s.seconds:.2f}" for s in tool.samples)
        failed = f", {tool.failures} failed run(s) repeated" if tool.failures else ""
        print(f"  {tool.name:<28} {tool.median:7.2f} s   ({spread}{failed})")
    if bound is not None:
        print(f"  {'lower bound (cell time/cores)':<28} {bound:7.2f} s")
    cold, warm = tools.get("nbci-cold"), tools.get("nbci-warm")
    ratios = []
    for peer in ("papermill", "nbmake"):
        if cold and peer in tools:
            ratios.append(_ratio(f"cold/{peer}", cold.median / tools[peer].median))
    if cold and warm:
        ratios.append(_ratio("warm/cold", warm.median / cold.median))
    for line in ratios:
        print(f"  {line}")
    for tool in (cold, warm):
        if tool:
            print(
                f"  {tool.name} peak RSS: parent {_mib(tool.median_kib('parent_kib'))}, "
                f"largest child (worker or kernel) {_mib(tool.median_kib('largest_child_kib'))}"
            )


# -- modes -------------------------------------------------------------------------------


def compare_tools(count: int, repeat: int, cores: int, only: Sequence[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="nbci-bench-") as tmp:
        project = Path(tmp)
        notebooks = make_project(project, count)
        every = {
            "papermill": Tool("papermill", papermill_loop(project, notebooks)),
            "nbmake": Tool("nbmake", nbmake(project, cores)),
            "nbci-cold": Tool("nbci-cold", nbci(project, cores, cold=True)),
            "nbci-warm": Tool("nbci-warm", nbci(project, cores, cold=False)),
        }
        tools = {name: tool for name, tool in every.items() if name.split("-")[0] in only}
        print(
            f"nbci benchmark: {count} notebooks in {project}, {cores} cores, {repeat} repetitions"
        )
        _warm_up(project, notebooks[0])
        if "nbci-warm" in tools and "nbci-cold" in tools:  # warm must directly follow cold
            pair = [tools["nbci-cold"], tools["nbci-warm"]]
            rest = [t for n, t in tools.items() if not n.startswith("nbci")]
            sequence = [*rest, Tool("nbci cold, then warm", _pair(pair))]
            measure(sequence, repeat)
        else:
            measure(list(tools.values()), repeat)
        bound = lower_bound(project / "papermill-out", cores) if "papermill" in tools else None
        report(tools, count, cores, bound)


def _pair(pair: list[Tool]) -> Callable[[], Sample]:
    def run() -> Sample:
        total = 0.0
        for tool in pair:
            sample = tool.run()
            tool.samples.append(sample)
            total += sample.seconds
        return Sample(total)

    return run


def _warm_up(project: Path, notebook_path: Path) -> None:
    """One untimed execution, so that the first timed tool does not pay for cold disk caches."""
    out = project / "warm-up.ipynb"
    _run(["papermill", str(notebook_path), str(out), "--no-progress-bar"], project)
    out.unlink()


def memory_flatness(repeat: int, cores: int) -> None:
    print(f"nbci parent peak RSS, cold runs, {cores} cores, {repeat} repetitions per size")
    medians = {}
    for count in MEMORY_SIZES:
        with tempfile.TemporaryDirectory(prefix="nbci-bench-") as tmp:
            project = Path(tmp)
            make_project(project, count)
            tool = Tool(f"nbci-cold ({count} notebooks)", nbci(project, cores, cold=True))
            measure([tool], repeat)
            medians[count] = tool.median_kib("parent_kib") or 0
            print(f"  {count:>3} notebooks: {tool.median:7.2f} s, parent {_mib(medians[count])}")
    low, high = (medians[c] for c in MEMORY_SIZES)
    print(f"  growth {MEMORY_SIZES[0]} → {MEMORY_SIZES[1]} notebooks: {high / low:.2f}×")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=int, default=12, metavar="N")
    parser.add_argument("--repeat", type=int, default=3, metavar="R")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="workers for all")
    parser.add_argument(
        "--tools", default="papermill,nbmake,nbci", help="comma-separated subset to time"
    )
    parser.add_argument(
        "--memory", action="store_true", help="nbci's parent memory at 12 and 96 notebooks"
    )
    args = parser.parse_args(argv)
    if args.notebooks < 1 or args.repeat < 1 or args.cores < 1:
        parser.error("--notebooks, --repeat and --cores must be at least 1")
    if args.memory:
        memory_flatness(args.repeat, args.cores)
    else:
        compare_tools(args.notebooks, args.repeat, args.cores, args.tools.split(","))
    return 0


if __name__ == "__main__":
    sys.exit(main())
