"""An exception out of `Node.handle` is a bug, never silent: the runtime logs the event and the
traceback, refuses every later event, and the daemon exits with EXIT_NODE_CRASHED instead of
running on with state that no longer matches the actions it lost."""

from __future__ import annotations

import logging

import pytest
import trio

from miyamoto.io import node as daemon
from miyamoto.io.cli import parse_args
from miyamoto.io.runtime import NodeCrashed, NodeRuntime
from miyamoto.logic.actions import Action, StartDelivery
from miyamoto.logic.events import DeliveryFailed, DeliveryResponded, Event, TimerExpired
from miyamoto.logic.http import HttpRequest
from miyamoto.logic.node import Node

TEST_TIMEOUT_S = 10


class RaisingNode:
    """Raises on its first timer; counts the events it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        self.events.append(event)
        if isinstance(event, TimerExpired):
            raise ValueError("'²' is not a number the node can handle")
        return []

    def next_deadline_ms(self) -> int | None:
        return 0  # due at once


async def never_deliver(start: StartDelivery) -> DeliveryResponded | DeliveryFailed:
    raise AssertionError("no delivery expected")


async def test_the_runtime_stops_with_node_crashed_and_logs_the_event_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = RaisingNode()
    runtime = NodeRuntime(node, deliver=never_deliver)
    with (
        trio.fail_after(TEST_TIMEOUT_S),
        caplog.at_level(logging.CRITICAL, logger="miyamoto.io"),
        pytest.RaisesGroup(NodeCrashed, flatten_subgroups=True),
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            await trio.sleep_forever()
    with pytest.raises(NodeCrashed):  # and nothing more reaches the node
        runtime.feed(TimerExpired())
    with pytest.raises(NodeCrashed):
        runtime.answer_api_request(HttpRequest(method="GET", target="/_health"))
    assert node.events == [TimerExpired()]
    assert "TimerExpired" in caplog.text and "Traceback" in caplog.text
    assert "is not a number" in caplog.text


class NodeRaisingOnTimers(Node):
    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        if isinstance(event, TimerExpired):
            raise KeyError("a bug")
        return super().handle(event, now_ms, mono_ms=mono_ms)


async def test_the_daemon_exits_with_its_own_status_when_the_node_raises(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(daemon, "Node", NodeRaisingOnTimers)
    options = parse_args(["127.0.0.1", "127.0.0.1", "--port", "0", "--in-memory"])
    config = daemon.node_config(options)
    with trio.fail_after(TEST_TIMEOUT_S):
        status = await daemon._run_daemon(config, options, daemon._Security())
    assert status == daemon.EXIT_NODE_CRASHED != 0
    assert "stopped" in capsys.readouterr().err
