"""The console display of a run in progress: what `nbci run` prints while notebooks run."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from nbci._text import one_line

if TYPE_CHECKING:
    from nbci.model import NotebookResult
    from nbci.progress import JobEvent

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


class Progress:
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
    line += f" in {result.ran_for:.1f}s" if result.ran_for is not None else ""
    if result.error is not None and not result.ok:
        line += f" — {one_line(result.error.summary, 120)}"
    return line


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
