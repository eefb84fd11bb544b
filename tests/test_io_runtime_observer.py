"""The runtime's observer hook (metrics and logs watch the node through it)."""

from __future__ import annotations

import logging

import pytest
import trio

from miyamoto.io.runtime import NodeRuntime
from miyamoto.logic.actions import Action, SendApiResponse
from miyamoto.logic.events import ApiRequestReceived, Event
from miyamoto.logic.http import HttpRequest

from .test_io_runtime import FakeNode, no_deliveries

TEST_TIMEOUT_S = 10


async def test_the_observer_sees_each_event_its_actions_and_the_feeds_time() -> None:
    seen: list[tuple[Event, list[Action], int]] = []
    node = FakeNode()
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            runtime = NodeRuntime(
                node,
                deliver=no_deliveries,
                clock_ms=lambda: 1234,
                observe=lambda event, actions, now_ms: seen.append((event, actions, now_ms)),
            )
            await nursery.start(runtime.run)
            response = await runtime.handle_api_request(HttpRequest(method="GET", target="/q"))
            nursery.cancel_scope.cancel()
    ((event, actions, now_ms),) = seen
    assert isinstance(event, ApiRequestReceived) and event.request.target == "/q"
    assert actions == [SendApiResponse(request_id=event.request_id, response=response)]
    assert now_ms == 1234 == node.events[0][1]


async def test_an_observer_that_raises_is_logged_and_the_request_is_still_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: Event, actions: list[Action], now_ms: int) -> None:
        raise ZeroDivisionError("a bug in the metrics")

    with trio.fail_after(TEST_TIMEOUT_S), caplog.at_level(logging.ERROR, logger="miyamoto.io"):
        async with trio.open_nursery() as nursery:
            runtime = NodeRuntime(FakeNode(), deliver=no_deliveries, observe=broken)
            await nursery.start(runtime.run)
            response = await runtime.handle_api_request(HttpRequest(method="GET", target="/q"))
            nursery.cancel_scope.cancel()
    assert response.status == 200
    assert "the node observer failed on ApiRequestReceived" in caplog.text
    assert "a bug in the metrics" in caplog.text
