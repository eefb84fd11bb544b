"""The single node's behaviour, driven on the state machine directly (no sockets)."""

from __future__ import annotations

from dataclasses import replace

from miyamoto.logic.events import DeliveryError
from miyamoto.logic.limits import Limits
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.retry import RetryPolicy

from .node_driver import T0_MS, NodeDriver, header

URL = "http://localhost:9099/worker"


def test_form_enqueue_is_delivered_at_its_countdown_with_its_params_and_headers() -> None:
    d = NodeDriver()
    reply = d.enqueue_form(task_url=URL, task_countdown="5", foo="bar")
    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "scheduled"
    task_id = body["id"]
    assert d.advance(4999) == []
    (delivery,) = d.advance(1)
    request = delivery.request
    assert (request.method, request.host, request.port, request.target) == (
        "POST",
        "localhost",
        9099,
        "/worker",
    )
    assert request.body == b"foo=bar"
    assert header(delivery, "host") == "localhost:9099"
    assert header(delivery, "content-type") == "application/x-www-form-urlencoded"
    assert header(delivery, "content-length") == "7"
    assert header(delivery, "x-task-id") == task_id
    assert header(delivery, "x-task-queue") == "q"
    assert header(delivery, "x-task-retry-count") == "0"
    assert header(delivery, "x-task-eta") == str((T0_MS + 5000) // 1000)
    assert header(delivery, "user-agent") == "miyamoto/0.1.0"


def test_json_enqueue_sends_params_form_encoded() -> None:
    d = NodeDriver()
    reply = d.enqueue_json(url=URL, params={"foo": "bar"})
    assert reply.json()["status"] == "scheduled"
    (delivery,) = d.advance(0)
    assert delivery.request.body == b"foo=bar"
    assert header(delivery, "x-task-id") == reply.json()["id"]


def test_success_is_visible_through_get_with_the_response_excerpt() -> None:
    d = NodeDriver()
    task_id = d.enqueue_form(task_url=URL, task_countdown="1").json()["id"]
    assert d.get(f"/q/{task_id}").json()["state"] == "scheduled"
    (delivery,) = d.advance(1000)
    assert d.get(f"/q/{task_id}").json()["state"] == "delivering"
    d.respond(delivery, 201, b'{"result": 42}')
    task = d.get(f"/q/{task_id}").json()
    assert task["state"] == "succeeded"
    assert task["last_status"] == 201
    assert task["last_response"] == '{"result": 42}'
    assert task["attempts"] == 1
    assert task["finished"] == (T0_MS + 1000) / 1000


def test_a_500_is_a_failure_retried_with_growing_backoff_and_counting_headers() -> None:
    policy = RetryPolicy(min_backoff_ms=100, max_backoff_ms=10_000, retry_limit=5)
    d = NodeDriver(NodeConfig(retry=policy))
    task_id = d.enqueue_form(task_url=URL).json()["id"]
    (first,) = d.advance(0)
    d.respond(first, 500)
    assert d.get(f"/q/{task_id}").json()["state"] == "retrying"
    assert d.advance(99) == []
    (second,) = d.advance(1)
    assert header(second, "x-task-retry-count") == "1"
    assert header(second, "x-task-execution-count") == "1"
    d.fail(second, DeliveryError.REFUSED)
    assert d.advance(199) == []
    (third,) = d.advance(1)
    assert header(third, "x-task-retry-count") == "2"
    assert header(third, "x-task-execution-count") == "1"  # the refused attempt got no answer
    d.respond(third, 200)
    task = d.get(f"/q/{task_id}").json()
    assert (task["state"], task["attempts"], task["executions"]) == ("succeeded", 3, 2)


def test_redirect_is_not_success() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(retry_limit=0)))
    task_id = d.enqueue_form(task_url=URL).json()["id"]
    (delivery,) = d.advance(0)
    d.respond(delivery, 302, Location="http://elsewhere/")
    assert d.get(f"/q/{task_id}").json()["state"] == "failed"


def test_spent_retries_leave_the_task_failed_and_visible() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(retry_limit=1, min_backoff_ms=10)))
    task_id = d.enqueue_form(task_url=URL).json()["id"]
    (first,) = d.advance(0)
    d.fail(first, DeliveryError.TIMEOUT)
    (second,) = d.advance(10)
    d.respond(second, 503, b"down")
    assert d.advance(600_000) == []  # ten minutes: far past any backoff left
    task = d.get(f"/q/{task_id}").json()
    assert task["state"] == "failed"
    assert (task["attempts"], task["last_status"], task["last_response"]) == (2, 503, "down")
    assert d.get("/q").json()["counts"]["failed"] == 1


def test_retry_after_on_503_is_honoured() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(min_backoff_ms=100)))
    d.enqueue_form(task_url=URL)
    (first,) = d.advance(0)
    d.respond(first, 503, retry_after="30")
    assert d.advance(29_999) == []
    assert len(d.advance(1)) == 1


def test_cancel_before_delivery_means_no_delivery() -> None:
    d = NodeDriver()
    task_id = d.enqueue_form(task_url=URL, task_countdown="1").json()["id"]
    reply = d.request("DELETE", f"/q/{task_id}")
    assert (reply.status, reply.json()["status"]) == (200, "cancelled")
    assert d.advance(10_000) == []
    assert d.get(f"/q/{task_id}").json()["state"] == "cancelled"


def test_cancel_after_success_says_it_is_too_late() -> None:
    d = NodeDriver()
    task_id = d.enqueue_form(task_url=URL).json()["id"]
    (delivery,) = d.advance(0)
    assert d.request("DELETE", f"/q/{task_id}").status == 409
    d.respond(delivery, 200)
    reply = d.request("DELETE", f"/q/{task_id}")
    assert reply.status == 409
    assert reply.json()["error"] == "the task has already succeeded"


def test_unknown_task_is_a_json_404() -> None:
    reply = NodeDriver().get("/q/nope")
    assert reply.status == 404
    assert reply.json()["status"] == "error"


def test_same_client_id_twice_creates_one_task() -> None:
    d = NodeDriver()
    first = d.enqueue_form(task_url=URL, task_id="order-17", task_countdown="1").json()
    second = d.enqueue_form(task_url=URL, task_id="order-17").json()
    assert first["status"] == "scheduled"
    assert second == {"status": "duplicate", "id": "order-17", "state": "scheduled"}
    assert len(d.advance(1000)) == 1


def test_finished_tasks_are_forgotten_after_the_retention_window() -> None:
    d = NodeDriver(NodeConfig(retention_ms=60_000))
    task_id = d.enqueue_form(task_url=URL, task_id="once").json()["id"]
    (delivery,) = d.advance(0)
    d.respond(delivery, 200)
    d.advance(59_999)
    assert d.enqueue_form(task_url=URL, task_id="once").json()["status"] == "duplicate"
    d.advance(1)
    assert d.get(f"/q/{task_id}").status == 404
    assert d.get("/q").json()["counts"]["succeeded"] == 0
    assert d.enqueue_form(task_url=URL, task_id="once").json()["status"] == "scheduled"


def test_deliveries_in_flight_are_capped_and_the_rest_wait_their_turn() -> None:
    d = NodeDriver(NodeConfig(limits=replace(Limits(), deliveries_in_flight_max=2)))
    for _ in range(5):
        d.enqueue_form(task_url=URL)
    started = d.advance(0)
    assert len(started) == 2
    d.respond(started[0], 200)
    assert len(d.deliveries) == 3  # the third waited for a slot, not for a timer


def test_a_full_node_refuses_new_tasks_with_507_and_keeps_the_old_ones() -> None:
    d = NodeDriver(NodeConfig(limits=replace(Limits(), tasks_max=2)))
    assert d.enqueue_form(task_url=URL, task_countdown="9").status == 200
    assert d.enqueue_form(task_url=URL, task_countdown="9").status == 200
    reply = d.enqueue_form(task_url=URL)
    assert reply.status == 507
    assert "2 tasks" in reply.json()["error"]
    assert len(d.advance(9000)) == 2


def test_tasks_fire_in_eta_order() -> None:
    d = NodeDriver()
    ids = [d.enqueue_form(task_url=URL, task_countdown=str(c)).json()["id"] for c in (3, 1, 2)]
    fired = [header(x, "x-task-id") for x in d.advance(3000)]
    assert fired == [ids[1], ids[2], ids[0]]


def test_node_paths_and_methods_are_checked() -> None:
    d = NodeDriver()
    assert d.get("/_health").status == 200
    assert d.get("/_nope").status == 404
    assert d.request("PUT", "/q").status == 405
    assert d.request("POST", "/q/x").status == 405
    assert d.get("/").status == 404
    assert d.get("/a/b/c").status == 404
