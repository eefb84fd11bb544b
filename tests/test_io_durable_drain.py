"""Shutting a durable node down as a user does: SIGTERM (or Ctrl-C) drains, a second one stops at
once (docs/durability.md, "Shutdown"). Real processes on 127.0.0.1, a webhook receiver in the
test, bounded waits (CI has 2 shared cores).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import trio

from miyamoto.io.node import EXIT_STOPPED_UNDRAINED

from .io_raw_http import (
    ByteReader,
    RawMessage,
    RawReceiver,
    http_response,
    request_bytes,
    start_receiver,
)
from .test_io_cluster import call, until
from .test_io_durable import Node, Nodes, durable_nodes

SLOW_DELIVERY_S = 2.0
EXIT_WITHIN_S = 20.0
"""Generous: the drain itself takes SLOW_DELIVERY_S at most; the rest is a busy CI machine."""


async def enqueue(port: int, task: dict[str, object]) -> dict[str, object]:
    reply = await call(
        port, "POST", "/q", json.dumps(task).encode(), Content_Type="application/json"
    )
    assert reply["status"] == "scheduled", reply
    return dict(reply)


async def log_says(node: Node, text: str) -> None:
    await until(lambda: _contains(node, text), poll_s=0.05)


async def _contains(node: Node, text: str) -> bool:
    return text in node.log_path.read_text(errors="replace")


async def exit_status(nodes: Nodes, node: Node) -> int:
    assert node.process is not None
    with trio.fail_after(EXIT_WITHIN_S):
        return await node.process.wait()


async def refused(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return True
    await stream.aclose()
    return False


async def test_sigterm_during_a_slow_delivery_records_its_outcome(tmp_path: Path) -> None:
    async def slow(request: RawMessage, receiver: RawReceiver) -> bytes:
        await trio.sleep(SLOW_DELIVERY_S)
        return http_response(200)

    async with trio.open_nursery() as nursery, durable_nodes(tmp_path) as nodes:
        receiver = await start_receiver(nursery, slow)
        node = nodes.define()
        await nodes.start(node)
        await enqueue(node.port, {"url": f"http://127.0.0.1:{receiver.port}/", "id": "slow"})
        await receiver.wait_for(lambda: len(receiver.requests) == 1)  # under way now
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
        await log_says(node, "draining")
        assert await refused(node.port), "the listener is closed while the node drains"
        assert await exit_status(nodes, node) == 0
        log = node.log_path.read_text()
        assert "drained: 0 API requests answered, 1 deliveries finished and recorded" in log

        await nodes.start(node)
        task = await call(node.port, "GET", "/q/slow")
        assert (task["state"], task["attempts"], task["last_status"]) == ("succeeded", 1, 200)
        await trio.sleep(0.5)  # a second delivery, had the outcome been lost, would start now
        assert len(receiver.requests) == 1
        nursery.cancel_scope.cancel()


async def test_sigterm_with_an_enqueue_under_way_answers_it(tmp_path: Path) -> None:
    async with durable_nodes(tmp_path) as nodes:
        node = nodes.define()
        await nodes.start(node)
        body = json.dumps({"url": "http://127.0.0.1:9/", "id": "late", "countdown": 3600})
        data = request_bytes("POST", "/q", body.encode(), (("Content-Type", "application/json"),))
        stream = await trio.open_tcp_stream("127.0.0.1", node.port)
        async with stream:
            split = len(data) - 10
            await stream.send_all(data[:split])  # the request has begun
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
            await log_says(node, "draining")
            assert await refused(node.port)
            await stream.send_all(data[split:])
            response = await ByteReader(stream).read_message()
        assert response is not None
        assert response.status in (200, 201), response.json()
        assert response.json()["status"] == "scheduled"
        assert response.header("connection") == "close"
        assert await exit_status(nodes, node) == 0

        await nodes.start(node)
        assert (await call(node.port, "GET", "/q/late"))["state"] == "scheduled"


async def test_a_second_signal_stops_at_once_and_the_task_is_delivered_after_restart(
    tmp_path: Path,
) -> None:
    async def hang_first(request: RawMessage, receiver: RawReceiver) -> bytes:
        if len(receiver.requests) == 1:
            await trio.sleep_forever()
        return http_response(200)

    async with trio.open_nursery() as nursery, durable_nodes(tmp_path) as nodes:
        receiver = await start_receiver(nursery, hang_first)
        node = nodes.define()
        node.command += ["--drain-timeout", "600"]
        await nodes.start(node)
        await enqueue(node.port, {"url": f"http://127.0.0.1:{receiver.port}/", "id": "hung"})
        await receiver.wait_for(lambda: len(receiver.requests) == 1)
        assert node.process is not None
        node.process.send_signal(signal.SIGINT)
        await log_says(node, "draining")
        started_s = trio.current_time()
        node.process.send_signal(signal.SIGINT)
        assert await exit_status(nodes, node) == EXIT_STOPPED_UNDRAINED
        assert trio.current_time() - started_s < 5.0, "at once, not after the drain timeout"
        assert "stopping at once" in node.log_path.read_text()

        await nodes.start(node)
        with trio.fail_after(30):
            await receiver.wait_for(lambda: len(receiver.requests) == 2)  # made again
            await until(lambda: _state_is(node.port, "hung", "succeeded"))
        nursery.cancel_scope.cancel()


async def test_the_drain_timeout_cuts_off_a_delivery_that_does_not_finish(tmp_path: Path) -> None:
    async def hang(request: RawMessage, receiver: RawReceiver) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with trio.open_nursery() as nursery, durable_nodes(tmp_path) as nodes:
        receiver = await start_receiver(nursery, hang)
        node = nodes.define()
        node.command += ["--drain-timeout", "1"]
        await nodes.start(node)
        await enqueue(node.port, {"url": f"http://127.0.0.1:{receiver.port}/", "id": "stuck"})
        await receiver.wait_for(lambda: len(receiver.requests) == 1)
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
        assert await exit_status(nodes, node) == 0
        assert "0 requests and 1 deliveries cut off by the drain timeout" in (
            node.log_path.read_text()
        )
        nursery.cancel_scope.cancel()


async def _state_is(port: int, task_id: str, state: str) -> bool:
    return bool((await call(port, "GET", f"/q/{task_id}"))["state"] == state)


async def test_sigterm_closes_an_idle_keep_alive_connection_and_exits(tmp_path: Path) -> None:
    async with durable_nodes(tmp_path) as nodes:
        node = nodes.define()
        # Were the idle connection waited for, the node would exit only after these 600 s.
        node.command += ["--drain-timeout", "600"]
        await nodes.start(node)
        stream = await trio.open_tcp_stream("127.0.0.1", node.port)
        async with stream:
            await stream.send_all(request_bytes("GET", "/_health"))
            reader = ByteReader(stream)
            first = await reader.read_message()
            assert first is not None and first.status == 200
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
            with trio.fail_after(EXIT_WITHIN_S):
                assert await reader.read_message() is None, "closed without another answer"
        assert await exit_status(nodes, node) == 0
