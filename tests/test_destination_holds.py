"""Retry-After holds are per queue and destination, capped at the queue's max_backoff, listed by
`GET /_destinations` and lifted by `DELETE /_destinations/{host:port}`."""

from __future__ import annotations

from miyamoto.logic.actions import StartDelivery
from miyamoto.logic.api_tokens import Scope, required_scope
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.queue_config import QueueConfig, QueuesConfig
from miyamoto.logic.retry import RetryPolicy
from miyamoto.logic.routes import route

from .node_driver import NodeDriver

URL = "http://127.0.0.1:9/hook"


def test_one_queues_retry_after_does_not_hold_another_queues_tasks_for_that_host() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(min_backoff_ms=100)))
    d.enqueue_form("tenant-a", task_url=URL)
    (first,) = d.advance(0)
    d.respond(first, 503, retry_after="100000")
    d.enqueue_form("tenant-a", task_url=URL)
    d.enqueue_form("tenant-b", task_url=URL)
    started = d.advance(1)
    assert [header(s, "X-Task-Queue") for s in started] == ["tenant-b"]


def test_a_retry_after_is_capped_at_the_queues_max_backoff() -> None:
    short = QueueConfig(retry=RetryPolicy(min_backoff_ms=100, max_backoff_ms=5_000))
    d = NodeDriver(NodeConfig(queues=QueuesConfig(default=short)))
    d.enqueue_form(task_url=URL)
    (first,) = d.advance(0)
    d.respond(first, 429, retry_after="100000")  # 27 hours asked
    assert d.advance(4_999) == []
    assert len(d.advance(1)) == 1


def test_holds_are_listed_and_lifted_by_destination() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(min_backoff_ms=100)))
    for queue in ("a", "b"):
        d.enqueue_form(queue, task_url=URL)
    for delivery in d.advance(0):
        d.respond(delivery, 503, retry_after="60")
    d.enqueue_form("a", task_url="http://[::1]:9/x")
    (v6,) = d.advance(0)
    d.respond(v6, 503, retry_after="30")
    listed = d.get("/_destinations").json()["holds"]
    assert [(h["queue"], h["destination"], h["remaining_ms"]) for h in listed] == [
        ("a", "127.0.0.1:9", 60_000),
        ("a", "[::1]:9", 30_000),
        ("b", "127.0.0.1:9", 60_000),
    ]
    lifted = d.request("DELETE", "/_destinations/127.0.0.1:9")
    assert (lifted.status, lifted.json()) == (200, {"status": "lifted", "queues": ["a", "b"]})
    assert [h["destination"] for h in d.get("/_destinations").json()["holds"]] == ["[::1]:9"]
    assert d.request("DELETE", "/_destinations/127.0.0.1:9").status == 404
    bad = d.request("DELETE", "/_destinations/no-port")
    assert bad.status == 400 and "host:port" in bad.json()["error"]
    assert d.request("POST", "/_destinations").status == 405


def test_destination_holds_need_the_admin_scope() -> None:
    assert required_scope(route("GET", "/_destinations")) is Scope.ADMIN
    assert required_scope(route("DELETE", "/_destinations/h:1")) is Scope.ADMIN


def header(delivery: StartDelivery, name: str) -> str:
    return next(v for k, v in delivery.request.headers if k == name)
