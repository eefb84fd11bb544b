"""Repair: a task short of copies gets them back as soon as a member can take them, on
in-memory nodes (one rule per test)."""

from __future__ import annotations

from miyamoto.logic.config import NodeConfig
from miyamoto.logic.node import Node
from miyamoto.logic.replica_messages import StoreCopy

from .cluster_driver import Cluster

A, B, C = "a:1", "b:1", "c:1"
URL = "http://receiver:9000/work"
CONFIG = NodeConfig(replicas=3, replica_delay_ms=5_000, claim_lease_ms=3_000)
HOUR_S = 3600


def test_a_copy_lost_at_enqueue_is_made_again_long_before_the_task_is_due() -> None:
    # Root cause B (issue 14): the holder named for a copy whose StoreCopy was lost kept
    # none until the task came due (an hour here, up to 30 days in life).
    cluster = Cluster([A, B, C], CONFIG)
    rid = cluster.request(A, "POST", "/q", {"url": URL, "countdown": HOUR_S, "id": "job-1"})
    lost = [(to, e) for to, e in cluster.inbox if to == C and isinstance(e.message, StoreCopy)]
    assert len(lost) == 1
    cluster.inbox.remove(lost[0])
    cluster.advance(CONFIG.placement_timeout_ms)
    reply = cluster.responses[rid]
    assert reply.status == 503 and "stored 2 of 3 copies" in reply.json()["error"]
    body = reply.json()  # (the client is gone: it does not retry)
    cluster.advance(5_000)
    assert sorted(cluster.holders("q", body["id"])) == [A, B, C]
    assert all(not node.repair.unconfirmed_copies for node in cluster.nodes.values())
    # and the copy made again is the task's: it is delivered once.
    cluster.advance(HOUR_S * 1000 + 60_000)
    (delivery,) = [d for d in cluster.deliveries if d.task_id == body["id"]]
    cluster.answer(delivery, 200)
    cluster.advance(60_000)
    assert [d.task_id for d in cluster.deliveries] == [body["id"]]
    assert set(cluster.holders("q", body["id"]).values()) == {"succeeded"}


def test_a_holder_restarted_without_its_disk_gets_its_copies_again() -> None:
    # Root cause C (issue 14): the member id list did not change, and repair counted holders
    # by id, so the empty new process still counted as a copy.
    cluster = Cluster([A, B, C], CONFIG)
    replies = [cluster.call(A, "POST", "/q", {"url": URL, "countdown": HOUR_S}) for _ in range(5)]
    ids = [reply.json()["id"] for reply in replies]
    assert all(reply.json()["replicas"] == 3 for reply in replies)
    cluster.restart_without_disk(B)
    cluster.advance(5_000)
    assert all(sorted(cluster.holders("q", task_id)) == [A, B, C] for task_id in ids)
    cluster.advance(HOUR_S * 1000 + 60_000)
    for delivery in list(cluster.deliveries):
        cluster.answer(delivery, 200)
    cluster.advance(60_000)
    assert sorted(d.task_id for d in cluster.deliveries) == sorted(ids)


def test_a_holder_restarted_from_its_disk_keeps_its_copies_and_gets_none_again() -> None:
    # The same incarnation (a durable restart restores it): its copies are on disk, and it
    # counts as their holder as before.
    cluster = Cluster([A, B, C], CONFIG)
    task_id = cluster.call(A, "POST", "/q", {"url": URL, "countdown": HOUR_S}).json()["id"]
    cluster.set_members([A, B, C])  # a new epoch, the same processes
    sent = [e for _, e in cluster.inbox if isinstance(e.message, StoreCopy)]
    cluster.advance(5_000)
    assert sent == [] and sorted(cluster.holders("q", task_id)) == [A, B, C]
    assert all(not node.repair.unconfirmed_copies for node in cluster.nodes.values())


def _index_of(node: Node) -> dict[tuple[tuple[str, int], ...], set[str]]:
    index: dict[tuple[tuple[str, int], ...], set[str]] = {}
    for holders, tasks in node.repair._by_holders.items():
        index[holders] = {task.id for task in tasks}
    return index


def _walked(node: Node) -> dict[tuple[tuple[str, int], ...], set[str]]:
    index: dict[tuple[tuple[str, int], ...], set[str]] = {}
    for tasks in node.tasks.store.by_queue():
        for task in tasks:
            if task.holders:
                index.setdefault(task.holders, set()).add(task.id)
    return index


def test_a_member_leaving_visits_only_the_tasks_it_held_and_the_index_matches_the_tasks() -> None:
    # Issue 10: a member change walked every task on the loop. Now the repair visits, through
    # its index from holder list to tasks, the tasks that named the member that left.
    D = "d:1"
    cluster = Cluster([A, B, C, D], NodeConfig(replicas=2, replica_delay_ms=5_000))
    ids = [
        cluster.call(A, "POST", "/q", {"url": URL, "countdown": HOUR_S}).json()["id"]
        for _ in range(40)
    ]
    done = cluster.call(A, "POST", "/q", {"url": URL}).json()["id"]
    for delivery in list(cluster.deliveries):
        cluster.answer(delivery, 200)
    node = cluster.nodes[A]
    naming_d = {t for t in ids if D in cluster.holders("q", t) and A in cluster.holders("q", t)}
    assert 0 < len(naming_d) < len([t for t in ids if A in cluster.holders("q", t)])
    visited = node.repair._affected({A, B, C}, 2)
    assert {task.id for task in visited} == naming_d  # (not the finished one, nor the others)
    cluster.down = {D}
    cluster.set_members([A, B, C])
    cluster.advance(5_000)
    assert all(len(cluster.holders("q", t)) == 2 for t in ids)
    assert set(cluster.holders("q", done).values()) == {"succeeded"}
    for name in (A, B, C):
        assert _index_of(cluster.nodes[name]) == _walked(cluster.nodes[name])
