"""The active-queue table (`Limits.active_queues_max`): a new queue gets the room of one that
became idle (nothing waiting, in flight or paused), found without a scan of every queue."""

from __future__ import annotations

from dataclasses import replace

from miyamoto.logic.limits import Limits
from miyamoto.logic.node import NodeConfig

from .node_driver import NodeDriver

URL = "http://localhost:9099/worker"


def _driver() -> NodeDriver:
    return NodeDriver(NodeConfig(limits=replace(Limits(), active_queues_max=3)))


def test_a_queue_whose_last_task_is_cancelled_makes_room_for_a_new_one() -> None:
    d = _driver()
    ids = {q: d.enqueue_form(q, task_url=URL, task_countdown="600").json()["id"] for q in "abc"}
    refused = d.enqueue_form("d", task_url=URL)
    assert refused.status == 507 and "3 active queues" in refused.json()["error"]
    assert d.request("DELETE", f"/b/{ids['b']}").status == 200
    assert d.enqueue_form("d", task_url=URL, task_countdown="600").status == 200
    assert d.enqueue_form("e", task_url=URL).status == 507  # a, c and d still wait


def test_a_queue_is_busy_while_its_delivery_flies_and_idle_once_it_is_answered() -> None:
    d = _driver()
    for q in "abc":
        assert d.enqueue_form(q, task_url=URL).status == 200
    first, *_ = d.advance(0)
    assert len(d.deliveries) == 3
    assert d.enqueue_form("d", task_url=URL).status == 507  # three deliveries in flight
    d.respond(first, 200)
    assert d.enqueue_form("d", task_url=URL, task_countdown="600").status == 200
    assert d.enqueue_form("e", task_url=URL).status == 507


def test_a_resumed_empty_queue_makes_room_and_a_paused_one_keeps_it() -> None:
    d = _driver()
    for q in "abc":
        assert d.request("POST", f"/{q}/_pause").status == 200
    assert d.enqueue_form("d", task_url=URL).status == 507
    assert d.request("POST", "/c/_resume").status == 200
    assert d.enqueue_form("d", task_url=URL, task_countdown="600").status == 200
    assert d.enqueue_form("e", task_url=URL).status == 507
