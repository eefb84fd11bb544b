"""`GET /_queues`: every queue the cluster knows, with its counts, on in-memory nodes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from miyamoto.io.ops_endpoints import route_label
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.limits import Limits
from miyamoto.logic.peer_rules import problem
from miyamoto.logic.queue_config import QueueConfig, QueuesConfig
from miyamoto.logic.replica_messages import QueuesListed, QueueSummary

from .cluster_driver import T0_MS, Cluster

A, B, C = "a:1", "b:1", "c:1"
URL = "http://receiver:9000/work"
CONFIG = NodeConfig(replicas=2)


def enqueue(cluster: Cluster, via: str, queue: str, countdown: int) -> None:
    reply = cluster.call(via, "POST", f"/{queue}", {"url": URL, "countdown": countdown})
    assert reply.status == 200, reply.body


def listing(cluster: Cluster, via: str) -> Any:
    reply = cluster.call(via, "GET", "/_queues")
    assert reply.status == 200, reply.body
    return reply.json()


def by_name(body: Any) -> dict[str, Any]:
    return {entry["queue"]: entry for entry in body["queues"]}


def test_every_queue_is_listed_once_with_each_task_counted_once_across_members() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    enqueue(cluster, A, "emails", 30)
    enqueue(cluster, B, "emails", 10)
    enqueue(cluster, C, "emails", 20)
    enqueue(cluster, C, "reports", 60)
    assert cluster.call(A, "POST", "/reports/_pause").status == 200
    body = listing(cluster, B)
    assert [entry["queue"] for entry in body["queues"]] == ["emails", "reports"]
    queues = by_name(body)
    emails, reports = queues["emails"], queues["reports"]
    assert emails["counts"]["scheduled"] == 3
    assert emails["oldest_eta"] == (T0_MS + 10_000) / 1000
    assert emails["paused_on"] == []
    assert reports["counts"]["scheduled"] == 1
    assert reports["paused_on"] == [A, B, C]
    assert (body["truncated"], body["members_answered"], body["members_unanswered"]) == (
        False,
        3,
        [],
    )


def test_a_configured_queue_with_no_tasks_is_listed_with_zero_counts() -> None:
    configured = QueuesConfig(queues=(("billing", QueueConfig(rate_per_s=5)),))
    cluster = Cluster([A, B], replace(CONFIG, queues=configured))
    queues = by_name(listing(cluster, A))
    assert list(queues) == ["billing"]
    assert set(queues["billing"]["counts"].values()) == {0}
    assert queues["billing"]["oldest_eta"] is None
    assert queues["billing"]["rate_per_s"] == 5


def test_a_member_that_does_not_answer_is_named_and_its_queues_are_missing() -> None:
    cluster = Cluster([A, B], replace(CONFIG, replicas=1))
    enqueue(cluster, A, "q", 60)
    cluster.down = {B}
    rid = cluster.request(A, "GET", "/_queues")
    assert rid not in cluster.responses  # waits for B
    cluster.advance(CONFIG.peer_answer_timeout_ms)
    body = cluster.responses[rid].json()
    assert body["members_answered"] == 1
    assert body["members_unanswered"] == [B]


def test_the_list_is_bounded_by_the_active_queue_limit_and_says_it_was_cut() -> None:
    limits = replace(Limits(), active_queues_max=2)
    cluster = Cluster([A, B], replace(CONFIG, limits=limits, replicas=1))
    enqueue(cluster, A, "a", 60)
    enqueue(cluster, B, "b", 60)
    enqueue(cluster, B, "c", 60)  # three queues known across the members; the limit is 2
    body = listing(cluster, A)
    assert [entry["queue"] for entry in body["queues"]] == ["a", "b"]
    assert body["truncated"] is True


def test_a_node_that_is_not_a_member_yet_answers_503() -> None:
    cluster = Cluster([A, B], CONFIG)
    cluster.membership[A].set_members((B,))
    reply = cluster.call(A, "GET", "/_queues")
    assert reply.status == 503
    assert "not a cluster member" in reply.json()["error"]


def test_a_peer_list_out_of_order_or_over_the_limit_is_refused() -> None:
    summary = QueueSummary(
        queue="q", counts=(), oldest_eta_ms=None, attempts_last_minute=0, paused=False
    )
    limits = replace(Limits(), active_queues_max=2)
    out_of_order = QueuesListed(
        ref=1, queues=(replace(summary, queue="z"), summary), truncated=False
    )
    assert problem(out_of_order, limits) == "queues: each name once, sorted"
    names = ("a", "b", "c")
    over = QueuesListed(
        ref=1, queues=tuple(replace(summary, queue=n) for n in names), truncated=True
    )
    assert problem(over, limits) == "queues: at most 2"
    bad_count = QueuesListed(
        ref=1, queues=(replace(summary, counts=(("done", 1),)),), truncated=False
    )
    assert problem(bad_count, limits) is not None


def test_the_listing_has_its_own_route_label_in_the_metrics() -> None:
    assert route_label("GET", "/_queues") == "GET /_queues"
