"""GET /_metrics, /_ready and HEAD /_health on a real node on 127.0.0.1, with local receivers.

The metrics are read back with prometheus_client's own parser, and each test checks that the
numbers moved with what it did: enqueues, deliveries, retries, dead letters, duplicates,
cancels, destination holds, HTTP requests by route.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
from functools import partial
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from miyamoto.io.metrics import OTHER_QUEUE, QUEUE_LABELS_MAX, NodeMetrics, _NodeCollector
from miyamoto.io.node import serve_node
from miyamoto.io.ops_endpoints import route_label
from miyamoto.logic.events import TimerExpired
from miyamoto.logic.membership import ClusterTiming
from miyamoto.logic.node import Node, NodeConfig
from miyamoto.logic.readiness import readiness
from miyamoto.logic.retry import RetryPolicy

from .io_raw_http import (
    RawMessage,
    RawReceiver,
    always,
    exchange,
    http_response,
    request_bytes,
    start_receiver,
)

TEST_TIMEOUT_S = 15
JSON = "application/json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def start_node(nursery: trio.Nursery, **options: Any) -> int:
    config = NodeConfig(
        node_id="127.0.0.1:0",
        retry=RetryPolicy(retry_limit=1, min_backoff_ms=50, max_backoff_ms=50),
        **options.pop("config", {}),
    )
    port: int = await nursery.start(partial(serve_node, config, rng=random.Random(5), **options))
    return port


async def request(
    port: int, method: str, target: str, body: bytes = b"", content_type: str = JSON
) -> RawMessage:
    headers = (("Connection", "close"),)
    if body:
        headers += (("Content-Type", content_type),)
    (response,) = await exchange(port, request_bytes(method, target, body, headers))
    return response


async def head(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    """HEAD `target`: (status, headers, whatever came after the head: must be nothing)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request_bytes("HEAD", target, b"", (("Connection", "close"),)))
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode().split("\r\n")
    headers = dict((k.lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines))
    return int(status_line.split(" ")[1]), headers, rest


async def enqueue(port: int, queue: str, **task: Any) -> Any:
    response = await request(port, "POST", f"/{queue}", json.dumps(task).encode())
    assert response.status == 200, response.body
    return response.json()


async def scrape(port: int) -> Samples:
    response = await request(port, "GET", "/_metrics")
    assert response.status == 200, response.body
    assert (response.header("content-type") or "").startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until_value(port: int, name: str, wanted: float, **labels: str) -> Samples:
    while value(samples := await scrape(port), name, **labels) != wanted:
        await trio.sleep(0.02)
    return samples


async def test_the_counts_move_with_enqueues_deliveries_retries_dead_letters_and_cancels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="miyamoto")
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ok = await start_receiver(nursery, always(200, b"ok"))
            broken = await start_receiver(nursery, always(500, b"no"))
            port = await start_node(nursery)
            before = await scrape(port)
            assert value(before, "miyamoto_tasks_enqueued_total", queue="alpha") == 0
            assert value(before, "miyamoto_cluster_is_leader") == 1
            assert value(before, "miyamoto_cluster_members") == 1
            assert value(before, "miyamoto_ready") == 1

            for _ in range(3):
                await enqueue(port, "alpha", url=f"http://127.0.0.1:{ok.port}/a", countdown=0)
            dead = await enqueue(port, "beta", url=f"http://127.0.0.1:{broken.port}/b")
            await enqueue(port, "gamma", url=f"http://127.0.0.1:{ok.port}/c", id="once")
            again = await enqueue(port, "gamma", url=f"http://127.0.0.1:{ok.port}/c", id="once")
            assert again["status"] == "duplicate"
            later = await enqueue(port, "delta", url=f"http://127.0.0.1:{ok.port}/d", countdown=600)
            cancel = await request(port, "DELETE", f"/delta/{later['id']}")
            assert cancel.json()["status"] == "cancelled"

            # The dead letter comes after the first attempt and one retry (50 ms apart).
            after = await until_value(port, "miyamoto_tasks_failed_total", 1, queue="beta")
            await broken.wait_for(lambda: len(broken.requests) == 2)
            await ok.wait_for(lambda: len(ok.requests) == 4)
            after = await until_value(port, "miyamoto_tasks_delivered_total", 3, queue="alpha")
            nursery.cancel_scope.cancel()

    assert value(after, "miyamoto_tasks_enqueued_total", queue="alpha") == 3
    assert value(after, "miyamoto_tasks_enqueued_total", queue="gamma") == 1
    assert value(after, "miyamoto_tasks_duplicates_total", queue="gamma") == 1
    assert value(after, "miyamoto_tasks_delivered_total", queue="gamma") == 1
    assert value(after, "miyamoto_tasks_retried_total", queue="beta") == 1
    assert value(after, "miyamoto_tasks_cancelled_total", queue="delta") == 1
    assert value(after, "miyamoto_tasks_held", queue="beta", state="failed") == 1
    assert value(after, "miyamoto_tasks_held", queue="alpha", state="succeeded") == 3
    assert value(after, "miyamoto_dead_letters") == 1
    assert value(after, "miyamoto_delivery_attempts_total", outcome="2xx") == 4
    assert value(after, "miyamoto_delivery_attempts_total", outcome="5xx") == 2
    assert value(after, "miyamoto_delivery_duration_seconds_count") == 6
    assert value(after, "miyamoto_delivery_lateness_seconds_count") == 6
    assert value(after, "miyamoto_deliveries_in_flight") == 0
    enqueues = value(after, "miyamoto_http_requests_total", route="POST /{queue}", status="200")
    assert enqueues == 7
    delete = "DELETE /{queue}/{id}"
    assert value(after, "miyamoto_http_requests_total", route=delete, status="200") == 1
    dead_letter = f"dead letter: queue beta, task {dead['id']}, after 2 attempts, last status 500"
    assert dead_letter in [record.getMessage() for record in caplog.records]


async def test_a_retry_after_answer_shows_as_a_destination_hold_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="miyamoto")

    async def busy_once(request: RawMessage, receiver: RawReceiver) -> bytes:
        if len(receiver.requests) == 1:
            return http_response(503, b"busy", extra="Retry-After: 1\r\n")
        return http_response(200, b"ok")

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, busy_once)
            port = await start_node(nursery)
            await enqueue(port, "q", url=f"http://127.0.0.1:{receiver.port}/x")
            held = await until_value(port, "miyamoto_destination_holds", 1)
            await receiver.wait_for(lambda: len(receiver.requests) == 2)
            lifted = await until_value(port, "miyamoto_tasks_delivered_total", 1, queue="q")
            nursery.cancel_scope.cancel()
    assert value(held, "miyamoto_tasks_retried_total", queue="q") == 1
    assert value(lifted, "miyamoto_destination_holds") == 0
    messages = [r.getMessage() for r in caplog.records]
    hold = f"destination hold set: 127.0.0.1:{receiver.port} answered 503 with Retry-After"
    assert any(m.startswith(hold) for m in messages), messages
    assert f"destination hold lifted: 127.0.0.1:{receiver.port}" in messages


async def test_no_metrics_answers_404_and_the_rest_of_the_api_works() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await start_node(nursery, metrics=False)
            metrics = await request(port, "GET", "/_metrics")
            ready = await request(port, "GET", "/_ready")
            nursery.cancel_scope.cancel()
    assert metrics.status == 404
    assert metrics.json() == {
        "status": "error",
        "error": "metrics are off on this node (it runs with --no-metrics)",
    }
    assert ready.status == 200


async def test_ready_health_and_metrics_answer_get_and_head_and_refuse_post() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await start_node(nursery)
            paths = ("/_health", "/_ready")
            answers = {
                (method, path): await request(port, method, path)
                for method in ("GET", "POST")
                for path in (*paths, "/_metrics")
            }
            heads = {path: await head(port, path) for path in paths}
            metrics_head = await head(port, "/_metrics")
            nursery.cancel_scope.cancel()
    for path in paths:
        got = answers[("GET", path)]
        assert got.status == 200, path
        assert heads[path] == (200, heads[path][1], b""), path
        assert heads[path][1]["content-length"] == got.header("content-length"), path
    assert answers[("GET", "/_metrics")].status == 200
    assert (metrics_head[0], metrics_head[2]) == (200, b"")  # its length moves with the counts
    for path in (*paths, "/_metrics"):
        assert answers[("POST", path)].status == 405, path
    ready = answers[("GET", "/_ready")].json()
    assert ready == {"status": "ready", "node": f"127.0.0.1:{port}", "leader": ready["node"]}
    assert "use GET or HEAD" in answers[("POST", "/_ready")].json()["error"]


async def test_a_node_still_joining_is_not_ready_and_says_why() -> None:
    """Its seed is a closed port on this machine: the node never gets in."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await start_node(nursery, config={"seed_id": "127.0.0.1:9"})
            ready = await request(port, "GET", "/_ready")
            head_ready = await head(port, "/_ready")
            health = await request(port, "GET", "/_health")
            samples = await scrape(port)
            nursery.cancel_scope.cancel()
    assert ready.status == 503
    assert ready.json()["status"] == "error"
    assert ready.json()["error"].startswith("not a cluster member yet")
    assert (head_ready[0], head_ready[2]) == (503, b"")
    assert health.status == 200  # alive, though not ready
    assert value(samples, "miyamoto_ready") == 0
    assert value(samples, "miyamoto_cluster_is_leader") == 0


def test_readiness_needs_membership_a_leader_and_the_newest_list() -> None:
    node = Node(NodeConfig(node_id="127.0.0.1:1"), random.Random(1), 0)
    node.handle(TimerExpired(), 0)
    view = node.membership.view()
    assert readiness(view).ready
    no_leader = readiness(dataclasses.replace(view, has_leader=False, leader=None))
    assert not no_leader.ready and no_leader.reason.startswith("no leader")
    outside = readiness(dataclasses.replace(view, members=()))
    assert not outside.ready and outside.reason.startswith("not a cluster member")
    removed = readiness(dataclasses.replace(view, in_majority=False))
    assert not removed.ready and "removed" in removed.reason


def test_route_labels_are_templates_so_their_number_stays_bounded() -> None:
    assert route_label("POST", "/emails?x=1") == "POST /{queue}"
    assert route_label("GET", "/emails/0b6f-secret-id") == "GET /{queue}/{id}"
    assert route_label("POST", "/emails/_pause") == "POST /{queue}/_command"
    assert route_label("POST", "/emails/abc/rerun") == "POST /{queue}/{id}/rerun"
    assert route_label("GET", "/_metrics") == "GET /_metrics"
    assert route_label("GET", "/_health/") == "GET /_health"
    assert route_label("GET", "/_anything-else") == "GET /_other"
    assert route_label("BREW", "/a/b/c/d") == "OTHER /other"
    assert route_label("GET", "/") == "GET /other"


def test_queue_labels_past_the_limit_are_counted_under_other() -> None:
    node = Node(NodeConfig(node_id="127.0.0.1:1"), random.Random(1), 0)
    metrics = NodeMetrics(node, clock_ms=lambda: 0, process=False)
    for index in range(QUEUE_LABELS_MAX + 5):
        metrics.count_tasks("enqueued", f"q{index}")
    counts = metrics.tasks["enqueued"]
    assert len(counts) == QUEUE_LABELS_MAX + 1
    assert counts[OTHER_QUEUE] == 5
    assert counts["q0"] == 1


async def test_requests_the_server_refuses_itself_are_counted_and_access_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="miyamoto")
    too_large = b"POST /q HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n"
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await start_node(nursery, access_log=True)
            (refused,) = await exchange(port, too_large)
            await request(port, "GET", "/_health?token=s3cret")
            samples = await scrape(port)
            nursery.cancel_scope.cancel()
    assert refused.status == 413
    assert value(samples, "miyamoto_http_requests_total", route="(refused)", status="413") == 1
    assert value(samples, "miyamoto_http_requests_total", route="GET /_health", status="200") == 1
    access = [r.getMessage() for r in caplog.records if r.name == "miyamoto.access"]
    assert access[0] == "refused by the server before routing: 413"
    assert re.fullmatch(r"GET /_health 200 \d+B \d+\.\dms", access[1]), access
    assert all("s3cret" not in line for line in access)


async def test_a_cluster_of_two_shows_members_a_leader_and_peer_traffic() -> None:
    timing = ClusterTiming(
        heartbeat_interval_ms=30,
        election_timeout_min_ms=150,
        election_timeout_max_ms=300,
        member_timeout_ms=600,
        join_retry_min_ms=30,
        join_retry_max_ms=200,
    )
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port_a = await start_node(nursery, config={"timing": timing})
            port_b = await start_node(
                nursery, config={"timing": timing, "seed_id": f"127.0.0.1:{port_a}"}
            )
            await until_value(port_b, "miyamoto_cluster_members", 2)
            await until_value(port_b, "miyamoto_ready", 1)
            a, b = await scrape(port_a), await scrape(port_b)
            nursery.cancel_scope.cancel()
    assert value(a, "miyamoto_cluster_is_leader") == 1  # the first node leads
    assert value(b, "miyamoto_cluster_is_leader") == 0
    assert value(a, "miyamoto_cluster_members") == 2
    assert value(a, "miyamoto_cluster_epoch") == value(b, "miyamoto_cluster_epoch") >= 2
    for samples in (a, b):
        assert value(samples, "miyamoto_peer_messages_sent_total") > 0
        assert value(samples, "miyamoto_peer_messages_received_total") > 0
        assert value(samples, "miyamoto_peer_messages_dropped_total", reason="foreign_cluster") == 0


def test_under_replicated_tasks_are_a_gauge_read_at_scrape_time() -> None:
    from dataclasses import replace

    from .cluster_driver import Cluster
    from .test_replication import CONFIG, URL

    a, b, c = "a:1", "b:1", "c:1"
    cluster = Cluster([a, b, c], replace(CONFIG, replicas=3))
    cluster.report_unreachable({c})  # tasks placed now get 2 copies of 3
    for _ in range(4):
        assert cluster.call(a, "POST", "/q", {"url": URL, "countdown": 3600}).status == 200

    def under_replicated() -> float:
        total = 0.0
        for node in cluster.nodes.values():
            # (the in-memory cluster's membership has no view: read the task gauges only)
            metrics = NodeMetrics(node, clock_ms=lambda: 0, process=False)
            (family,) = [
                f
                for f in _NodeCollector(metrics)._tasks_held(metrics, node)
                if f.name == "miyamoto_under_replicated_tasks"
            ]
            total += family.samples[0].value
        return total

    assert under_replicated() == 4
    cluster.report_unreachable(set())
    cluster.advance(1_000)
    assert under_replicated() == 0
