"""`POST /_cluster/leave` on in-memory nodes (tests/cluster_driver.py: the test plays the leader):
the leaving node hands every copy it holds to the members that stay before it asks to be
removed, takes no new task or copy, starts no delivery once handed off, and forgets its copies
once removed; every task is delivered once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import DeliveryResponded, PeerMessageReceived
from miyamoto.logic.leave import LeaveStep
from miyamoto.logic.replica_messages import StoreAck, StoreCopy

from .cluster_driver import Cluster

A, B, C = "a:1", "b:1", "c:1"
URL = "http://receiver:9000/work"
CONFIG = NodeConfig(replicas=2, replica_delay_ms=5_000, claim_lease_ms=3_000)


def _enqueue_many(cluster: Cluster, count: int, countdown: int) -> list[str]:
    ids = []
    for i in range(count):
        reply = cluster.call([A, B, C][i % 3], "POST", "/q", {"url": URL, "countdown": countdown})
        assert reply.status == 200, reply.body
        ids.append(reply.json()["id"])
    return ids


def _pending_copies(cluster: Cluster, name: str) -> int:
    return sum(
        1 for ts in cluster.nodes[name].tasks.store.by_queue() for t in ts if not t.state.is_final
    )


def _deliver_everything(cluster: Cluster, within_ms: int) -> dict[str, int]:
    """Answers 200 to every delivery as it starts; task id -> deliveries."""
    counts: dict[str, int] = {}
    answered = len(cluster.deliveries)
    for _ in range(within_ms // 1_000):
        cluster.advance(1_000)
        while answered < len(cluster.deliveries):
            delivery = cluster.deliveries[answered]
            answered += 1
            counts[delivery.task_id] = counts.get(delivery.task_id, 0) + 1
            cluster.answer(delivery, 200)
    return counts


@pytest.mark.parametrize("removed_before_due", [True, False])
def test_after_a_leave_every_task_has_two_copies_on_the_others_and_is_delivered_once(
    removed_before_due: bool,
) -> None:
    cluster = Cluster([A, B, C], CONFIG)
    ids = _enqueue_many(cluster, 60, countdown=30)
    held_by_c = [i for i in ids if C in cluster.holders("q", i)]
    assert held_by_c  # (the ring gives it its share)

    reply = cluster.call(C, "POST", "/_cluster/leave")
    assert reply.status == 202, reply.body
    assert reply.json()["state"] == "leaving"
    cluster.report_unreachable({C})  # as the leader does once it hears of the leave

    # Handed off: every task has its two copies on the members that stay, acknowledged.
    for task_id in ids:
        on_others = {n: s for n, s in cluster.holders("q", task_id).items() if n != C}
        assert list(on_others.values()) == ["scheduled", "scheduled"], (task_id, on_others)
    leaving = cluster.nodes[C].leave
    assert leaving.step is LeaveStep.REMOVING and leaving.short == 0
    assert cluster.membership[C].asked_removal

    if removed_before_due:
        cluster.set_members([A, B])
        assert leaving.step is LeaveStep.LEFT and _pending_copies(cluster, C) == 0
    counts = _deliver_everything(cluster, 60_000)
    if not removed_before_due:
        cluster.set_members([A, B])
        assert leaving.step is LeaveStep.LEFT and _pending_copies(cluster, C) == 0
        counts_after = _deliver_everything(cluster, 60_000)
        assert counts_after == {}
    assert counts == dict.fromkeys(ids, 1)  # none lost, none twice
    assert not any(d.node == C for d in cluster.deliveries)
    for task_id in ids:
        states = {n: s for n, s in cluster.holders("q", task_id).items() if n != C}
        assert list(states.values()) == ["succeeded", "succeeded"], (task_id, states)


def test_a_delivery_in_flight_finishes_before_the_node_asks_to_be_removed() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    ids = _enqueue_many(cluster, 30, countdown=0)
    on_c = [d for d in cluster.deliveries if d.node == C]
    assert on_c
    for d in cluster.deliveries:
        if d.node != C:
            cluster.answer(d, 200)
    assert cluster.call(C, "POST", "/_cluster/leave").status == 202
    leaving = cluster.nodes[C].leave
    assert leaving.step is LeaveStep.DRAINING  # copies handed off, deliveries still out
    assert not cluster.membership[C].asked_removal
    progress = cluster.call(C, "POST", "/_cluster/leave")
    assert progress.status == 202 and progress.json()["deliveries_in_flight"] == len(on_c)
    for d in on_c:
        cluster.answer(d, 200)
    assert leaving.step is LeaveStep.REMOVING and cluster.membership[C].asked_removal
    cluster.set_members([A, B])
    assert cluster.call(C, "POST", "/_cluster/leave").status == 200
    for method, target in [("GET", f"/q/{ids[0]}"), ("POST", "/q"), ("GET", "/q")]:
        reply = cluster.call(C, method, target, {"url": URL} if method == "POST" else None)
        assert reply.status == 503 and "has left the cluster" in reply.json()["error"]
    counts = _deliver_everything(cluster, 60_000)
    assert counts == {}  # every task was delivered once, before
    assert len(cluster.deliveries) == len(ids)


def test_a_leaving_node_refuses_enqueues_and_copies() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    reply = cluster.call(A, "POST", "/q", {"url": URL, "countdown": 60})
    task = next(t for n in (A, B) if (t := cluster.nodes[n].tasks.get("q", reply.json()["id"])))
    assert cluster.call(C, "POST", "/_cluster/leave").status == 202
    reply = cluster.call(C, "POST", "/q", {"url": URL})
    assert reply.status == 503
    assert "leaving the cluster" in reply.json()["error"]
    before = len(cluster.nodes[C].tasks)
    copy = replace(cluster.nodes[A].repair.copy_of(task, 0), id="new-one")
    envelope = cluster.membership[A].stamp(StoreCopy(ref=7, copy=copy))
    cluster.feed(C, PeerMessageReceived(envelope=envelope))
    assert len(cluster.nodes[C].tasks) == before
    assert cluster.nodes[C].tasks.get("q", "new-one") is None
    assert not [e for _, e in cluster.inbox if isinstance(e.message, StoreAck)]  # no answer


def test_leaving_would_leave_fewer_members_than_replicas_is_refused_and_changes_nothing() -> None:
    cluster = Cluster([A, B], CONFIG)
    reply = cluster.call(B, "POST", "/_cluster/leave")
    assert reply.status == 409
    assert "fewer than the 2 copies" in reply.json()["error"]
    assert not cluster.nodes[B].leave.active and not cluster.membership[B].leaving
    assert cluster.call(B, "POST", "/q", {"url": URL}).status == 200


def test_an_unreachable_member_does_not_count_as_one_that_stays() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    cluster.report_unreachable({B})
    reply = cluster.call(C, "POST", "/_cluster/leave")
    assert reply.status == 409 and "1 other reachable member" in reply.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"node": "b:1"}, 400, "send POST /_cluster/leave to the node that leaves"),
        ({"node": 5}, 400, "not int"),
        ({"nodes": "c:1"}, 400, "JSON object"),
        ([1], 400, "JSON object"),
        ({"node": "c:1"}, 202, ""),
    ],
)
def test_the_body_names_this_node_or_nothing(body: object, status: int, words: str) -> None:
    cluster = Cluster([A, B, C], CONFIG)
    reply = cluster.call(C, "POST", "/_cluster/leave", body)
    assert reply.status == status, reply.body
    if status != 202:
        assert words in reply.json()["error"]
        assert not cluster.nodes[C].leave.active


def test_leave_is_a_post() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    assert cluster.call(C, "GET", "/_cluster/leave").status == 405


def test_a_malformed_enqueue_to_a_leaving_node_still_gets_its_400() -> None:
    # Found by the simulator (tests/test_sim_leave.py, seed 3): it answered 503.
    cluster = Cluster([A, B, C], CONFIG)
    assert cluster.call(C, "POST", "/_cluster/leave").status == 202
    reply = cluster.call(C, "POST", "/q", {"url": "ftp://r0.sim/hook"})
    assert reply.status == 400, reply.body


def test_a_task_that_finishes_while_its_copy_is_handed_off_is_no_longer_awaited() -> None:
    # Found by the simulator: a delivery answered while the new copy's acknowledgement was
    # still on its way left the hand-off awaiting a copy of a finished task.
    cluster = Cluster([A, B, C], CONFIG)
    _enqueue_many(cluster, 12, countdown=0)
    on_c = [d for d in cluster.deliveries if d.node == C]
    assert on_c
    cluster.request(C, "POST", "/_cluster/leave")  # its copies go out; nothing answered yet
    leaving = cluster.nodes[C].leave
    assert leaving.unconfirmed
    for d in on_c:  # (the driver checks every invariant after each event)
        cluster.feed(C, DeliveryResponded(delivery_id=d.action.delivery_id, status=200))
    cluster.settle()
    assert leaving.step is LeaveStep.REMOVING and not leaving.unconfirmed
