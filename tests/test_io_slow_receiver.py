"""One slow receiver cannot starve the others (issue 10), on real sockets on 127.0.0.1: a node
(the logic, the runtime and the webhook client) delivering to a receiver that never answers and
to one that answers at once, and counting as attempts only the requests it really sent."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import trio

from miyamoto.io.runtime import NodeRuntime, wall_clock_ms
from miyamoto.io.webhook_client import WebhookClient
from miyamoto.logic.http import HttpRequest
from miyamoto.logic.limits import Limits
from miyamoto.logic.node import Node, NodeConfig
from miyamoto.logic.queue_config import QueueConfig, QueuesConfig
from miyamoto.logic.task import Task, TaskState

from .io_raw_http import RawMessage, RawReceiver, always, start_receiver

TASKS_EACH = 1000
CAP = Limits().connections_per_destination_max
TEST_TIMEOUT_S = 120
"""Far more than the few seconds it takes: CI runs on two busy cores."""


async def never_answer(request: RawMessage, receiver: RawReceiver) -> None:
    await trio.sleep_forever()  # reads each request, answers none, keeps the connection


def node_config(delivery_deadline_ms: int) -> NodeConfig:
    default = QueueConfig(delivery_deadline_ms=delivery_deadline_ms)
    return NodeConfig(node_id="127.0.0.1:1", queues=QueuesConfig(default=default, queues=()))


async def enqueue(runtime: NodeRuntime, tasks: list[dict[str, object]]) -> None:
    """Enqueues `tasks` (JSON task objects) into queue `q`."""
    for first in range(0, len(tasks), 500):  # batches of 500: under the batch limit
        body = json.dumps(tasks[first : first + 500]).encode()
        request = HttpRequest(
            method="POST",
            target="/q",
            headers=(("content-type", "application/json"),),
            body=body,
        )
        response = await runtime.handle_api_request(request)
        assert response.status == 200, response.body


def tasks_to(node: Node, port: int) -> list[Task]:
    suffix = f":{port}/w"
    return [t for t in node.tasks.store.tasks("q") if t.url.endswith(suffix)]


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        await trio.sleep(0.02)


async def test_a_receiver_that_never_answers_does_not_delay_a_fast_one_in_the_same_queue() -> None:
    node = Node(node_config(600_000), random.Random(1), wall_clock_ms())
    client = WebhookClient(connections_per_destination_max=CAP)
    runtime = NodeRuntime(node, deliver=client.deliver)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            slow = await start_receiver(nursery, never_answer)
            fast = await start_receiver(nursery, always(200))
            await nursery.start(runtime.run)
            eta = (wall_clock_ms() + 1000) / 1000  # all at the same time, once all are in
            slow_url = f"http://127.0.0.1:{slow.port}/w"
            fast_url = f"http://127.0.0.1:{fast.port}/w"
            # Due at the same millisecond, tasks fire in id order: every slow one comes first,
            # enough to take all 512 of the node's slots if nothing held them to their share.
            tasks = [{"url": slow_url, "eta": eta, "id": f"a{i}"} for i in range(TASKS_EACH)]
            tasks += [{"url": fast_url, "eta": eta, "id": f"b{i}"} for i in range(TASKS_EACH)]
            await enqueue(runtime, tasks)
            await wait_until(lambda: len(fast.requests) >= TASKS_EACH)
            await wait_until(
                lambda: all(t.state is TaskState.SUCCEEDED for t in tasks_to(node, fast.port))
            )
            # The slow ones still hang (their deadline is 10 min): they hold their share only.
            slow_tasks = tasks_to(node, slow.port)
            states = [t.state for t in slow_tasks]
            assert states.count(TaskState.DELIVERING) == CAP
            assert states.count(TaskState.SCHEDULED) == TASKS_EACH - CAP
            assert len(slow.requests) == CAP
            assert slow.connections_open_max == CAP
            assert all(t.attempts == 0 for t in slow_tasks)  # none waiting was an attempt
            fast_tasks = tasks_to(node, fast.port)
            assert len(fast_tasks) == TASKS_EACH
            assert all(t.attempts == 1 for t in fast_tasks)  # none timed out, none retried
            assert len(fast.requests) == TASKS_EACH
            nursery.cancel_scope.cancel()
    node.check_invariants()


async def test_a_slow_receivers_attempts_are_the_requests_it_was_sent() -> None:
    # A 1 s deadline: the first CAP time out, are retried, and the next start; those waiting
    # for a slot meanwhile were never sent, so they have no attempt.
    node = Node(node_config(1000), random.Random(2), wall_clock_ms())
    client = WebhookClient(connections_per_destination_max=CAP)
    runtime = NodeRuntime(node, deliver=client.deliver)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            slow = await start_receiver(nursery, never_answer)
            await nursery.start(runtime.run)
            url = f"http://127.0.0.1:{slow.port}/w"
            await enqueue(runtime, [{"url": url} for _ in range(4 * CAP)])
            await wait_until(lambda: len(slow.requests) >= 2 * CAP)
            # One snapshot (no await in between): every attempt counted was received; a request
            # received but not yet counted is one still in flight.
            slow_tasks = tasks_to(node, slow.port)
            attempts = sum(t.attempts for t in slow_tasks)
            delivering = sum(t.state is TaskState.DELIVERING for t in slow_tasks)
            assert attempts <= len(slow.requests) <= attempts + delivering
            assert attempts >= CAP
            assert delivering <= CAP
            nursery.cancel_scope.cancel()
    node.check_invariants()
