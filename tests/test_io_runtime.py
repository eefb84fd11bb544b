"""The runtime with fake nodes: timer firing and re-arming, responses routed, deliveries run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from miyamoto.io.runtime import NodeRuntime, monotonic_clock_ms, wall_clock_ms
from miyamoto.logic.actions import Action, OutboundRequest, SendApiResponse, StartDelivery
from miyamoto.logic.events import (
    ApiRequestReceived,
    DeliveryError,
    DeliveryFailed,
    DeliveryResponded,
    Event,
    TimerExpired,
)
from miyamoto.logic.http import HttpRequest, json_response

TEST_TIMEOUT_S = 10


@dataclass
class FakeNode:
    """Records every event; answers requests; its deadline and next actions are set by tests."""

    deadline_ms: int | None = None
    events: list[tuple[Event, int]] = field(default_factory=list)
    next_actions: list[Action] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)
    mono_readings_ms: list[int | None] = field(default_factory=list)

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        self.events.append((event, now_ms))
        self.mono_readings_ms.append(mono_ms)
        self.changed.set()
        self.changed = trio.Event()
        actions, self.next_actions = self.next_actions, []
        match event:
            case ApiRequestReceived(request_id=request_id, request=request):
                response = json_response(200, {"target": request.target})
                actions.append(SendApiResponse(request_id=request_id, response=response))
            case TimerExpired():
                self.deadline_ms = None
            case _:
                pass
        return actions

    def next_deadline_ms(self) -> int | None:
        return self.deadline_ms

    async def wait_for(self, kind: type[object]) -> tuple[Event, int]:
        while True:
            for event, now_ms in self.events:
                if isinstance(event, kind):
                    return event, now_ms
            await self.changed.wait()


async def no_deliveries(start: StartDelivery) -> DeliveryResponded:
    raise AssertionError("no delivery expected")


def start_delivery(delivery_id: int) -> StartDelivery:
    request = OutboundRequest(
        scheme="http", host="127.0.0.1", port=9, method="POST", target="/w", headers=(), body=b""
    )
    return StartDelivery(
        delivery_id=delivery_id, request=request, timeout_ms=1000, excerpt_bytes_max=10
    )


async def test_the_timer_fires_at_the_nodes_deadline() -> None:
    deadline_ms = wall_clock_ms() + 50
    node = FakeNode(deadline_ms=deadline_ms)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(NodeRuntime(node, deliver=no_deliveries).run)
            _, fired_ms = await node.wait_for(TimerExpired)
            nursery.cancel_scope.cancel()
    assert deadline_ms <= fired_ms < deadline_ms + 1000  # not early; late only by scheduling
    assert len(node.events) == 1  # fired once: the node's deadline is gone after it


async def test_the_timer_is_rearmed_when_a_feed_sets_a_deadline() -> None:
    node = FakeNode()  # no deadline: the timer waits for a feed
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            runtime = NodeRuntime(node, deliver=no_deliveries)
            await nursery.start(runtime.run)
            await trio.testing.wait_all_tasks_blocked()
            deadline_ms = wall_clock_ms() + 50
            node.deadline_ms = deadline_ms
            await runtime.handle_api_request(HttpRequest(method="GET", target="/x"))
            _, fired_ms = await node.wait_for(TimerExpired)
            nursery.cancel_scope.cancel()
    assert fired_ms >= deadline_ms
    assert fired_ms - deadline_ms < 1000


async def test_the_clock_is_injected_and_passed_to_the_node() -> None:
    node = FakeNode(deadline_ms=1_000)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            runtime = NodeRuntime(node, deliver=no_deliveries, clock_ms=lambda: 1_234)
            await nursery.start(runtime.run)
            _, now_ms = await node.wait_for(TimerExpired)
            nursery.cancel_scope.cancel()
    assert now_ms == 1_234


async def test_a_stepped_wall_clock_is_fed_to_the_node_within_a_second() -> None:
    """Deadlines are monotonic, the ETAs in them converted at the last event: a step of the wall
    clock must reach the node (an event) soon, or an ETA it made due would wait for the next
    unrelated event. The monotonic clock the node measures durations on does not step."""
    mono_ms = monotonic_clock_ms(1_000_000)
    wall_ahead_ms = 0
    node = FakeNode(deadline_ms=mono_ms() + 60_000)  # e.g. a timeout a minute away
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            runtime = NodeRuntime(
                node,
                deliver=no_deliveries,
                clock_ms=lambda: mono_ms() + wall_ahead_ms,
                mono_clock_ms=mono_ms,
            )
            await nursery.start(runtime.run)
            await trio.testing.wait_all_tasks_blocked()
            assert node.events == []
            wall_ahead_ms = 5 * 60_000
            _, fed_wall_ms = await node.wait_for(TimerExpired)
            nursery.cancel_scope.cancel()
    [fed_mono_ms] = node.mono_readings_ms
    assert fed_mono_ms is not None
    assert fed_wall_ms - fed_mono_ms == 5 * 60_000
    assert fed_mono_ms < 1_000_000 + 60_000  # not the deadline: the step woke it


async def test_each_request_gets_the_response_for_its_own_id() -> None:
    node = FakeNode()
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            runtime = NodeRuntime(node, deliver=no_deliveries)
            await nursery.start(runtime.run)
            first = await runtime.handle_api_request(HttpRequest(method="GET", target="/a"))
            second = await runtime.handle_api_request(HttpRequest(method="GET", target="/b"))
            nursery.cancel_scope.cancel()
    assert first.json() == {"target": "/a"}
    assert second.json() == {"target": "/b"}
    ids = [e.request_id for e, _ in node.events if isinstance(e, ApiRequestReceived)]
    assert len(set(ids)) == 2


async def test_a_delivery_is_started_and_its_outcome_fed_back() -> None:
    node = FakeNode(next_actions=[start_delivery(5)])
    started: list[StartDelivery] = []

    async def deliver(start: StartDelivery) -> DeliveryResponded:
        started.append(start)
        return DeliveryResponded(delivery_id=start.delivery_id, status=204)

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            runtime = NodeRuntime(node, deliver=deliver)
            await nursery.start(runtime.run)
            await runtime.handle_api_request(HttpRequest(method="POST", target="/q"))
            event, _ = await node.wait_for(DeliveryResponded)
            nursery.cancel_scope.cancel()
    assert [s.delivery_id for s in started] == [5]
    assert event == DeliveryResponded(delivery_id=5, status=204)


async def test_a_crashing_delivery_is_logged_and_reported_as_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = FakeNode(next_actions=[start_delivery(9)])

    async def deliver(start: StartDelivery) -> DeliveryResponded:
        raise KeyError("a bug in the client")

    with trio.fail_after(TEST_TIMEOUT_S), caplog.at_level(logging.ERROR, logger="miyamoto.io"):
        async with trio.open_nursery() as nursery:
            runtime = NodeRuntime(node, deliver=deliver)
            await nursery.start(runtime.run)
            await runtime.handle_api_request(HttpRequest(method="POST", target="/q"))
            event, _ = await node.wait_for(DeliveryFailed)
            nursery.cancel_scope.cancel()
    assert isinstance(event, DeliveryFailed)
    assert event.delivery_id == 9 and event.error is DeliveryError.RESET
    assert "a bug in the client" in event.detail
    assert "a bug in the client" in caplog.text
