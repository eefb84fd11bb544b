"""Durable tasks as a user runs them: one real node on 127.0.0.1 with its --data-dir, killed
with `kill -9` and started again with the same command (docs/durability.md, phase 2).

Every acknowledged task is delivered after the restart, none twice; finished tasks and dead
letters are still there, and so is a queue's pause. The webhook receiver runs in the test, on
loopback. Every wait is bounded (CI has 2 shared cores).
"""

from __future__ import annotations

import collections
import itertools
import json
import signal
from pathlib import Path

import trio

from .io_raw_http import RawMessage, RawReceiver, always, http_response, start_receiver
from .test_io_cluster import call, until
from .test_io_durable import Node, durable_nodes

TASKS = 1000
BATCH = 100
COUNTDOWN_S = 4.0
"""Long enough that no delivery is in flight when the node is killed right after the enqueues
(an attempt in flight at a crash is made again: at-least-once), short enough for a quick test."""


async def answer(request: RawMessage, receiver: RawReceiver) -> bytes:
    # The dead letter's webhook always fails; every other one succeeds.
    return http_response(500 if request.header("x-task-id") == "dead" else 200)


async def enqueue(port: int, queue: str, tasks: list[dict[str, object]]) -> list[dict[str, object]]:
    reply = await call(
        port, "POST", f"/{queue}", json.dumps(tasks).encode(), Content_Type="application/json"
    )
    assert isinstance(reply, list), reply
    return reply


async def test_acknowledged_tasks_survive_kill_9_and_are_delivered_once(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery, durable_nodes(tmp_path) as nodes:
        receiver = await start_receiver(nursery, answer)
        url = f"http://127.0.0.1:{receiver.port}/work"
        node = nodes.define()
        await nodes.start(node)
        # A task that succeeds and a dead letter, both finished before the crash.
        await enqueue(node.port, "q", [{"url": url, "id": "done"}])
        await enqueue(node.port, "q", [{"url": url, "id": "dead", "retry_limit": 0}])
        await until(lambda: finished(node.port, "dead", "failed"))
        await until(lambda: finished(node.port, "done", "succeeded"))
        assert (await call(node.port, "POST", "/held/_pause"))["_status"] == 200
        acknowledged = []
        for start in range(0, TASKS, BATCH):
            batch = [
                {"url": url, "id": f"t{n}", "countdown": COUNTDOWN_S, "params": {"n": str(n)}}
                for n in range(start, start + BATCH)
            ]
            replies = await enqueue(node.port, "q", batch)
            acknowledged += [r["id"] for r in replies if r["status"] == "scheduled"]
        assert len(acknowledged) == TASKS
        await nodes.stop(node, signal.SIGKILL)
        assert delivered(receiver) == collections.Counter({"done": 1, "dead": 1})

        await nodes.start(node)  # the same command, the same data directory
        assert (await call(node.port, "GET", "/q/done"))["state"] == "succeeded"
        dead = await call(node.port, "GET", "/q?state=failed")
        assert [t["id"] for t in dead["tasks"]] == ["dead"], dead
        assert (await call(node.port, "GET", "/q/dead"))["last_status"] == 500
        assert (await call(node.port, "GET", "/held"))["paused_on"] == [node.node_id]
        with trio.fail_after(60):
            await receiver.wait_for(lambda: len(delivered(receiver)) == TASKS + 2)
            await trio.sleep(0.5)  # a second delivery of any of them would come now
        counts = delivered(receiver)
        assert set(counts) == {*acknowledged, "done", "dead"}
        assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
        assert (await call(node.port, "GET", "/q/t7"))["state"] == "succeeded"
        nursery.cancel_scope.cancel()


CLUSTER_ACKNOWLEDGED_MIN = 600
"""Tasks acknowledged across the cluster before the kill: the load is still running then."""
CLUSTER_BATCH = 20


async def test_three_nodes_killed_during_enqueue_load_deliver_every_acknowledged_task(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery, durable_nodes(tmp_path) as nodes:
        receiver = await start_receiver(nursery, always(200))
        url = f"http://127.0.0.1:{receiver.port}/work"
        first = nodes.define()
        everyone = [first, nodes.define(seed=first), nodes.define(seed=first)]
        for node in everyone:
            await nodes.start(node)
        await nodes.converged(everyone)
        acknowledged: set[str] = set()

        async def load(node: Node, prefix: str) -> None:
            for start in itertools.count(0, CLUSTER_BATCH):
                batch = [
                    {"url": url, "id": f"{prefix}-{n}", "countdown": COUNTDOWN_S}
                    for n in range(start, start + CLUSTER_BATCH)
                ]
                try:
                    replies = await call(
                        node.port,
                        "POST",
                        "/q",
                        json.dumps(batch).encode(),
                        Content_Type="application/json",
                    )
                except (OSError, ValueError, trio.BrokenResourceError):
                    return  # killed: what it had not answered was not acknowledged
                if isinstance(replies, list):  # else refused as a whole (no leader yet): 503
                    acknowledged.update(r["id"] for r in replies if r["status"] == "scheduled")

        async def enough() -> bool:
            return len(acknowledged) >= CLUSTER_ACKNOWLEDGED_MIN

        async with trio.open_nursery() as loads:
            for index, node in enumerate(everyone):
                loads.start_soon(load, node, f"n{index}")
            await until(enough, poll_s=0.01)
            before = await nodes.views(everyone)
            for node in everyone:  # under load: enqueues under way on every node
                assert node.process is not None
                node.process.kill()
        for node in everyone:
            assert node.process is not None
            await node.process.wait()

        for node in everyone:
            await nodes.start(node)  # the same first commands
        after = await nodes.converged(everyone)
        with trio.fail_after(60):
            await receiver.wait_for(lambda: acknowledged <= set(delivered(receiver)))
        print(f"{len(acknowledged)} tasks acknowledged before the kill, all delivered")
        nursery.cancel_scope.cancel()
    assert {v["epoch"] for v in after.values()} == {v["epoch"] for v in before.values()}, (
        "the same members as at the kill: nobody was removed and let in again"
    )


def delivered(receiver: RawReceiver) -> collections.Counter[str]:
    return collections.Counter(r.header("x-task-id") or "?" for r in receiver.requests)


async def finished(port: int, task_id: str, state: str) -> bool:
    return bool((await call(port, "GET", f"/q/{task_id}"))["state"] == state)
