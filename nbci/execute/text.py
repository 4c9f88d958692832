"""Short texts for error messages: ANSI codes removed, one line, seconds, exit codes."""

from __future__ import annotations

import contextlib
import re
import signal

from nbci._text import one_line as _one_line

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """Remove ANSI colour and cursor codes (tracebacks from IPython are coloured)."""
    return _ANSI.sub("", text)


def one_line(error: BaseException) -> str:
    """An error's message on one line, without colour codes, at most 300 characters."""
    return _one_line(strip_ansi(str(error)).strip() or type(error).__name__)


def seconds(value: float) -> str:
    return f"{value:g} s"


def describe_exit(code: int | None) -> str:
    """A process's exit status as a reader says it: `exit code 3`, `killed by SIGKILL`."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"
