"""A worker's templates: the base one, and one per set of imports, replaced when unsafe.

Each notebook's kernel is forked from a template that imported exactly the
modules that notebook imports first (`preload.modules_for`), in its order: a
*set template* forked from the worker's base template (which imported only
the kernel machinery). The last `KEPT_SET_TEMPLATES` are kept for the next
notebooks with the same imports. A module that makes a template unsafe is
cut, with what follows it, from every set of this worker; a set template that
fails means a fresh kernel for that notebook only.

Forking needs Linux: the forked kernel must be adopted by the worker (a
child subreaper) so that the worker reaps it and knows its exit code, and
fork without exec is unsafe on macOS (system frameworks; CPython itself
defaults to `spawn` there) and absent on Windows. Elsewhere kernels start
normally.
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nbci.execute.fork_client import SetTemplate, Template, TemplateError, TemplateReport
from nbci.execute.provisioner import fall_back

logger = logging.getLogger(__name__)

KEPT_SET_TEMPLATES = 1
"""Set templates a worker keeps alive (each holds its notebooks' imports in memory): one, so
that while a notebook runs no other notebook's imports are held beside it and a run's memory
stays that of fresh kernels (`bench.py --pss`); a notebook with other imports than the last
forks a new set template from the base one."""


class TemplateKeeper:
    """Hands out the socket of a ready, safe template for a set of modules."""

    def __init__(
        self,
        folder: Path,
        environment: Mapping[str, str],
        project: Path,
        notebook_folders: Sequence[Path],
        on_process: Callable[[int, bool], None],
    ) -> None:
        self._folder = folder
        self._environment = environment
        self._project = project
        self._notebook_folders = notebook_folders
        self._on_process = on_process
        """Told the base template's pid as it starts (True) and stops (False)."""
        self._base: Template | None = None
        self._sets: OrderedDict[tuple[str, ...], SetTemplate] = OrderedDict()
        self._unsafe: dict[str, str] = {}
        """Modules that made a template unsafe (→ why): never pre-imported again here."""
        self._failed: dict[tuple[str, ...], str] = {}
        """Sets whose template failed (→ why): their notebooks start fresh without trying again."""
        self._given_up = False

    @staticmethod
    def supported(subreaper: bool) -> str | None:
        """Why kernels cannot be forked here, or None."""
        if not sys.platform.startswith("linux"):
            return f"no safe fork on {sys.platform}"
        if not subreaper:
            return "this process cannot adopt forked kernels (no child subreaper)"
        return None

    def start(self) -> None:
        """Start the base template in the background (it imports while the worker goes on)."""
        if self._base is None and not self._given_up:
            try:
                self._base = Template(
                    self._folder, self._environment, self._project, self._notebook_folders
                )
            except OSError as error:
                self._give_up(f"the template process cannot start ({error})")
                return
            self._on_process(self._base.pid, True)

    def socket(self, modules: Sequence[str], timeout: float) -> tuple[str | None, str | None]:
        """The socket of a template of `modules` ready to fork, or None and why not.

        The why is None when no template is used by anyone in this worker
        (said once, `fall_back`); otherwise it is this notebook's reason.
        """
        base = self._ready_base(timeout)
        if base is None:
            return None, None
        wanted = self._cut(tuple(modules))
        while wanted:
            if wanted in self._failed:
                return None, self._failed[wanted]
            try:
                template = self._set(base, wanted)
                report = template.wait_ready(timeout)
            except TemplateError as error:
                return None, self._fail(wanted, f"the template of its imports failed ({error})")
            if report.unsafe is None and template.alive():
                _log_report(report)
                return str(template.socket_path), None
            self._drop(wanted)
            if report.unsafe is None:
                return None, self._fail(wanted, "the template of its imports died")
            self._unsafe[report.unsafe] = str(report.why)
            logger.info(
                "not pre-importing %s: %s", report.unsafe, report.why, extra={"nbci_once": True}
            )
            wanted = self._cut(wanted)
        return (str(base.socket_path), None) if base.alive() else (None, None)

    def stop(self) -> None:
        for template in self._sets.values():
            template.stop()
        self._sets.clear()
        if self._base is not None:
            self._base.stop()
            self._on_process(self._base.pid, False)
            self._base = None

    def _ready_base(self, timeout: float) -> Template | None:
        self.start()
        base = self._base
        if base is None:
            return None
        try:
            report = base.wait_ready(timeout)
        except TemplateError as error:
            self._give_up(str(error))
            return None
        if report.unsafe is not None:
            self._give_up(f"cannot pre-import {report.unsafe}: {report.why}")
            return None
        if not base.alive():
            self._give_up("the template process died")
            return None
        return base

    def _cut(self, modules: tuple[str, ...]) -> tuple[str, ...]:
        """`modules` up to the first one known to be unsafe (what follows it may depend on it)."""
        for index, name in enumerate(modules):
            if name in self._unsafe:
                return modules[:index]
        return modules

    def _set(self, base: Template, modules: tuple[str, ...]) -> SetTemplate:
        template = self._sets.pop(modules, None)
        if template is None or not template.alive():
            while len(self._sets) >= KEPT_SET_TEMPLATES:
                self._sets.popitem(last=False)[1].stop()
            template = base.fork_set(modules)
        self._sets[modules] = template  # the most recently used last
        return template

    def _fail(self, modules: tuple[str, ...], why: str) -> str:
        self._drop(modules)
        self._failed[modules] = why
        return why

    def _drop(self, modules: tuple[str, ...]) -> None:
        template = self._sets.pop(modules, None)
        if template is not None:
            template.stop()

    def _give_up(self, reason: str) -> None:
        self.stop()
        self._given_up = True
        fall_back(reason)


def _log_report(report: TemplateReport) -> None:
    if report.skipped:
        skipped = "; ".join(f"{name}: {why}" for name, why in report.skipped.items())
        logger.debug("not pre-imported: %s", skipped)
    logger.debug("pre-imported: %s", ", ".join(report.imported))
