"""Every table of the node stays bounded whatever the clients do (issue 10, "Bound every
table"): each test repeats what used to grow a table without end."""

from __future__ import annotations

from dataclasses import replace

from miyamoto.logic.limits import Limits
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.retry import RetryPolicy

from .node_driver import NodeDriver

URL = "http://localhost:9099/worker"
DAY_S = 24 * 3600


def test_a_purge_frees_the_bodies_and_timers_of_its_tasks_at_once() -> None:
    d = NodeDriver(NodeConfig(limits=replace(Limits(), tasks_max=101)))
    body = "x" * 10_000
    purged = []
    for _ in range(500):
        for _ in range(100):
            reply = d.enqueue_form(task_url=URL, task_countdown=str(DAY_S), payload=body)
            assert reply.status == 200, reply.json()
        task = d.node.tasks.get("q", reply.json()["id"])
        assert task is not None and len(task.body) > 10_000
        purged.append(task)
        assert d.request("POST", "/q/_purge").status == 200
    # 50,000 tasks enqueued and purged, none due for a day: nothing of them is kept but ids.
    assert all(task.body == b"" and task.headers == () for task in purged)
    assert len(d.node.tasks.timers) <= 2 * 101 + 1024


def test_deleting_a_dead_letter_frees_its_body_at_once() -> None:
    d = NodeDriver()
    task_id = d.enqueue_json(url=URL, params={"p": "y" * 5000}, retry_limit=0).json()["id"]
    (delivery,) = d.advance(0)
    d.respond(delivery, 500)
    task = d.node.tasks.get("q", task_id)
    assert task is not None and task.state.value == "failed"
    assert d.request("DELETE", f"/q/{task_id}").json()["status"] == "deleted"
    assert task.body == b""


def test_pausing_queues_that_do_not_exist_counts_against_the_queue_limit() -> None:
    d = NodeDriver(NodeConfig(limits=replace(Limits(), active_queues_max=3)))
    for name in ("a", "b", "c"):
        assert d.request("POST", f"/{name}/_pause").status == 200
    refused = d.request("POST", "/d/_pause")
    assert refused.status == 507
    assert "3 active queues" in refused.json()["error"]
    # The paused queues still take tasks; once an empty one is resumed, its room is free again.
    assert d.enqueue_form("b", task_url=URL).status == 200
    assert d.request("POST", "/a/_resume").status == 200
    assert d.request("POST", "/d/_pause").status == 200


def test_destinations_held_back_by_retry_after_are_bounded_and_ended_holds_make_room() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(min_backoff_ms=100)))
    d.node.queues.destination_holds_max = 3
    for host in range(5):
        d.enqueue_form(task_url=f"http://h{host}:9000/work")
    for delivery in d.advance(0):
        d.respond(delivery, 503, retry_after="60")
    assert len(d.node.queues.destination_hold_ms) == 3
    assert d.advance(59_999) == []  # every task waits as it was told, held or not
    retried = d.advance(1)
    assert len(retried) == 5
    d.respond(retried[0], 503, retry_after="60")  # the ended holds make room for a new one
    assert len(d.node.queues.destination_hold_ms) == 1
