"""The run's templates: the base one (started by the parent, shared by the workers), and one
per set of imports, which each worker asks for and cuts when unsafe.

Each notebook's kernel is forked from a template that imported exactly the
modules that notebook imports first (`preload.modules_for`), in its order: a
*set template* forked from the run's base template (which imported only the
kernel machinery once for every worker). The base forks each set once and
hands it to every worker that asks for it; it keeps the ones the workers
asked for last (`fork_server._set_template`: at most one per worker). A
module that makes a template unsafe is cut, with what follows it, from every
set of this worker (the template's report is the same for every worker, so
they all cut the same); a set template that fails means a fresh kernel for
that notebook only.

Forking needs Linux: fork without exec is unsafe on macOS (system
frameworks; CPython itself defaults to `spawn` there) and absent on Windows,
and a forked kernel's nanny is a child subreaper (`fork_server._nanny`).
Elsewhere kernels start normally.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from nbci.execute.fork_client import (
    BaseTemplate,
    SetTemplate,
    Template,
    TemplateError,
    TemplateReport,
    fall_back,
)

if TYPE_CHECKING:  # pragma: no cover
    from nbci.execute.settings import WorkerSettings

logger = logging.getLogger(__name__)


def start_template(settings: WorkerSettings) -> tuple[Template, WorkerSettings] | None:
    """Start the run's base template (in the parent, before its workers): it, and the
    settings that send it to the workers; or None (said why).

    The template is started with the kernels' environment
    (`kernels.kernel_environment`), which the workers are sent to give every
    kernel, so that a kernel's environment is the one the template imported
    with; each forked kernel sets its own JPY_PARENT_PID (its nanny's pid).
    Only the standard library and `fork_client` are needed here: the parent
    imports nothing of Jupyter's.
    """
    if settings.preload is None:
        return None
    if not sys.platform.startswith("linux"):
        fall_back(f"no safe fork on {sys.platform}")
        return None
    from nbci.execute.kernels import kernel_environment

    environment = kernel_environment(settings.kernel_threads, settings.hidden_variables)
    own = {**environment, "JPY_PARENT_PID": str(os.getpid())}
    try:
        template = Template(settings.scratch, own, settings.root, settings.notebook_folders)
    except OSError as error:
        fall_back(f"the template process cannot start ({error})")
        return None
    shared = replace(settings, template=template.shared(), kernel_environment=environment)
    return template, shared


class TemplateKeeper:
    """Hands out the socket of a ready, safe template for a set of modules (in a worker)."""

    def __init__(self, base: BaseTemplate) -> None:
        self._base = base
        self._unsafe: dict[str, str] = {}
        """Modules that made a template unsafe (→ why): never pre-imported again here."""
        self._failed: dict[tuple[str, ...], str] = {}
        """Sets whose template failed (→ why): their notebooks start fresh without trying again."""
        self._given_up = False

    def socket(self, modules: Sequence[str], timeout: float) -> tuple[str | None, str | None]:
        """The socket of a template of `modules` ready to fork, or None and why not.

        The why is None when no template is used by anyone in this worker
        (said once, `fall_back`); otherwise it is this notebook's reason.
        The base is asked every time, also for a set it gave before: that
        keeps the set this worker forks from next among those it keeps.
        """
        base = self._ready_base(timeout)
        if base is None:
            return None, None
        wanted = self._cut(tuple(modules))
        while wanted:
            if wanted in self._failed:
                return None, self._failed[wanted]
            try:
                template, report = self._ready_set(base, wanted, timeout)
            except TemplateError as error:
                return None, self._fail(wanted, f"the template of its imports failed ({error})")
            if report.unsafe is None and template.alive():
                _log_report(report)
                return str(template.socket_path), None
            if report.unsafe is None:
                return None, self._fail(wanted, "the template of its imports died")
            self._unsafe[report.unsafe] = str(report.why)
            logger.info(
                "not pre-importing %s: %s", report.unsafe, report.why, extra={"nbci_once": True}
            )
            wanted = self._cut(wanted)
        return (str(base.socket_path), None) if base.alive() else (None, None)

    def _ready_set(
        self, base: BaseTemplate, modules: tuple[str, ...], timeout: float
    ) -> tuple[SetTemplate, TemplateReport]:
        """The set template of `modules` and its report. One that another request had forked
        and that ended before it answered (killed, or retired by the base) is asked for again,
        once; one forked for this request that fails is this set's failure."""
        template = base.fork_set(modules)
        try:
            report = template.wait_ready(timeout)
        except TemplateError:
            if template.new:
                raise
            template = base.fork_set(modules)
            report = template.wait_ready(timeout)
        if not template.new and not template.alive():
            template = base.fork_set(modules)
            report = template.wait_ready(timeout)
        return template, report

    def _ready_base(self, timeout: float) -> BaseTemplate | None:
        if self._given_up:
            return None
        base = self._base
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

    def _fail(self, modules: tuple[str, ...], why: str) -> str:
        self._failed[modules] = why
        return why

    def _give_up(self, reason: str) -> None:
        self._given_up = True
        fall_back(reason)


def _log_report(report: TemplateReport) -> None:
    if report.skipped:
        skipped = "; ".join(f"{name}: {why}" for name, why in report.skipped.items())
        logger.debug("not pre-imported: %s", skipped)
    logger.debug("pre-imported: %s", ", ".join(report.imported))
