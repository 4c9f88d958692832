"""A kernel client that is ready as soon as the kernel's IOPub has caught up.

jupyter_client's `wait_for_ready` ends by reading IOPub until it has been
silent for 0.2 s, so every notebook waited at least that long for a kernel
that had answered already. Here the wait ends when the kernel says it is
idle after the `kernel_info` request it answered: the messaging protocol
has every kernel publish that status, after everything it published before.
A kernel that never does is treated as jupyter_client treats it: ready once
IOPub has delivered anything and then gone quiet.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient

IOPUB_QUIET_S = 0.2
"""jupyter_client's wait: IOPub silent this long means it has nothing more (or is not connected)."""
REPLY_WAIT_S = 1.0
"""How long one `kernel_info` request waits for its reply before another is sent."""


class ReadyKernelClient(AsyncKernelClient):
    """`AsyncKernelClient` with a `wait_for_ready` that does not end with a fixed wait."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=REPLY_WAIT_S)
            except Empty:
                pass
            else:
                if reply["msg_type"] == "kernel_info_reply" and await self._iopub_caught_up(
                    reply["parent_header"].get("msg_id"), deadline
                ):
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    async def _iopub_caught_up(self, request_id: Any, deadline: float) -> bool:
        """Read IOPub up to the kernel's idle status after `request_id`.

        False when IOPub delivered nothing: its subscription may not be
        connected yet, and the request is sent again; also when the start-up
        timeout passes while the kernel keeps publishing (the caller raises).
        """
        received = False
        while time.monotonic() <= deadline:
            try:
                message: dict[str, Any] = await self.iopub_channel.get_msg(timeout=IOPUB_QUIET_S)
            except Empty:
                return received
            received = True
            if (
                message["msg_type"] == "status"
                and message["content"].get("execution_state") == "idle"
                and message["parent_header"].get("msg_id") == request_id
            ):
                return True
        return False
