"""The kernel client is ready when IOPub has caught up, without jupyter_client's fixed wait.

The client talks to scripted channels here: each `get_msg` takes the next
scripted message, or raises `Empty` (nothing arrived within its timeout).
Real kernels use it in every kernel test.
"""

from __future__ import annotations

import asyncio
from collections import deque
from queue import Empty
from typing import Any

import pytest

from nbci.execute.kernel_client import IOPUB_QUIET_S, ReadyKernelClient

QUIET = Empty
"""Scripted: nothing arrives within the timeout."""


class Channel:
    def __init__(self, script: list[Any]) -> None:
        self.script = deque(script)
        self.timeouts: list[float | None] = []

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        self.timeouts.append(timeout)
        item: Any = self.script.popleft() if self.script else QUIET
        if item is QUIET:
            raise Empty
        return dict(item)


class Scripted(ReadyKernelClient):
    """The client, with its channels, requests and liveness scripted."""

    def __init__(self, shell: list[Any], iopub: list[Any], *, alive: bool = True) -> None:
        super().__init__()
        self.shell = Channel(shell)
        self.iopub = Channel(iopub)
        self.alive = alive
        self.requests: list[str] = []
        self.handled: list[dict[str, Any]] = []

    @property
    def shell_channel(self) -> Channel:
        return self.shell

    @property
    def iopub_channel(self) -> Channel:
        return self.iopub

    def kernel_info(self) -> str:
        self.requests.append(f"request-{len(self.requests) + 1}")
        return self.requests[-1]

    async def _async_is_alive(self) -> bool:
        return self.alive

    def _handle_kernel_info_reply(self, msg: dict[str, Any]) -> None:
        self.handled.append(msg)


def reply(request: str) -> dict[str, Any]:
    return {"msg_type": "kernel_info_reply", "parent_header": {"msg_id": request}, "content": {}}


def status(state: str, request: str | None) -> dict[str, Any]:
    parent = {"msg_id": request} if request else {}
    return {"msg_type": "status", "parent_header": parent, "content": {"execution_state": state}}


def stream(text: str) -> dict[str, Any]:
    return {"msg_type": "stream", "parent_header": {}, "content": {"text": text}}


def wait(client: Scripted, timeout: float | None = 60) -> None:
    asyncio.run(client.wait_for_ready(timeout=timeout))


def test_ready_at_the_idle_status_of_the_answered_request() -> None:
    client = Scripted(
        shell=[reply("request-1")],
        iopub=[status("starting", None), status("busy", "request-1"), status("idle", "request-1")],
    )
    wait(client)
    assert client.requests == ["request-1"] and client.handled == [reply("request-1")]
    assert len(client.iopub.timeouts) == 3  # stopped at the idle status: no quiet period waited


def test_an_idle_status_of_another_request_is_not_enough() -> None:
    client = Scripted(
        shell=[reply("request-1")],
        iopub=[status("idle", "earlier"), status("idle", "request-1"), stream("later")],
    )
    wait(client)
    assert len(client.iopub.timeouts) == 2 and list(client.iopub.script) == [stream("later")]


def test_a_silent_iopub_is_not_connected_yet_and_the_request_is_sent_again() -> None:
    client = Scripted(
        shell=[reply("request-1"), reply("request-2")],
        iopub=[QUIET, status("busy", "request-2"), status("idle", "request-2")],
    )
    wait(client)
    assert client.requests == ["request-1", "request-2"]
    assert client.handled == [reply("request-2")]


def test_a_kernel_that_publishes_no_idle_status_is_ready_once_iopub_is_quiet() -> None:
    client = Scripted(shell=[reply("request-1")], iopub=[stream("hello"), QUIET])
    wait(client)
    assert client.handled == [reply("request-1")]
    assert client.iopub.timeouts == [IOPUB_QUIET_S, IOPUB_QUIET_S]


def test_an_unanswered_request_is_sent_again() -> None:
    client = Scripted(
        shell=[QUIET, {"msg_type": "status", "parent_header": {}}, reply("request-3")],
        iopub=[status("idle", "request-3")],
    )
    wait(client)
    assert client.requests == ["request-1", "request-2", "request-3"]


def test_a_dead_kernel_and_a_kernel_that_never_answers_are_errors() -> None:
    with pytest.raises(RuntimeError, match="died before replying"):
        wait(Scripted(shell=[QUIET], iopub=[], alive=False))
    with pytest.raises(RuntimeError, match="didn't respond in 0 seconds"):
        wait(Scripted(shell=[QUIET], iopub=[]), timeout=0)


class Chatty(Channel):
    """IOPub of a kernel that keeps publishing (its idle status only after very long)."""

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        self.timeouts.append(timeout)
        if len(self.timeouts) > 200_000:
            return status("idle", "request-1")
        return stream("tick")


def test_a_kernel_that_keeps_publishing_is_not_ready_past_the_timeout() -> None:
    """Issue 22: the IOPub wait ends at the start-up timeout, not when the kernel goes quiet."""
    client = Scripted(shell=[reply("request-1")], iopub=[])
    client.iopub = Chatty([])
    with pytest.raises(RuntimeError, match="didn't respond in 0 seconds"):
        wait(client, timeout=0.05)
    assert len(client.iopub.timeouts) < 200_000
