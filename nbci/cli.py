"""The command line: a thin shell over the Python API.

`main(argv) -> int` parses, calls one API function, prints. Every `NbciError`
becomes one `nbci: error: …` line and the `ExitCode` that says what happened.
Heavy modules are imported inside the commands so that `nbci --help` is instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from nbci import __version__
from nbci._exit import exit_without_teardown
from nbci._text import one_line
from nbci.errors import Interrupted, NbciError, PublishError, RunError, UsageError

if TYPE_CHECKING:
    from nbci.config import Config
    from nbci.model import NotebookResult
    from nbci.pipeline import RunOutcome


class ExitCode(IntEnum):
    """What `nbci` exits with (README's table)."""

    OK = 0
    FAILED = 1
    """A notebook or a gate failed, or the run was interrupted (the outputs are written)."""
    USAGE = 2
    """Bad command line, configuration or input (a results.json that cannot be trusted)."""
    PUBLISH = 3
    """The report could not be published (the forge refused, or kept failing)."""
    RUN = 4
    """The run could not be done here: workers that cannot start, an output folder in use."""


EXIT_OK = ExitCode.OK
EXIT_FAILED = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE
EXIT_PUBLISH = ExitCode.PUBLISH
EXIT_RUN = ExitCode.RUN


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


_RUN_DIR = "run (default: config's out, else nbci-out)"
_HISTORY: dict[str, Any] = {
    "nargs": "+",
    "type": Path,
    "default": [],
    "metavar": "DIR",
    "help": "earlier runs of the base branch, oldest first: each metric's normal range "
    "(every DIR after it; put other folders before it)",
}


def _global_flags(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """-v and --config, before the command and (default SUPPRESS: no reset) after it."""
    verbose = False if default is None else default
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=verbose, help="log what happens"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="FILE",
        help="configuration file (default: nearest)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nbci",
        description="Continuous integration for notebooks: run, report, compare, publish.",
    )
    parser.add_argument("--version", action="version", version=f"nbci {__version__}")
    _global_flags(parser)
    after = _Parser(add_help=False)
    _global_flags(after, argparse.SUPPRESS)
    common = [after]
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser(
        "run", help="execute notebooks and write the output directory", parents=common
    )
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
    run.add_argument(
        "--jobs",
        type=_positive_int,
        metavar="N",
        help="parallel notebooks (default: config's jobs, else the number of CPUs)",
    )
    run.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="whole-notebook timeout (default: config's timeout, else 3600)",
    )
    run.add_argument(
        "--cell-timeout",
        type=_seconds,
        metavar="S",
        help="per-cell timeout (default: config's cell_timeout, else 600)",
    )
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

    report = commands.add_parser("report", help="re-render the reports of a run", parents=common)
    report.add_argument("dir", nargs="?", type=Path, metavar="DIR", help=_RUN_DIR)
    report.add_argument("--baseline", type=Path, metavar="DIR", help="compare with this run")
    report.add_argument("--history", **_HISTORY)
    report.set_defaults(handler=_report)

    diff = commands.add_parser("diff", help="compare two runs metric by metric", parents=common)
    # Optional for argparse only: `--history h1 h2 A B` takes A and B, which `_diff` gets back.
    diff.add_argument("baseline", nargs="?", type=Path, metavar="A", help="the baseline run")
    diff.add_argument("head", nargs="?", type=Path, metavar="B", help="the new run")
    diff.add_argument("--all", action="store_true", help="include unchanged metrics")
    diff.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    diff.add_argument("--gates", action="store_true", help="exit 1 when a gate fails")
    diff.add_argument("--history", **_HISTORY)
    diff.set_defaults(handler=_diff)

    merge = commands.add_parser("merge", help="one run from shard runs", parents=common)
    merge.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="shard run folders")
    merge.add_argument("--out", type=Path, required=True, metavar="DIR", help="merged run")
    merge.set_defaults(handler=_merge)

    publish = commands.add_parser(
        "publish", help="post the report to the PR / merge request", parents=common
    )
    publish.add_argument("dir", nargs="?", type=Path, metavar="DIR", help=_RUN_DIR)
    publish.add_argument(
        "--forge",
        choices=("github", "gitlab", "bitbucket"),
        help="default: gitlab in GitLab CI, bitbucket in Bitbucket Pipelines, else github",
    )
    publish.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help="default: $GITHUB_REPOSITORY / $CI_PROJECT_PATH / $BITBUCKET_REPO_FULL_NAME",
    )
    publish.add_argument("--pr", type=_positive_int, metavar="N", help="PR number / MR iid / PR id")
    publish.add_argument("--sha", metavar="SHA", help="commit that gets the verdict")
    publish.add_argument(
        "--api-url",
        metavar="URL",
        help="default: $GITHUB_API_URL / $CI_API_V4_URL / Bitbucket Cloud; "
        "a Bitbucket Data Center server's address",
    )
    publish.add_argument(
        "--token-env",
        metavar="VAR",
        help="variable with the token (default: config's token_env, GITHUB_TOKEN / "
        "GITLAB_TOKEN / BITBUCKET_TOKEN)",
    )
    publish.add_argument("--run-url", metavar="URL", help="the CI run the status links to")
    publish.add_argument("--check", action="store_true", help="a check run, not a status")
    publish.add_argument("--name", metavar="NAME", help="report name (default: config)")
    publish.add_argument("--assets-branch", metavar="BRANCH", help="branch for figures")
    publish.set_defaults(handler=_publish)

    init = commands.add_parser(
        "init", help="add nbci config, workflows and an example", parents=common
    )
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    pipeline = init.add_mutually_exclusive_group()
    pipeline.add_argument(
        "--gitlab", action="store_true", help="a .gitlab-ci.yml, not GitHub workflows"
    )
    pipeline.add_argument(
        "--bitbucket", action="store_true", help="a bitbucket-pipelines.yml, not GitHub workflows"
    )
    init.add_argument(
        "--install",
        metavar="SPEC",
        help="what the pipeline pip-installs (default: this nbci as it was installed)",
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
        logging.getLogger("urllib3").setLevel(logging.ERROR)  # nbci logs each retry, once
        code: int = args.handler(args)
        return code
    except NbciError as exc:
        print(f"nbci: error: {one_line(str(exc), None)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("nbci: interrupted", file=sys.stderr)
        return EXIT_FAILED


def console() -> NoReturn:
    """The `nbci` command (and `python -m nbci`): `main`, then the process ends without
    tearing down its interpreter (`exit_without_teardown`), 40 ms at the end of a run.

    Its files are written and closed, its workers and kernels gone, its logs
    flushed by the `atexit` handlers that still run: what the teardown would
    do is free memory the process gives back anyway.
    """
    try:
        code = main()
    except SystemExit as stop:  # argparse's --help and usage errors
        if not isinstance(stop.code, int | None):
            raise
        code = stop.code or 0
    exit_without_teardown(code)


def exit_code(error: NbciError) -> ExitCode:
    """The exit code that says what kind of error `error` is."""
    if isinstance(error, Interrupted):
        return ExitCode.FAILED
    if isinstance(error, PublishError):
        return ExitCode.PUBLISH
    if isinstance(error, RunError):
        return ExitCode.RUN
    return ExitCode.USAGE


# -- commands ----------------------------------------------------------------


def _config(args: argparse.Namespace) -> Config:
    from nbci.config import load_config

    return load_config(config_file=args.config)


def _run(args: argparse.Namespace) -> int:
    from nbci.console import Progress
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
    progress = Progress(log_output=args.log_output)
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
    if outcome.template_error:
        print(f"nbci: error: {one_line(outcome.template_error, None)}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if outcome.passed else EXIT_FAILED


def _diff(args: argparse.Namespace) -> int:
    import json

    from nbci.code_changes import code_changes, notebook_reader
    from nbci.history import read_history
    from nbci.judge import Criteria, judge, run_label
    from nbci.render.diff import diff_json, diff_markdown, for_terminal
    from nbci.results import read_run

    runs, history_dirs = _diff_runs(args.baseline, args.head, args.history)
    config = _config(args)
    baseline, head = read_run(runs[0]), read_run(runs[1])
    label = run_label(baseline, str(runs[0]))
    history = read_history(history_dirs)
    judged = judge(head, baseline, label=label, criteria=Criteria.of(config), history=history)
    assert judged.comparison is not None
    verdict = judged.verdict if args.gates else None
    code = code_changes(
        head,
        baseline,
        notebook_reader(_run_dir(runs[1])),
        notebook_reader(_run_dir(runs[0])),
    )
    if args.json:
        data = diff_json(judged.comparison, verdict=verdict, code=code)
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        text = diff_markdown(judged.comparison, show_all=args.all, verdict=verdict, code=code)
        print(for_terminal(text) if sys.stdout.isatty() else text, end="")
    return EXIT_FAILED if verdict is not None and not verdict.passed else EXIT_OK


def _diff_runs(
    baseline: Path | None, head: Path | None, history: list[Path]
) -> tuple[tuple[Path, Path], list[Path]]:
    """A and B of `nbci diff`, taken back from the end of `--history` when it swallowed them."""
    given = [p for p in (baseline, head) if p is not None]
    missing = 2 - len(given)
    if missing and len(history) > missing:
        given, history = given + history[-missing:], history[:-missing]
    if len(given) < 2:
        raise UsageError(
            "diff needs two runs, A (the baseline) and B: nbci diff A B [--history DIR…]"
        )
    return (given[0], given[1]), history


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
    from nbci.headline import Headline
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
        token_env=args.token_env or config.token_env,
        run_url=args.run_url,
        check=args.check,
        assets_branch=args.assets_branch or config.assets_branch,
        notebooks=config.publish_notebooks,
        higher_is_better=config.higher_is_better,
        lower_is_better=config.lower_is_better,
        headline=Headline.of(config),
        gates=config.gates,
        templates=config.root / config.templates if config.templates else None,
        history=config.history,
        keep_runs=config.keep_runs,
        keep_pr_days=config.keep_pr_days,
    )
    outcome = publish(options)
    for line in outcome.lines:
        print(line)
    return EXIT_OK if outcome.passed else EXIT_FAILED


def _init(args: argparse.Namespace) -> int:
    from nbci.scaffold import init, next_steps

    scaffold = init(
        Path.cwd(),
        force=args.force,
        gitlab=args.gitlab,
        bitbucket=args.bitbucket,
        install=args.install,
    )
    for path in scaffold.written:
        print(f"Wrote {_shown(path)}")
    for line in next_steps(scaffold):
        print(line)
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
    if outcome.template_error:
        print(f"nbci: error: {one_line(outcome.template_error, None)}", file=sys.stderr)
        return EXIT_USAGE
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
        if failure.check != "status":  # a notebook that is not ok has its annotation above
            print(actions.annotation("error", failure.reason, title="nbci gate failed"))
    actions.append_step_summary(
        markdown_report(
            outcome.run, comparison=outcome.comparison, verdict=outcome.verdict, images=False
        )
    )


def _results_table(notebooks: Sequence[NotebookResult]) -> str:
    """A plain-text table: notebook, parameters, status, time, metrics."""
    from nbci.vocabulary import MISSING, format_number, status_label

    header = ("notebook", "parameters", "status", "time", "metrics")
    rows = [header]
    for nb in notebooks:
        parameters = ", ".join(f"{k}={v}" for k, v in nb.parameters.items())
        metrics = _fitted(
            [one_line(f"{k}={format_number(v)}", None) for k, v in nb.metrics.items()], 80, most=4
        )
        status = status_label(nb.status) + (" (cached)" if nb.cached else "")
        rows.append(
            (
                nb.id,
                one_line(parameters, 40),
                status,
                f"{nb.ran_for:.1f}s" if nb.ran_for is not None else MISSING,
                metrics,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _fitted(items: list[str], width: int, *, most: int) -> str:
    """At most `most` items that fit in `width` with the `(+N more)` that counts the rest."""
    shown: list[str] = []
    for item in items[:most]:
        rest = len(items) - len(shown) - 1
        more = f"  (+{rest} more)" if rest else ""
        if shown and len("  ".join([*shown, item]) + more) > width:
            break
        shown.append(item if shown else one_line(item, width - len(more)))
        if shown[-1] != item:  # cut short: nothing fits after it
            break
    hidden = len(items) - len(shown)
    return "  ".join(shown) + (f"  (+{hidden} more)" if hidden else "")


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
