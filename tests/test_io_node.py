"""A whole node on 127.0.0.1, end to end: enqueue over raw HTTP, receive the webhook on a raw
socket standing in for `nc -l`, retries after a 500; and the daemon as a command."""

from __future__ import annotations

import json
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio

from miyamoto import __version__
from miyamoto.io.node import serve_node
from miyamoto.io.runtime import wall_clock_ms
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.retry import RetryPolicy

from .io_raw_http import (
    RawMessage,
    RawReceiver,
    always,
    exchange,
    http_response,
    request_bytes,
    start_receiver,
)

TEST_TIMEOUT_S = 10
FORM = "application/x-www-form-urlencoded"
REPO = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def running_node(nursery: trio.Nursery, **config: Any) -> AsyncIterator[int]:
    """A node on a free port; yields the port."""
    node_config = NodeConfig(node_id="127.0.0.1:0", **config)
    port: int = await nursery.start(partial(serve_node, node_config, rng=random.Random(3)))
    yield port


async def call(port: int, method: str, target: str, body: bytes = b"", **headers: str) -> Any:
    """One API request on its own connection; the JSON reply (with `_status` added)."""
    header_list = tuple((k.replace("_", "-"), v) for k, v in headers.items())
    header_list += (("Connection", "close"),)
    (response,) = await exchange(port, request_bytes(method, target, body, header_list))
    payload = response.json()
    if isinstance(payload, dict):
        payload["_status"] = response.status
    return payload


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll `condition`: a node's state has no event a test could await."""
    while not await condition():
        await trio.sleep(0.01)


async def test_the_form_walkthrough_delivers_the_task_to_a_raw_receiver() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, always(200, b"thanks"))
            async with running_node(nursery) as port:
                url = f"http://127.0.0.1:{receiver.port}/worker"
                body = f"task.url={quote(url)}&task.countdown=0.2&foo=bar".encode()
                enqueued_ms = wall_clock_ms()
                reply = await call(port, "POST", "/queue", body, Content_Type=FORM)
                await receiver.wait_for(lambda: len(receiver.requests) == 1)
                arrived_ms = wall_clock_ms()
                task_url = f"/queue/{reply['id']}"

                async def succeeded() -> bool:
                    return bool((await call(port, "GET", task_url))["state"] == "succeeded")

                await eventually(succeeded)
                task = await call(port, "GET", task_url)
            nursery.cancel_scope.cancel()
    assert reply["_status"] == 200 and reply["status"] == "scheduled"
    (request,) = receiver.requests
    assert request.start == "POST /worker HTTP/1.1"
    assert request.body == b"foo=bar"
    assert request.header("host") == f"127.0.0.1:{receiver.port}"
    assert request.header("content-type") == FORM
    assert request.header("content-length") == "7"
    assert request.header("x-task-id") == reply["id"]
    assert request.header("x-task-queue") == "queue"
    assert request.header("x-task-retry-count") == "0"
    eta_ms = round(float(request.header("x-task-eta") or 0) * 1000)
    assert enqueued_ms + 200 <= eta_ms <= arrived_ms  # the countdown, from when the node got it
    assert request.header("user-agent") == f"miyamoto/{__version__}"
    assert arrived_ms >= enqueued_ms + 200  # never early
    assert task["attempts"] == 1


async def test_the_json_form_delivers_params_form_encoded() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, always(200))
            async with running_node(nursery) as port:
                task = {
                    "url": f"http://127.0.0.1:{receiver.port}/worker",
                    "params": {"foo": "bar"},
                }
                reply = await call(
                    port,
                    "POST",
                    "/queue",
                    json.dumps(task).encode(),
                    Content_Type="application/json; charset=utf-8",
                )
                await receiver.wait_for(lambda: len(receiver.requests) == 1)
            nursery.cancel_scope.cancel()
    assert reply["status"] == "scheduled"
    (request,) = receiver.requests
    assert request.start == "POST /worker HTTP/1.1"
    assert request.body == b"foo=bar"
    assert request.header("content-type") == FORM
    assert request.header("x-task-id") == reply["id"]


async def test_a_receiver_answering_500_then_200_gets_two_attempts() -> None:
    async def fail_once(request: RawMessage, receiver: RawReceiver) -> bytes:
        return http_response(500 if len(receiver.requests) == 1 else 200, b"attempt")

    retry = RetryPolicy(min_backoff_ms=50, max_backoff_ms=100)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, fail_once)
            async with running_node(nursery, retry=retry) as port:
                url = f"http://127.0.0.1:{receiver.port}/w"
                body = f"task.url={quote(url)}&n=1".encode()
                reply = await call(port, "POST", "/jobs", body, Content_Type=FORM)
                await receiver.wait_for(lambda: len(receiver.requests) == 2)
                task_url = f"/jobs/{reply['id']}"

                async def succeeded() -> bool:
                    return bool((await call(port, "GET", task_url))["state"] == "succeeded")

                await eventually(succeeded)
                task = await call(port, "GET", task_url)
            nursery.cancel_scope.cancel()
    first, second = receiver.requests
    assert first.header("x-task-id") == second.header("x-task-id") == reply["id"]
    assert [first.header("x-task-retry-count"), second.header("x-task-retry-count")] == ["0", "1"]
    assert task["attempts"] == 2
    assert len(receiver.requests) == 2  # success ends it


async def test_bad_input_gets_a_json_error_from_the_node() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            async with running_node(nursery) as port:
                missing = await call(port, "POST", "/queue", b"foo=bar", Content_Type=FORM)
                health = await call(port, "GET", "/_health")
            nursery.cancel_scope.cancel()
    assert missing["_status"] == 400 and missing["status"] == "error"
    assert health["_status"] == 200


async def test_the_daemon_prints_its_url_serves_and_stops_cleanly_on_sigterm() -> None:
    command = [sys.executable, "-m", "miyamoto.io.node", "127.0.0.1", "127.0.0.1", "--port", "0"]
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    command,
                    cwd=REPO,
                    stderr=subprocess.PIPE,
                    check=False,
                )
            )
            assert process.stderr is not None
            # The start line, timestamped: "2026-...Z INFO miyamoto: miyamoto 0.1.0 serving on
            # http://127.0.0.1:PORT (node ..., ...)". The node's first timer may log that it
            # founded its cluster just before it (both within the first few lines).
            start_line = re.compile(
                rf"^\S+Z INFO miyamoto: miyamoto {re.escape(__version__)} serving on "
                r"http://127\.0\.0\.1:(\d+) "
            )
            lines: list[str] = []
            serving = None
            while serving is None:
                assert len(lines) < 5, f"no start line among the first lines: {lines}"
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await process.stderr.receive_some(1)
                    assert chunk, f"the daemon exited before serving: {lines}"
                    line += chunk
                lines.append(line.decode())
                serving = start_line.search(lines[-1])
            port = int(serving[1])
            health = await call(port, "GET", "/_health")
            process.send_signal(signal.SIGTERM)
            rest = await process.stderr.receive_some(4096)
            returncode = await process.wait()
    assert health["_status"] == 200
    assert b"SIGTERM, shutting down" in rest
    assert returncode == 0


def test_the_daemon_says_why_it_cannot_serve() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "miyamoto.io.node", "127.0.0.1", "127.0.0.1", f"--port={port}",
             "--in-memory"],
            cwd=REPO,
            capture_output=True,
            timeout=TEST_TIMEOUT_S,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr.decode()
