"""How long does a folder of notebooks take: a papermill loop, nbmake, and nbci cold and warm.

    python benchmarks/bench.py                  # both sets, 12 notebooks each, 3 repetitions
    python benchmarks/bench.py --sets heavy --notebooks 24 --repeat 5
    python benchmarks/bench.py --memory         # nbci's parent memory at 12 and 200 notebooks
    python benchmarks/bench.py --sweep          # a 200-job matrix: 8 shards, then nbci merge
    python benchmarks/bench.py --parallel-training  # forked/fresh: a first n_jobs=-1 fit
    python benchmarks/bench.py --restarts       # forked/fresh: unsafe imports restart templates
    python benchmarks/bench.py --pss            # forked/fresh: peak PSS of a mixed-stack suite

Two sets of N generated notebooks, each in a temporary project:

- `light`: numpy work, three metrics glued with scrapbook, one matplotlib figure;
- `heavy`: the same shape, but every notebook imports numpy, pandas,
  scrapbook, matplotlib and scikit-learn (the usual stack) and fits a small
  model: most of a notebook's time is its imports;
- `series`: the light set, each notebook also gluing a learning curve with
  `nbci.glue` (a series group), so that every report draws charts: a warm
  run must reuse them, not draw them again.

For each set it times, alternating within each repetition so that drift in
the machine's load hits every tool alike:

- `papermill` CLI loop: one `papermill` process per notebook, one after another;
- `pytest --nbmake -n <cores>`;
- `nbci run` cold: empty cache, both reports written;
- `nbci run` warm: the same command again, nothing changed.

It prints the medians, nbci's ratios to each peer, the peak resident memory of
nbci's own (parent) process, a lower bound (the least cell time any tool's
notebooks took, from papermill's per-cell durations, divided by the cores: a
forked nbci kernel's cells skip the imports a fresh kernel's pay for, so this
is usually nbci's own), and nbci's overhead two ways (`--tools nbci` times nbci
alone):

- start-up: the one-time wait before the run's notebooks can run a cell (the
  template importing what they import), from the command's start to the first
  cell of each worker's first notebook (the mean of those `cores` waits);
- per notebook after start-up: what a cold run spends beyond the cells' own
  time, spread over its notebooks: ((wall − start-up) × cores − cell time) ÷
  notebooks. Everything between notebooks counts (kernel start, collecting,
  HTML, kernel exit, the reports at the end), as does a core left idle;

and each notebook's own wall time minus its cells' time (for the papermill loop,
one process per notebook; for nbci, the job's `duration_s`, which leaves out
what the worker does after the cells). Last, the README's performance table,
as markdown. It exits 1 when a target (`TARGETS`, `WARM_TARGET_S`,
`OVERHEAD_TARGET_S`) is missed. Only the standard library is used here; the
tools measured must be installed. Every tool runs without `PYTHONDONTWRITEBYTECODE`,
as a pip install leaves it: with it set, an editable nbci compiled its own source
on each run.
"""

from __future__ import annotations

import argparse
import contextlib
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

TARGETS = {
    "light": {"cold/papermill": 0.40, "cold/nbmake": 0.85},
    "heavy": {"cold/papermill": 0.12, "cold/nbmake": 0.25},
    "series": {"cold/papermill": 0.40, "cold/nbmake": 0.85},
}
"""nbci cold's time as a fraction of its peers' (heavy: issue 21's targets)."""
WARM_TARGET_S = 0.4
"""A warm run (nothing changed) of 12 notebooks, in seconds; scaled with the count."""
OVERHEAD_TARGET_S = 0.10
"""A cold nbci run's overhead per notebook after start-up (see the module's docstring)."""
SETS = ("light", "heavy", "series")
MEMORY_SIZES = (12, 200)
MEMORY_TARGET = 1.10
"""Parent peak RSS of a cold run of 200 notebooks over one of 12, at most (issue 21: flat);
also a whole 200-job sweep's over one of its 25-job shards (`--sweep`)."""
SWEEP_JOBS = 200
SWEEP_SHARDS = 8
MERGE_TARGET_S = 2.0
"""`nbci merge` of the sweep's 8 shards, reports included (issue 21)."""

# nbci runs inside this wrapper, in-process, so that RUSAGE_SELF is nbci's own
# parent process: its peak RSS excludes kernels and workers (they are children). It
# ends as the `nbci` command does (`console`), recording the usage from `atexit`.
_NBCI_WRAPPER = """
import atexit, json, os, resource
from nbci.cli import console

def record_usage():
    own = resource.getrusage(resource.RUSAGE_SELF)
    usage = {
        "parent_cpu_s": own.ru_utime + own.ru_stime,
        "parent_kib": own.ru_maxrss,
        "largest_child_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    with open(os.environ["NBCI_BENCH_RUSAGE"], "w") as f:
        json.dump(usage, f)

atexit.register(record_usage)
console()
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


HEAVY_CELLS = [
    "import matplotlib.pyplot as plt\n"
    "import numpy as np\n"
    "import pandas as pd\n"
    "import scrapbook as sb\n"
    "from sklearn.linear_model import Ridge\n"
    "from sklearn.model_selection import train_test_split",
    "rng = np.random.default_rng(seed)\n"
    "X = rng.normal(size=(samples // 4, 12))\n"
    "y = X @ rng.normal(size=12) + rng.normal(scale=0.3, size=len(X))\n"
    "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=seed)\n"
    "model = Ridge(alpha=1.0).fit(X_train, y_train)\n"
    "residuals = y_test - model.predict(X_test)\n"
    "frame = pd.DataFrame({'residual': residuals})",
    'sb.glue("r2", float(model.score(X_test, y_test)))\n'
    'sb.glue("rmse", float(np.sqrt(np.mean(residuals**2))))\n'
    'sb.glue("residual_std", float(frame["residual"].std()))',
    "fig, ax = plt.subplots(figsize=(4, 3))\n"
    'frame["residual"].hist(ax=ax, bins=30)\n'
    'sb.glue("residuals", fig, encoder="display", display=True)\n'
    "plt.close(fig)",
]


def notebook(index: int, kind: str = "light") -> dict[str, object]:
    """A small, realistic notebook: fit, evaluate, glue three metrics and a figure."""
    head = [
        _cell("markdown", f"# Benchmark notebook {index} ({kind})"),
        _cell("code", f"seed = {index}\nsamples = 4000", tags=["parameters"]),
    ]
    if kind == "heavy":
        return _notebook([*head, *(_cell("code", source) for source in HEAVY_CELLS)])
    cells = [
        *head,
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
    if kind == "series":
        cells.append(_cell("code", SERIES_CELL))
    return _notebook(cells)


SERIES_CELL = (
    "import nbci\n"
    "epochs = np.arange(1, 41)\n"
    "train = 1.0 / epochs + rng.normal(scale=0.01, size=epochs.size)\n"
    'nbci.glue("learning", {"train_loss": train, "val_loss": train * 1.2 + 0.05})'
)
"""A learning curve, glued as a series group: one chart per notebook in every report."""


def _notebook(cells: list[dict[str, object]]) -> dict[str, object]:
    return {
        "cells": [{"id": f"cell-{n}", **cell} for n, cell in enumerate(cells)],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def make_project(root: Path, count: int, kind: str = "light") -> list[Path]:
    """`root/notebooks/bench_XX.ipynb` and an `nbci.toml` that runs them."""
    folder = root / "notebooks"
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"bench_{i:03}.ipynb"
        path.write_text(json.dumps(notebook(i, kind), indent=1), encoding="utf-8")
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
    overheads: dict[str, float] = field(default_factory=dict)
    """Notebook → its wall time minus its cells' own time (papermill loop and cold nbci)."""
    cell_time: float = 0.0
    """The notebooks' own cell time, summed."""
    cpu_s: float | None = None
    """nbci's own (parent) CPU time, user and system: on a loaded machine, what wall time
    would be on an idle one, at most (`--sweep`)."""
    start_up: float | None = None
    """Seconds from the command's start to the first cell of each worker's first notebook,
    the mean over the workers (cold nbci)."""


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
    environment = dict(os.environ if env is None else env)
    # Every tool runs as pip installs it, with its modules' bytecode written: an editable
    # nbci under PYTHONDONTWRITEBYTECODE would compile its own source in every run.
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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
        sample = Sample(0.0)
        for path in notebooks:
            argv = ["papermill", str(path), str(out / path.name), "-k", "python3"]
            seconds = _run([*argv, "--no-progress-bar", "--log-level", "WARNING"], project)
            cells = cell_time(out / path.name)
            sample.seconds += seconds
            sample.cell_time += cells
            sample.overheads[path.stem] = seconds - cells
        return sample

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
        began = time.time()
        seconds = _run(argv, project, env)
        usage = json.loads(rusage.read_text())
        results = json.loads((project / "nbci-out" / "results.json").read_text())
        cached = sum(nb["cached"] for nb in results["notebooks"])
        expected = len(results["notebooks"]) if not cold else 0
        if cached != expected:  # e.g. nbci's own source changed between the runs
            kind = "cold" if cold else "warm"
            print(f"  warning: {kind} nbci run had {cached}/{len(results['notebooks'])} cached")
        sample = Sample(seconds, usage["parent_kib"], usage["largest_child_kib"])
        if cold:
            firsts = []
            for nb in results["notebooks"]:
                executed = project / "nbci-out" / nb["output"]
                cells = cell_time(executed)
                sample.cell_time += cells
                sample.overheads[nb["id"]] = nb["duration_s"] - cells
                firsts.append(first_cell_start(executed) - began)
            sample.start_up = statistics.mean(sorted(firsts)[:cores])
        return sample

    return run


def cell_time(executed: Path) -> float:
    """An executed notebook's own cell time (papermill's per-cell durations)."""
    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    return sum(c["metadata"].get("papermill", {}).get("duration") or 0.0 for c in cells)


def first_cell_start(executed: Path) -> float:
    """When an executed notebook's first cell started (papermill's timestamp), in epoch seconds."""
    from datetime import datetime

    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    stamps = [c["metadata"].get("papermill", {}).get("start_time") for c in cells]
    first = min(datetime.fromisoformat(stamp) for stamp in stamps if stamp)
    return first.timestamp()


def after_start_up(sample: Sample, cores: int, count: int) -> float:
    """A cold run's overhead per notebook after start-up: ((wall − start-up) × cores − cell
    time) ÷ notebooks, what `wall = start-up + notebooks × (cells + overhead) ÷ cores` leaves."""
    assert sample.start_up is not None
    return ((sample.seconds - sample.start_up) * cores - sample.cell_time) / count


def lower_bound(tools: Sequence[Tool], cores: int) -> float | None:
    """The least cell time of any tool's notebooks (the median of its runs) divided by the
    cores: no tool finishes sooner, nbci included, whose forked kernels skip the imports
    that papermill's cells pay for. None when no tool recorded cell times."""
    times = [
        statistics.median(s.cell_time for s in tool.samples)
        for tool in tools
        if tool.samples and all(s.cell_time > 0 for s in tool.samples)
    ]
    return min(times) / cores if times else None


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


@dataclass
class SetResult:
    """One set's measurements, for the summary table."""

    name: str
    count: int
    tools: dict[str, Tool]
    bound: float | None
    cores: int = 1


def _mib(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f} MiB"


@dataclass(frozen=True)
class Check:
    """One measured figure against its target (None: reported, not judged)."""

    name: str
    value: float
    target: float | None = None

    @property
    def met(self) -> bool:
        return self.target is None or self.value <= self.target

    def __str__(self) -> str:
        if self.target is None:
            return f"{self.name} = {self.value:.2f}"
        verdict = "ok" if self.met else "MISSED"
        return f"{self.name} = {self.value:.3f} (target ≤ {self.target:.2f}: {verdict})"


def checks(result: SetResult) -> list[Check]:
    """nbci's ratios to its peers, its warm time, its start-up and its overhead per notebook
    after start-up (medians of the cold runs), against the targets."""
    tools, targets = result.tools, TARGETS[result.name]
    cold, warm = tools.get("nbci-cold"), tools.get("nbci-warm")
    found = []
    for peer in ("papermill", "nbmake"):
        if cold and peer in tools:
            name = f"cold/{peer}"
            found.append(Check(name, cold.median / tools[peer].median, targets.get(name)))
    if warm:
        found.append(Check("warm (s)", warm.median, WARM_TARGET_S * result.count / 12))
    timed = [s for s in cold.samples if s.start_up is not None] if cold else []
    if timed:
        found.append(Check("start-up (s)", statistics.median(s.start_up or 0.0 for s in timed)))
        overhead = statistics.median(after_start_up(s, result.cores, result.count) for s in timed)
        found.append(Check("overhead per notebook after start-up (s)", overhead, OVERHEAD_TARGET_S))
    return found


def report(result: SetResult, cores: int) -> None:
    tools = result.tools
    repeats = len(next(iter(tools.values())).samples)
    print(f"\n{result.name} set: {result.count} notebooks, {cores} cores, medians of {repeats}:")
    for tool in tools.values():
        spread = ", ".join(f"{s.seconds:.2f}" for s in tool.samples)
        failed = f", {tool.failures} failed run(s) repeated" if tool.failures else ""
        print(f"  {tool.name:<28} {tool.median:7.2f} s   ({spread}{failed})")
    if result.bound is not None:
        print(f"  {'lower bound (cell time/cores)':<28} {result.bound:7.2f} s")
    cold, warm = tools.get("nbci-cold"), tools.get("nbci-warm")
    for check in checks(result):
        print(f"  {check}")
    for nbci_tool in (cold, warm):
        if nbci_tool:
            parent, child = (nbci_tool.median_kib(k) for k in ("parent_kib", "largest_child_kib"))
            print(
                f"  {nbci_tool.name} peak RSS: parent {_mib(parent)}, "
                f"largest child (worker or kernel) {_mib(child)}"
            )
    for timed in (tools.get("papermill"), cold):
        if timed:
            _report_overheads(timed, cores)


def _report_overheads(tool: Tool, cores: int) -> None:
    """Each notebook's wall time minus its cells' own time, in the tool's last run; for nbci,
    also its start-up and its overhead per notebook after start-up."""
    last = tool.samples[-1]
    if not last.overheads:
        return
    mean = statistics.mean(last.overheads.values())
    each = " ".join(f"{value:.2f}" for _, value in sorted(last.overheads.items()))
    print(f"  {tool.name} overhead per notebook (wall minus cells, last run): mean {mean:.2f} s")
    print(f"    each: {each}")
    count = len(last.overheads)
    if last.start_up is None:  # the papermill loop: one notebook at a time, each its own start-up
        amortized = (tool.median - last.cell_time) / count
        print(f"    whole run: (wall − cell time) ÷ {count} = {amortized:.2f} s per notebook")
        return
    after = after_start_up(last, cores, count)
    print(f"    start-up (once, until each worker's first notebook runs): {last.start_up:.2f} s")
    print(
        f"    after start-up: ((wall {last.seconds:.2f} − start-up) × {cores} − cell time "
        f"{last.cell_time:.2f}) ÷ {count} = {after:.2f} s per notebook"
    )


ROWS = (
    ("papermill", "papermill CLI loop"),
    ("nbmake", "`pytest --nbmake -n {cores}`"),
    ("nbci-cold", "`nbci run`, cold"),
    ("nbci-warm", "`nbci run`, warm (nothing changed)"),
)


OVERHEAD_ROWS = {
    "start-up (s)": "nbci start-up (once)",
    "overhead per notebook after start-up (s)": "nbci overhead per notebook after start-up",
}


def markdown_table(results: Sequence[SetResult], cores: int) -> str:
    """The README's performance table: one block of rows per set."""
    lines = ["| set | | seconds | nbci cold ÷ |", "|---|---|---:|---:|"]
    for result in results:
        cold = result.tools.get("nbci-cold")
        for key, label in ROWS:
            tool = result.tools.get(key)
            if tool is None:
                continue
            ratio = ""
            if cold and key in ("papermill", "nbmake"):
                ratio = f"{cold.median / tool.median:.2f}"
            elif cold and key == "nbci-warm":
                ratio = f"{tool.median / cold.median:.3f} of cold"
            name = label.format(cores=cores)
            lines.append(f"| {result.name} | {name} | {tool.median:.2f} | {ratio} |")
        for check in checks(result):
            if check.name in ("start-up (s)", "overhead per notebook after start-up (s)"):
                label = OVERHEAD_ROWS[check.name]
                lines.append(f"| {result.name} | {label} | {check.value:.2f} | |")
        if result.bound is not None:
            lines.append(
                f"| {result.name} | lower bound (cell time ÷ cores) | {result.bound:.2f} | |"
            )
    return "\n".join(lines)


# -- modes -------------------------------------------------------------------------------


def compare_tools(kind: str, count: int, repeat: int, cores: int, only: Sequence[str]) -> SetResult:
    with tempfile.TemporaryDirectory(prefix="nbci-bench-") as tmp:
        project = Path(tmp)
        notebooks = make_project(project, count, kind)
        every = {
            "papermill": Tool("papermill", papermill_loop(project, notebooks)),
            "nbmake": Tool("nbmake", nbmake(project, cores)),
            "nbci-cold": Tool("nbci-cold", nbci(project, cores, cold=True)),
            "nbci-warm": Tool("nbci-warm", nbci(project, cores, cold=False)),
        }
        tools = {name: tool for name, tool in every.items() if name.split("-")[0] in only}
        print(
            f"nbci benchmark, {kind} set: {count} notebooks in {project}, {cores} cores, "
            f"{repeat} repetitions"
        )
        _warm_up(project, notebooks[0])
        if "nbci-warm" in tools and "nbci-cold" in tools:  # warm must directly follow cold
            pair = [tools["nbci-cold"], tools["nbci-warm"]]
            rest = [t for n, t in tools.items() if not n.startswith("nbci")]
            sequence = [*rest, Tool("nbci cold, then warm", _pair(pair))]
            measure(sequence, repeat)
        else:
            measure(list(tools.values()), repeat)
        result = SetResult(kind, count, tools, lower_bound(list(tools.values()), cores), cores)
        report(result, cores)
        return result


def _pair(pair: list[Tool]) -> Callable[[], Sample]:
    """Run the tools one after the other; their samples count only when all succeeded, so a
    pair timed again after a failure does not count its first tool's sample twice."""

    def run() -> Sample:
        samples = [tool.run() for tool in pair]
        for tool, sample in zip(pair, samples, strict=True):
            tool.samples.append(sample)
        return Sample(sum(sample.seconds for sample in samples))

    return run


def _warm_up(project: Path, notebook_path: Path) -> None:
    """One untimed execution, so that the first timed tool does not pay for cold disk caches."""
    out = project / "warm-up.ipynb"
    _run(["papermill", str(notebook_path), str(out), "--no-progress-bar"], project)
    out.unlink()


def memory_flatness(repeat: int, cores: int) -> bool:
    """nbci's parent peak RSS in cold runs of 12 and 200 notebooks: is it flat
    (`MEMORY_TARGET`)?"""
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
    met = high / low <= MEMORY_TARGET
    verdict = "met" if met else "MISSED"
    print(
        f"  growth {MEMORY_SIZES[0]} → {MEMORY_SIZES[1]} notebooks: {high / low:.2f}× "
        f"(target ≤ {MEMORY_TARGET:.2f}: {verdict})"
    )
    return met


def make_sweep(root: Path, jobs: int) -> None:
    """One small notebook run as a `jobs`-value matrix (`seed`), each job gluing three
    metrics and a figure: the shape of a hyper-parameter sweep."""
    folder = root / "notebooks"
    folder.mkdir(parents=True)
    sweep = notebook(0, "light")
    sweep["cells"][1]["source"] = "seed = 0\nsamples = 400"  # type: ignore[index]
    (folder / "sweep.ipynb").write_text(json.dumps(sweep, indent=1), encoding="utf-8")
    seeds = ", ".join(str(i) for i in range(jobs))
    (root / "nbci.toml").write_text(
        'notebooks = ["notebooks/sweep.ipynb"]\nout = "nbci-out"\ncache_dir = ".nbci-cache"\n'
        f'[[notebook]]\npath = "notebooks/sweep.ipynb"\nmatrix = {{ seed = [{seeds}] }}\n',
        encoding="utf-8",
    )


def _nbci_command(project: Path, args: Sequence[str]) -> Sample:
    """`nbci ARGS` in `project`, timed, with the parent process's peak memory."""
    rusage = project / "nbci-rusage.json"
    env = dict(os.environ, NBCI_BENCH_RUSAGE=str(rusage))
    seconds = _run([sys.executable, "-c", _NBCI_WRAPPER, *args], project, env)
    usage = json.loads(rusage.read_text())
    sample = Sample(seconds, usage["parent_kib"], usage["largest_child_kib"])
    sample.cpu_s = usage["parent_cpu_s"]
    return sample


def large_sweep(repeat: int, cores: int) -> bool:
    """A 200-job sweep: the whole run and its 8 shards (parent memory: flat?), then
    `nbci merge` of the shards, `repeat` times with no chart kept from before (the median
    against `MERGE_TARGET_S`), and once more with the charts the last merge kept."""
    print(f"{SWEEP_JOBS}-job sweep, {cores} cores: whole, {SWEEP_SHARDS} shards, merge")
    with tempfile.TemporaryDirectory(prefix="nbci-bench-") as tmp:
        project = Path(tmp)
        make_sweep(project, SWEEP_JOBS)
        jobs = ["--jobs", str(cores)]
        whole = _nbci_command(project, ["run", "--out", "whole", *jobs])
        print(f"  whole run: {whole.seconds:7.2f} s, parent {_mib(whole.parent_kib)}", flush=True)
        shards = []
        for k in range(1, SWEEP_SHARDS + 1):
            out = ["--out", f"shard-{k}", "--shard", f"{k}/{SWEEP_SHARDS}"]
            shards.append(_nbci_command(project, ["run", *out, *jobs]))
        shard_rss = statistics.median(s.parent_kib or 0 for s in shards)
        print(f"  shards: {sum(s.seconds for s in shards):7.2f} s in all, parent {_mib(shard_rss)}")
        merge = ["merge", *(f"shard-{k}" for k in range(1, SWEEP_SHARDS + 1)), "--out", "merged"]
        merges = []
        for rep in range(repeat):
            shutil.rmtree(project / "merged", ignore_errors=True)
            shutil.rmtree(project / ".nbci-cache" / "charts", ignore_errors=True)  # drawn anew
            merges.append(_nbci_command(project, merge))
            cpu = merges[-1].cpu_s or 0.0
            print(f"  rep {rep + 1}/{repeat}  merge {merges[-1].seconds:7.2f} s, CPU {cpu:.2f} s")
        shutil.rmtree(project / "merged")
        warm = _nbci_command(project, merge)
        merged = json.loads((project / "merged" / "results.json").read_text())
        assert len(merged["notebooks"]) == SWEEP_JOBS, "the merge lost jobs"
    median = statistics.median(m.seconds for m in merges)
    met = median <= MERGE_TARGET_S
    rss = statistics.median(m.parent_kib or 0 for m in merges)
    verdict = "met" if met else "MISSED"
    cpu = statistics.median(m.cpu_s or 0.0 for m in merges)
    target = f"target ≤ {MERGE_TARGET_S:.1f} s: {verdict}"
    print(f"  merge median {median:.2f} s ({target}), CPU {cpu:.2f} s, parent {_mib(rss)}")
    print(
        f"  merge with the sweep charts kept: {warm.seconds:.2f} s, CPU {warm.cpu_s or 0.0:.2f} s, "
        f"parent {_mib(warm.parent_kib)}"
    )
    growth = (whole.parent_kib or 0) / max(shard_rss, 1)
    flat = "met" if growth <= MEMORY_TARGET else "MISSED"
    print(
        f"  whole-run parent / shard parent: {growth:.2f}× (target ≤ {MEMORY_TARGET:.2f}: {flat})"
    )
    return met and growth <= MEMORY_TARGET


TRAINING_CELLS = [
    "import numpy as np\n"
    "from sklearn.datasets import make_classification\n"
    "from sklearn.ensemble import RandomForestClassifier\n"
    "from sklearn.model_selection import cross_val_score",
    "X, y = make_classification(n_samples=2000, n_features=20, random_state=0)\n"
    "scores = cross_val_score(RandomForestClassifier(n_estimators=50, random_state=0), X, y,\n"
    "                         cv=4, n_jobs=-1)",
]
"""A first parallel scikit-learn call: loky starts its workers, which import what they need."""


def parallel_training(count: int, repeat: int) -> None:
    """The training cell's own time in forked kernels against fresh ones (`--no-preload`).

    One worker, so that each kernel has the cores to itself; alternating
    forked and fresh runs. Issue 19's target: the ratio stays within 1.10.
    """
    ratios = []
    with tempfile.TemporaryDirectory(prefix="nbci-bench-") as tmp:
        project = Path(tmp)
        folder = project / "notebooks"
        folder.mkdir()
        for index in range(count):
            cells = [_cell("code", source) for source in TRAINING_CELLS]
            (folder / f"train_{index:02}.ipynb").write_text(json.dumps(_notebook(cells)))
        for _ in range(repeat):
            seconds = {}
            for label, extra in (("forked", []), ("fresh", ["--no-preload"])):
                out = project / f"out-{label}"
                shutil.rmtree(out, ignore_errors=True)
                argv = ["run", "--no-cache", "--jobs", "1", "--out", out.name, *extra]
                _run([sys.executable, "-m", "nbci", *argv], project)
                executed = sorted((out / "notebooks").glob("*.ipynb"))
                training = [json.loads(p.read_text())["cells"][1] for p in executed]
                seconds[label] = statistics.median(
                    c["metadata"]["papermill"]["duration"] for c in training
                )
            ratios.append(seconds["forked"] / seconds["fresh"])
            print(
                f"  training cell, median of {count}: forked {seconds['forked']:.2f} s, "
                f"fresh {seconds['fresh']:.2f} s, ratio {ratios[-1]:.2f}"
            )
    ratio = statistics.median(ratios)
    print(f"forked/fresh ratio, median of {repeat}: {ratio:.2f} (target ≤ 1.10)")


UNSAFE_IMPORTS = "import tqdm.auto\nimport tqdm.notebook\nimport tqdm.autonotebook\nimport seaborn"
"""Modules a set template refuses (they ask IPython for its shell, or start threads): each
one the template meets restarts it without that module and what follows."""
RESTART_CELLS = {
    "unsafe": ["import numpy as np\n" + UNSAFE_IMPORTS, "total = sum(tqdm.auto.tqdm(range(10)))"],
    "numpy": ["import numpy as np", "total = float(np.arange(1000.0).sum())"],
    "sklearn": [
        "import numpy as np\nfrom sklearn.linear_model import Ridge",
        "X = np.arange(40.0).reshape(-1, 2)\nscore = Ridge().fit(X, X[:, 0]).score(X, X[:, 0])",
    ],
}


def _timed_pair(project: Path, jobs: int, repeat: int, title: str) -> None:
    """`nbci run` forked and `--no-preload`, alternating, `repeat` times: the medians, their
    ratio, and how many kernels of the last forked run were not forked."""
    times: dict[str, list[float]] = {"forked": [], "fresh": []}
    for rep in range(repeat):
        for label, extra in (("forked", []), ("fresh", ["--no-preload"])):
            out = project / f"out-{label}"
            shutil.rmtree(out, ignore_errors=True)
            argv = ["run", "--no-cache", "--jobs", str(jobs), "--out", out.name, *extra]
            times[label].append(_run([sys.executable, "-m", "nbci", *argv], project))
        print(
            f"  rep {rep + 1}/{repeat}  forked {times['forked'][-1]:7.2f} s, "
            f"fresh {times['fresh'][-1]:7.2f} s",
            flush=True,
        )
    forked, fresh = (statistics.median(times[label]) for label in ("forked", "fresh"))
    results = json.loads((project / "out-forked" / "results.json").read_text())
    noted = sum(bool(nb.get("notes")) for nb in results["notebooks"])
    print(f"{title}: forked {forked:.2f} s, fresh {fresh:.2f} s (medians of {repeat}),")
    print(f"  forked/fresh {forked / fresh:.2f} (target ≤ 1.00); {noted} notebooks with a note")


def template_restarts(count: int, repeat: int, cores: int) -> None:
    """A run in which every sixth notebook (the second first) imports tqdm.auto,
    tqdm.notebook, tqdm.autonotebook and seaborn, the others numpy or numpy and
    scikit-learn: forked against `--no-preload`. Issue 19: never slower than fresh."""
    kinds = ["unsafe" if i % 6 == 1 else ("numpy", "sklearn")[i % 2] for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="nbci-bench-") as tmp:
        project = Path(tmp)
        folder = project / "notebooks"
        folder.mkdir()
        for index, kind in enumerate(kinds):
            cells = [_cell("code", source) for source in RESTART_CELLS[kind]]
            (folder / f"nb_{index:02}.ipynb").write_text(json.dumps(_notebook(cells)))
        unsafe = kinds.count("unsafe")
        title = f"{count} notebooks, {unsafe} importing the unsafe modules, --jobs {cores}"
        print(title, flush=True)
        _timed_pair(project, cores, repeat, "template restarts")


STACKS = {
    "numpy": "import numpy as np\nvalue = float(np.ones(1000).sum())",
    "pandas": "import pandas as pd\nvalue = float(pd.Series(range(100)).sum())",
    "sklearn_mpl": "import matplotlib.pyplot as plt\nfrom sklearn.linear_model import Ridge\n"
    "value = Ridge().fit([[0.0], [1.0]], [0.0, 1.0]).coef_[0]",
    "torch": "import torch\nvalue = float(torch.ones(10).sum())",
}
"""A suite whose notebooks import different stacks (torch where it is installed)."""
PSS_INTERVAL_S = 0.2


def _tree_pss(root: int) -> int:
    """The summed PSS (bytes) of `root` and its descendants now."""
    import psutil  # nbci's dependency; the rest of this script needs only the standard library

    try:
        processes = [psutil.Process(root)]
        processes += processes[0].children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):  # ended while sampled
            total += process.memory_full_info().pss
    return total


def _peak_pss(argv: Sequence[str], cwd: Path) -> tuple[float, int]:
    """Run `argv` in `cwd`: its wall time and its process tree's peak total PSS (sampled)."""
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_pss(process.pid))
        time.sleep(PSS_INTERVAL_S)
    if process.returncode != 0:
        raise RunFailed(f"`{' '.join(argv)}` failed ({process.returncode})")
    return time.perf_counter() - start, peak


def suite_pss(repeat: int) -> None:
    """Peak total PSS of nbci's process tree (parent, worker, templates, kernels) for a
    mixed-stack suite, `--jobs 1`, forked against `--no-preload`, alternating."""
    import importlib.util

    stacks = {k: v for k, v in STACKS.items() if k != "torch" or importlib.util.find_spec(k)}
    peaks: dict[str, list[int]] = {"forked": [], "fresh": []}
    with tempfile.TemporaryDirectory(prefix="nbci-bench-") as tmp:
        project = Path(tmp)
        folder = project / "notebooks"
        folder.mkdir()
        for name, source in stacks.items():
            cells = [_cell("code", source)]
            (folder / f"{name}.ipynb").write_text(json.dumps(_notebook(cells)))
        print(f"peak total PSS, --jobs 1, notebooks: {', '.join(stacks)}", flush=True)
        for rep in range(repeat):
            for label, extra in (("forked", []), ("fresh", ["--no-preload"])):
                argv = ["run", "--no-cache", "--jobs", "1", "--out", f"out-{label}", *extra]
                seconds, peak = _peak_pss([sys.executable, "-m", "nbci", *argv], project)
                peaks[label].append(peak)
                print(
                    f"  rep {rep + 1}/{repeat}  {label:6} {peak / 2**20:7.0f} MiB, {seconds:.1f} s"
                )
    forked, fresh = (statistics.median(peaks[label]) / 2**20 for label in ("forked", "fresh"))
    print(
        f"peak total PSS: forked {forked:.0f} MiB, fresh {fresh:.0f} MiB, "
        f"forked/fresh {forked / fresh:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=int, default=12, metavar="N")
    parser.add_argument("--repeat", type=int, default=3, metavar="R")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="workers for all")
    parser.add_argument(
        "--tools", default="papermill,nbmake,nbci", help="comma-separated subset to time"
    )
    parser.add_argument(
        "--sets", default=",".join(SETS), help="comma-separated notebook sets: light, heavy, series"
    )
    parser.add_argument(
        "--memory", action="store_true", help="nbci's parent memory at 12 and 200 notebooks"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"a {SWEEP_JOBS}-job matrix: whole, in {SWEEP_SHARDS} shards, then nbci merge",
    )
    parser.add_argument(
        "--parallel-training",
        action="store_true",
        help="a first n_jobs=-1 scikit-learn fit, forked kernels against fresh ones",
    )
    parser.add_argument(
        "--restarts",
        action="store_true",
        help="notebooks importing tqdm.auto, seaborn...: forked against --no-preload",
    )
    parser.add_argument(
        "--pss",
        action="store_true",
        help="peak total PSS of a mixed-stack suite, forked against --no-preload (--jobs 1)",
    )
    args = parser.parse_args(argv)
    if args.notebooks < 1 or args.repeat < 1 or args.cores < 1:
        parser.error("--notebooks, --repeat and --cores must be at least 1")
    if args.sweep:
        return 0 if large_sweep(args.repeat, args.cores) else 1
    if args.memory:
        return 0 if memory_flatness(args.repeat, args.cores) else 1
    if args.parallel_training:
        parallel_training(min(args.notebooks, 4), args.repeat)
        return 0
    if args.restarts:
        template_restarts(args.notebooks, args.repeat, args.cores)
        return 0
    if args.pss:
        suite_pss(args.repeat)
        return 0
    kinds = args.sets.split(",")
    if not set(kinds) <= set(SETS):
        parser.error(f"--sets takes a comma-separated subset of {', '.join(SETS)}")
    tools = args.tools.split(",")
    results = [compare_tools(k, args.notebooks, args.repeat, args.cores, tools) for k in kinds]
    print(f"\nREADME table ({time.strftime('%Y-%m-%d')}, medians of {args.repeat}):\n")
    print(markdown_table(results, args.cores))
    return verdict(results)


def verdict(results: Sequence[SetResult]) -> int:
    """0 when every target was met; 1 (each missed one said) when one was not."""
    missed = [f"{r.name}: {check}" for r in results for check in checks(r) if not check.met]
    for line in missed:
        print(f"bench: missed {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
