"""Forked kernels, plugged in the way Jupyter expects: a kernel provisioner.

`ForkProvisioner` is jupyter_client's local provisioner with one change: the
kernel process is forked from a template (`fork_server`) instead of started
with `Popen`, when the kernel's command is this interpreter running
`-m ipykernel_launcher`. Anything else (another language, another
interpreter or virtualenv, interpreter flags), or a template that fails,
gets the normal start. Everything after the launch (interrupt, shutdown,
restart, kill) is the local provisioner's own, on the forked process.

It is registered as the entry point `nbci-fork` (group
`jupyter_client.kernel_provisioners`) and, so that it works without
reinstalling, also directly in jupyter_client's provisioner factory. A
kernelspec selects it with `metadata.kernel_provisioner`; nbci's workers do
so through `ForkingKernelSpecManager` for every kernelspec that names no
provisioner of its own. nbclient and papermill drive it unchanged.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any, cast

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Unicode

from nbci.execute.fork_client import TemplateError, fall_back, request_fork

logger = logging.getLogger(__name__)

PROVISIONER_NAME = "nbci-fork"
_ENTRY_POINT_GROUP = "jupyter_client.kernel_provisioners"


class ForkProvisioner(LocalProvisioner):
    """The local provisioner, forking the kernel from a template when it can."""

    template_socket = Unicode("", config=True, help="The template process's Unix socket.")
    template_python = Unicode("", config=True, help="The interpreter the template runs.")

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        reason = self._cannot_fork(cmd, kwargs)
        if reason is None:
            try:
                return self._fork(cmd, kwargs)
            except TemplateError as error:
                reason = f"the template failed ({error})"
        fall_back(reason)
        connection: KernelConnectionInfo = await super().launch_kernel(cmd, **kwargs)
        return connection

    def _cannot_fork(self, cmd: list[str], kwargs: dict[str, Any]) -> str | None:
        """Why this kernel must start normally, or None."""
        if not self.template_socket:
            return "no template process"
        if not cmd or cmd[0] != (self.template_python or sys.executable):
            return f"the kernel runs another interpreter ({cmd[0] if cmd else 'none'})"
        if cmd[1:3] != ["-m", "ipykernel_launcher"]:
            return "the kernelspec's argv is not `python -m ipykernel_launcher …`"
        if kwargs.get("stdin") is not None:
            return "the kernel's stdin is given"
        return None

    def _fork(self, cmd: list[str], kwargs: dict[str, Any]) -> KernelConnectionInfo:
        env = dict(kwargs.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launcher sets it
        cwd = str(kwargs.get("cwd") or os.getcwd())
        stdin, writer = os.pipe()  # as jupyter_client's launcher gives it: a closed pipe
        os.close(writer)
        try:
            stdio = [_fd(kwargs.get("stdout"), 1), _fd(kwargs.get("stderr"), 2), stdin]
            process = request_fork(self.template_socket, cmd, env, cwd, stdio)
        finally:
            os.close(stdin)
        # Duck-typed: the local provisioner only polls, waits for and signals its process.
        self.process = cast("subprocess.Popen[bytes]", process)
        pid = process.pid
        self.pid = self.pgid = pid  # the kernel leads a session (and group) of its own
        self.cwd = cwd
        logger.debug("forked a kernel from the template: pid %s", pid)
        return self.connection_info


def _fd(stream: Any, default: int) -> int:
    if stream is None:
        return default
    return stream if isinstance(stream, int) else int(stream.fileno())


class ForkingKernelSpecManager(KernelSpecManager):
    """Kernelspecs that name no provisioner of their own get `ForkProvisioner`."""

    def __init__(self, template_socket: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._provisioner = {
            "provisioner_name": PROVISIONER_NAME,
            "config": {"template_socket": template_socket, "template_python": sys.executable},
        }

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        spec: KernelSpec = super().get_kernel_spec(kernel_name)
        spec.metadata.setdefault("kernel_provisioner", dict(self._provisioner))
        return spec


def register() -> None:
    """Make `nbci-fork` known to jupyter_client even when nbci's entry points are not installed."""
    from importlib.metadata import EntryPoint

    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    KernelProvisionerFactory.provisioners.setdefault(
        PROVISIONER_NAME,
        EntryPoint(PROVISIONER_NAME, f"{__name__}:ForkProvisioner", _ENTRY_POINT_GROUP),
    )
