"""A worker's template process: started once, replaced when unsafe, given up when it fails.

Forking needs Linux: the forked kernel must be adopted by the worker (a
child subreaper) so that the worker reaps it and knows its exit code, and
fork without exec is unsafe on macOS (system frameworks; CPython itself
defaults to `spawn` there) and absent on Windows. Elsewhere kernels start
normally.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nbci.execute.fork_client import UNSAFE_RETRIES, Template, TemplateError, TemplateReport
from nbci.execute.provisioner import fall_back

logger = logging.getLogger(__name__)


class TemplateKeeper:
    """Hands out the socket of a ready, safe template, or None (the kernel then starts normally)."""

    def __init__(
        self,
        folder: Path,
        environment: Mapping[str, str],
        modules: Sequence[str],
        project: Path,
        on_process: Callable[[int, bool], None],
    ) -> None:
        self._folder = folder
        self._environment = environment
        self._modules = list(modules)
        self._project = project
        self._on_process = on_process
        """Told each template pid as it starts (True) and stops (False)."""
        self._template: Template | None = None
        self._given_up = False
        self._retries = UNSAFE_RETRIES

    @staticmethod
    def supported(subreaper: bool) -> str | None:
        """Why kernels cannot be forked here, or None."""
        if not sys.platform.startswith("linux"):
            return f"no safe fork on {sys.platform}"
        if not subreaper:
            return "this process cannot adopt forked kernels (no child subreaper)"
        return None

    def start(self) -> None:
        """Start the template in the background (it imports while the worker goes on)."""
        if self._template is None and not self._given_up:
            try:
                self._template = Template(
                    self._folder, self._environment, self._modules, self._project
                )
            except OSError as error:
                self._give_up(f"the template process cannot start ({error})")
                return
            self._on_process(self._template.pid, True)

    def socket(self, timeout: float) -> str | None:
        """The socket of a template ready to fork, waiting for it to finish importing."""
        while not self._given_up:
            self.start()
            template = self._template
            if template is None:
                break
            try:
                report = template.wait_ready(timeout)
            except TemplateError as error:
                self._give_up(str(error))
                break
            if report.unsafe is None and template.alive():
                _log_report(report)
                return str(template.socket_path)
            if report.unsafe is None:
                self._give_up("the template process died")
            else:
                self._drop_unsafe(report.unsafe, str(report.why))
        return None

    def stop(self) -> None:
        if self._template is not None:
            self._template.stop()
            self._on_process(self._template.pid, False)
            self._template = None

    def _drop_unsafe(self, module: str, why: str) -> None:
        self.stop()
        self._retries -= 1
        if module not in self._modules or self._retries < 0:
            self._give_up(f"cannot pre-import {module}: {why}")
            return
        logger.info("not pre-importing %s: %s", module, why, extra={"nbci_once": True})
        self._modules.remove(module)

    def _give_up(self, reason: str) -> None:
        self.stop()
        self._given_up = True
        fall_back(reason)


def _log_report(report: TemplateReport) -> None:
    if report.skipped:
        skipped = "; ".join(f"{name}: {why}" for name, why in report.skipped.items())
        logger.debug("not pre-imported: %s", skipped)
    logger.debug("pre-imported: %s", ", ".join(report.imported))
