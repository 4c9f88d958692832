"""The command line: a thin shell over the Python API.

`main(argv) -> int` parses, calls one API function, prints. Every `NbciError`
becomes one `nbci: error: …` line and exit code 2. Heavy modules are imported
inside the commands so that `nbci --help` is instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from nbci import __version__
from nbci.errors import NbciError, UsageError

if TYPE_CHECKING:
    from nbci.config import Config
    from nbci.model import NotebookResult
    from nbci.pipeline import RunOutcome
    from nbci.progress import JobEvent

EXIT_OK = 0
EXIT_FAILED = 1
"""A notebook or a gate failed (the outputs are still written)."""
EXIT_USAGE = 2
"""Bad command line, configuration or input."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


_HISTORY: dict[str, Any] = {
    "nargs": "+",
    "type": Path,
    "default": [],
    "metavar": "DIR",
    "help": "earlier runs of the base branch, oldest first: each metric's normal range",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nbci",
        description="Continuous integration for notebooks: run, report, compare, publish.",
    )
    parser.add_argument("--version", action="version", version=f"nbci {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--config", type=Path, help="configuration file (default: nearest)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser("run", help="execute notebooks and write the output directory")
    run.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="notebooks or folders")
    run.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a parameter (VALUE is JSON, else a string); repeatable",
    )
    run.add_argument("--out", type=Path, help="output directory (default: nbci-out)")
    run.add_argument("--jobs", type=_positive_int, metavar="N", help="parallel notebooks")
    run.add_argument("--timeout", type=_seconds, metavar="S", help="whole-notebook timeout")
    run.add_argument("--cell-timeout", type=_seconds, metavar="S", help="per-cell timeout")
    run.add_argument("--no-cache", action="store_true", help="run every notebook again")
    run.add_argument(
        "--no-preload",
        action="store_true",
        help="start every kernel from scratch (no forked, pre-imported kernels)",
    )
    run.add_argument(
        "--shard", metavar="K/N", help="run only shard K of N ('auto': GitLab's CI_NODE_INDEX)"
    )
    run.add_argument("--baseline", type=Path, metavar="DIR", help="compare with this run")
    run.add_argument(
        "--log-output",
        action="store_true",
        help="print each notebook's stdout/stderr as it runs, prefixed with its job id",
    )
    run.set_defaults(handler=_run)

    report = commands.add_parser("report", help="re-render the reports of a run")
    report.add_argument("dir", nargs="?", type=Path, metavar="DIR", help="run (default: out)")
    report.add_argument("--baseline", type=Path, metavar="DIR", help="compare with this run")
    report.add_argument("--history", **_HISTORY)
    report.set_defaults(handler=_report)

    diff = commands.add_parser("diff", help="compare two runs metric by metric")
    diff.add_argument("baseline", type=Path, metavar="A", help="the baseline run")
    diff.add_argument("head", type=Path, metavar="B", help="the new run")
    diff.add_argument("--all", action="store_true", help="include unchanged metrics")
    diff.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    diff.add_argument("--gates", action="store_true", help="exit 1 when a gate fails")
    diff.add_argument("--history", **_HISTORY)
    diff.set_defaults(handler=_diff)

    merge = commands.add_parser("merge", help="one run from shard runs")
    merge.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="shard run folders")
    merge.add_argument("--out", type=Path, required=True, metavar="DIR", help="merged run")
    merge.set_defaults(handler=_merge)

    publish = commands.add_parser("publish", help="post the report to the PR / merge request")
    publish.add_argument("dir", nargs="?", type=Path, metavar="DIR", help="run (default: out)")
    publish.add_argument(
        "--forge",
        choices=("github", "gitlab"),
        help="default: gitlab inside GitLab CI, else github",
    )
    publish.add_argument(
        "--repo", metavar="OWNER/NAME", help="default: $GITHUB_REPOSITORY / $CI_PROJECT_PATH"
    )
    publish.add_argument("--pr", type=_positive_int, metavar="N", help="PR number / MR iid")
    publish.add_argument("--sha", metavar="SHA", help="commit that gets the verdict")
    publish.add_argument(
        "--api-url", metavar="URL", help="default: $GITHUB_API_URL / $CI_API_V4_URL"
    )
    publish.add_argument(
        "--token-env", metavar="VAR", help="variable with the token (GITHUB_TOKEN / GITLAB_TOKEN)"
    )
    publish.add_argument("--check", action="store_true", help="a check run, not a status")
    publish.add_argument("--name", metavar="NAME", help="report name (default: config)")
    publish.add_argument("--assets-branch", metavar="BRANCH", help="branch for figures")
    publish.set_defaults(handler=_publish)

    init = commands.add_parser("init", help="add nbci config, workflows and an example")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.add_argument(
        "--gitlab", action="store_true", help="a .gitlab-ci.yml, not GitHub workflows"
    )
    init.set_defaults(handler=_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="nbci: %(message)s",
            stream=sys.stderr,
        )
        return args.handler(args)
    except NbciError as exc:
        print(f"nbci: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nbci: interrupted", file=sys.stderr)
        return EXIT_FAILED


# -- commands ----------------------------------------------------------------


def _config(args: argparse.Namespace) -> Config:
    from nbci.config import load_config

    return load_config(config_file=args.config)


def _run(args: argparse.Namespace) -> int:
    from nbci.pipeline import RunRequest, run
    from nbci.plan import parse_parameter

    config = _config(args)
    if args.no_preload:
        from dataclasses import replace

        config = replace(config, preload=None)
    shard = None
    if args.shard:
        from nbci.shards import resolve_shard

        shard = resolve_shard(args.shard, os.environ)
    request = RunRequest(
        paths=tuple(args.paths),
        overrides=dict(parse_parameter(p) for p in args.parameter),
        out=args.out,
        workers=args.jobs,
        timeout=args.timeout,
        cell_timeout=args.cell_timeout,
        use_cache=not args.no_cache,
        shard=shard,
        baseline=args.baseline,
        log_output=args.log_output,
    )
    progress = _Progress(log_output=args.log_output)
    try:
        outcome = run(config, request, on_result=progress.finished, on_event=progress.event)
    finally:
        progress.close()
    return _conclude(outcome)


def _report(args: argparse.Namespace) -> int:
    from nbci.pipeline import output_dir, report

    config = _config(args)
    out_dir = args.dir.resolve() if args.dir else output_dir(config)
    outcome = report(config, out_dir, args.baseline, tuple(args.history))
    for path in outcome.reports:
        print(f"Wrote {_shown(path)}")
    return EXIT_OK if outcome.passed else EXIT_FAILED


def _diff(args: argparse.Namespace) -> int:
    import json

    from nbci.code_changes import code_changes, notebook_reader
    from nbci.history import read_history
    from nbci.judge import Criteria, judge, run_label
    from nbci.render.diff import diff_json, diff_markdown
    from nbci.results import read_run

    config = _config(args)
    baseline, head = read_run(args.baseline), read_run(args.head)
    label = run_label(baseline, str(args.baseline))
    history = read_history(args.history)
    judged = judge(head, baseline, label=label, criteria=Criteria.of(config), history=history)
    assert judged.comparison is not None
    verdict = judged.verdict if args.gates else None
    code = code_changes(
        head,
        baseline,
        notebook_reader(_run_dir(args.head)),
        notebook_reader(_run_dir(args.baseline)),
    )
    if args.json:
        data = diff_json(judged.comparison, verdict=verdict, code=code)
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        text = diff_markdown(judged.comparison, show_all=args.all, verdict=verdict, code=code)
        print(text, end="")
    return EXIT_FAILED if verdict is not None and not verdict.passed else EXIT_OK


def _run_dir(path: Path) -> Path:
    """The run folder of `nbci diff`'s argument: a folder, or the folder of a results.json."""
    return path if path.is_dir() else path.parent


def _merge(args: argparse.Namespace) -> int:
    from nbci.pipeline import merge

    config = _config(args)
    outcome = merge(config, tuple(args.dirs), args.out)
    print(_results_table(outcome.run.notebooks))
    return _conclude(outcome, table=False)


def _publish(args: argparse.Namespace) -> int:
    from nbci.pipeline import output_dir
    from nbci.publish import PublishOptions, publish

    config = _config(args)
    options = PublishOptions(
        out_dir=args.dir.resolve() if args.dir else output_dir(config),
        name=args.name or config.name,
        forge=args.forge,
        repo=args.repo,
        pr=args.pr,
        sha=args.sha,
        api_url=args.api_url,
        token_env=args.token_env,
        check=args.check,
        assets_branch=args.assets_branch or config.assets_branch,
        notebooks=config.publish_notebooks,
        higher_is_better=config.higher_is_better,
        lower_is_better=config.lower_is_better,
        gates=config.gates,
        templates=config.root / config.templates if config.templates else None,
        history=config.history,
    )
    outcome = publish(options)
    for line in outcome.lines:
        print(line)
    return EXIT_OK if outcome.passed else EXIT_FAILED


def _init(args: argparse.Namespace) -> int:
    from nbci.scaffold import init

    for path in init(Path.cwd(), force=args.force, gitlab=args.gitlab):
        print(f"Wrote {_shown(path)}")
    return EXIT_OK


# -- output ------------------------------------------------------------------


def _conclude(outcome: RunOutcome, *, table: bool = True) -> int:
    """Print the results table and where things are; GitHub Actions extras; exit code."""
    from nbci import actions

    run = outcome.run
    if table:
        print(_results_table(run.notebooks))
    for failure in outcome.verdict.failures:
        print(f"gate failed: {failure.reason}")
    if actions.in_github_actions():
        _annotate(outcome)
    print(f"Wrote {_shown(outcome.out_dir)}/ ({', '.join(p.name for p in outcome.reports)})")
    if run.interrupted:
        print("nbci: interrupted; results.json holds what finished", file=sys.stderr)
    return EXIT_OK if outcome.passed else EXIT_FAILED


def _annotate(outcome: RunOutcome) -> None:
    from nbci import actions
    from nbci.render import markdown_report

    for nb in outcome.run.notebooks:
        if not nb.ok and nb.error is not None:
            where = f" (cell {nb.error.cell})" if nb.error.cell is not None else ""
            print(
                actions.annotation(
                    "error", nb.error.summary, file=nb.path, title=f"{nb.id}: {nb.status}{where}"
                )
            )
    for failure in outcome.verdict.failures:
        print(actions.annotation("error", failure.reason, title="nbci gate failed"))
    actions.append_step_summary(
        markdown_report(
            outcome.run, comparison=outcome.comparison, verdict=outcome.verdict, images=False
        )
    )


HEARTBEAT_S = 30.0
"""Without a terminal, a line for each running notebook at least this often."""
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")
"""ANSI sequences and control characters: a notebook's output must not drive the terminal."""


@dataclass
class _Running:
    started: float
    cell: int = 0
    cells: int = 0
    lines: list[str] = field(default_factory=list)
    """GitHub Actions: lines kept until this notebook's group is open."""


class _Progress:
    """What `nbci run` prints while notebooks run.

    On a terminal: one line per finished notebook under a live counter. In a
    log (CI): also a line when a notebook starts and a heartbeat for each
    running notebook every `HEARTBEAT_S`. In GitHub Actions each notebook's
    lines are folded into a `::group::`; groups cannot interleave, so one
    notebook's group is open at a time and the lines of the others wait for
    it to end or for their own end (heartbeats always print at once). With
    `log_output`, every line a notebook prints follows, prefixed with its job
    id, so that no line of a notebook starts a workflow command.
    """

    def __init__(
        self,
        *,
        log_output: bool = False,
        stream: TextIO | None = None,
        github: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = stream or sys.stdout
        self.tty = self.out.isatty()
        self.github = os.environ.get("GITHUB_ACTIONS") == "true" if github is None else github
        self.log_output = log_output
        self.clock = clock
        self.count = 0
        self.running: dict[str, _Running] = {}
        self.partial: dict[tuple[str, str], str] = {}
        self.group: str | None = None
        """GitHub Actions: the job whose group is open."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # events from the run

    def event(self, event: JobEvent) -> None:
        from nbci.progress import CellStarted, JobStarted

        with self._lock:
            if isinstance(event, JobStarted):
                self.running[event.job_id] = _Running(self.clock(), 0, event.cells)
                if not self.tty:
                    self._line(event.job_id, f"▶ {event.job_id}: started, {event.cells} cells")
                    self._start_heartbeat()
            elif isinstance(event, CellStarted):
                running = self.running.get(event.job_id)
                if running:
                    running.cell, running.cells = event.cell, event.cells
            elif self.log_output:
                self._output(event.job_id, event.stream, event.text)

    def finished(self, result: NotebookResult) -> None:
        with self._lock:
            self.count += 1
            for stream in ("stdout", "stderr"):
                self._output(result.id, stream, "\n", flush_only=True)
            running = self.running.pop(result.id, None)
            line = _end_line(result)
            if self.tty:
                self._write("\r\033[K" + line + "\n" + f"  {self.count} finished…", end="")
            elif not self.github:
                self._write(line)
            else:
                self._github_finished(result.id, line, running.lines if running else [])

    def heartbeat(self) -> None:
        """One line per running notebook: which cell of how many, time so far."""
        with self._lock:
            now = self.clock()
            for job_id, running in self.running.items():
                cell = f"cell {running.cell} of {running.cells}" if running.cell else "starting"
                self._write(f"… {job_id}: {cell}, {_elapsed(now - running.started)}")

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with self._lock:
            if self.tty:
                self._write("\r\033[K", end="")
            elif self.group is not None:
                self._write("::endgroup::")
                self.group = None

    # printing

    def _output(self, job_id: str, stream: str, text: str, *, flush_only: bool = False) -> None:
        """Whole lines of a notebook's output; a partial line waits for its end."""
        key = (job_id, stream)
        if flush_only and not self.partial.get(key):
            return
        text = self.partial.pop(key, "") + text
        *lines, rest = text.split("\n")
        if rest:
            self.partial[key] = rest
        for line in lines:
            shown = _CONTROL.sub("", line.rstrip("\r"))
            prefix = job_id if stream == "stdout" else f"{job_id}:stderr"
            self._line(job_id, f"[{prefix}] {shown}")

    def _line(self, job_id: str, line: str) -> None:
        if self.tty:
            self._write("\r\033[K" + line + "\n" + f"  {self.count} finished…", end="")
        elif not self.github:
            self._write(line)
        else:
            self._github_line(job_id, line)

    def _github_line(self, job_id: str, line: str) -> None:
        if self.group is None:
            self._open_group(job_id)
        if self.group == job_id:
            self._write(line)
        elif job_id in self.running:
            self.running[job_id].lines.append(line)

    def _github_finished(self, job_id: str, line: str, waiting_lines: list[str]) -> None:
        """Close this notebook's group, or print its kept lines as a group of their own."""
        if self.group == job_id:
            self._write(line)
            self._write("::endgroup::")
            self.group = None
            next_job = next((j for j, r in self.running.items() if r.lines), None)
            if next_job is not None:
                self._open_group(next_job)
            return
        if not waiting_lines:
            self._write(line)
            return
        owner = self.group
        if owner is not None:
            self._write("::endgroup::")
        self._write(f"::group::{job_id}")
        for kept in waiting_lines:
            self._write(kept)
        self._write(line)
        self._write("::endgroup::")
        if owner is not None:
            self._write(f"::group::{owner} (continued)")

    def _open_group(self, job_id: str) -> None:
        self.group = job_id
        self._write(f"::group::{job_id}")
        running = self.running.get(job_id)
        if running is not None:
            for line in running.lines:
                self._write(line)
            running.lines.clear()

    def _write(self, text: str, end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def _start_heartbeat(self) -> None:
        if self._beat is None:
            self._beat = threading.Thread(target=self._beating, name="nbci-heartbeat", daemon=True)
            self._beat.start()

    def _beating(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.heartbeat()


def _end_line(result: NotebookResult) -> str:
    from nbci.vocabulary import STATUS_MARK, status_label

    cached = " (cached)" if result.cached else ""
    status = status_label(result.status)
    line = f"{STATUS_MARK.get(result.status, '?')} {result.id}: {status}{cached}"
    line += f" in {result.duration_s:.1f}s"
    if result.error is not None and not result.ok:
        line += f" — {_one_line(result.error.summary)[:120]}"
    return line


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _results_table(notebooks: Sequence[NotebookResult]) -> str:
    """A plain-text table: notebook, parameters, status, time, metrics."""
    from nbci.vocabulary import format_number, status_label

    header = ("notebook", "parameters", "status", "time", "metrics")
    rows = [header]
    for nb in notebooks:
        parameters = ", ".join(f"{k}={v}" for k, v in nb.parameters.items())
        metrics = "  ".join(f"{k}={format_number(v)}" for k, v in list(nb.metrics.items())[:4])
        if len(nb.metrics) > 4:
            metrics += f"  (+{len(nb.metrics) - 4} more)"
        status = status_label(nb.status) + (" (cached)" if nb.cached else "")
        rows.append(
            (
                nb.id,
                _clip(parameters, 40),
                status,
                f"{nb.duration_s:.1f}s",
                _clip(metrics, 80),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _clip(text: str, width: int) -> str:
    text = _one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
