"""The replication, claim and cancel protocol, one rule per test, on in-memory nodes."""

from __future__ import annotations

from dataclasses import replace

from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import DeliveryResponded
from miyamoto.logic.retry import RetryPolicy
from miyamoto.logic.ring import placement

from .cluster_driver import T0_MS, Cluster

A, B, C = "a:1", "b:1", "c:1"  # node ids as host:port
URL = "http://receiver:9000/work"
CONFIG = NodeConfig(replicas=2, replica_delay_ms=5_000, claim_lease_ms=3_000)


def enqueue(cluster: Cluster, via: str, **task: object) -> dict[str, object]:
    reply = cluster.call(via, "POST", "/q", {"url": URL, **task})
    assert reply.status == 200, reply.body
    result: dict[str, object] = reply.json()
    return result


def test_enqueue_is_acknowledged_only_after_every_copy_is_stored() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    rid = cluster.request(A, "POST", "/q", {"url": URL, "countdown": 10})
    assert rid not in cluster.responses  # the remote copy is not stored yet
    cluster.settle()
    body = cluster.responses[rid].json()
    assert (body["status"], body["replicas"]) == ("scheduled", 2)
    assert sorted(cluster.holders("q", body["id"]).values()) == ["scheduled", "scheduled"]


def test_enqueue_is_an_error_when_a_holder_does_not_answer_in_time() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    cluster.down = {B, C}
    rid = cluster.request(A, "POST", "/q", {"url": URL, "id": "job-1"})
    cluster.advance(CONFIG.placement_timeout_ms)
    reply = cluster.responses[rid]
    assert reply.status == 503
    assert "of 2 copies" in reply.json()["error"]
    assert "same task id" in reply.json()["error"]
    assert cluster.nodes[A].coordinator.acks_awaited() == 0  # none awaited forever


def test_copy_k_is_due_at_eta_plus_k_replica_delays() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    task_id = enqueue(cluster, A, countdown=10)["id"]
    assert isinstance(task_id, str)
    due = sorted(
        node.tasks.get("q", task_id).due_ms  # type: ignore[union-attr]
        for name, node in cluster.nodes.items()
        if name in cluster.holders("q", task_id)
    )
    assert due == [T0_MS + 10_000, T0_MS + 15_000]


def test_first_copies_spread_over_the_members() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    firsts = {A: 0, B: 0, C: 0}
    for _ in range(300):
        task_id = enqueue(cluster, A)["id"]
        for name, node in cluster.nodes.items():
            task = node.tasks.get("q", str(task_id))
            if task is not None and task.copy_index == 0:
                firsts[name] += 1
    assert max(firsts.values()) <= 0.45 * 300


def test_a_delivering_holder_holds_the_other_copies_back_until_it_succeeds() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    task_id = enqueue(cluster, A)["id"]
    (first,) = cluster.deliveries
    cluster.advance(60_000)  # a slow receiver: the claim is renewed while we wait
    assert len(cluster.deliveries) == 1
    cluster.answer(first, 200)
    assert sorted(cluster.holders("q", str(task_id)).values()) == ["succeeded", "succeeded"]
    cluster.advance(60_000)
    assert len(cluster.deliveries) == 1


def test_a_finished_task_is_not_revived_by_a_late_copy() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A)["id"])
    (first,) = cluster.deliveries
    cluster.answer(first, 200)
    holders = cluster.holders("q", task_id)
    other = next(n for n in holders if n != first.node)
    copy = cluster.nodes[other].tasks.get("q", task_id)
    assert copy is not None and copy.state.value == "succeeded"
    again = cluster.call(A, "POST", "/q", {"url": URL, "id": task_id})
    assert again.json()["status"] == "duplicate"
    cluster.advance(60_000)
    assert len(cluster.deliveries) == 1


def _first_holder(cluster: Cluster, task_id: str) -> str:
    return next(
        n for n, node in cluster.nodes.items()
        if (t := node.tasks.get("q", task_id)) is not None and t.copy_index == 0
    )


def test_when_the_first_holder_is_dead_the_next_copy_fires_at_its_own_time() -> None:
    # The leader reports the dead holder unreachable: the next copy does not wait for its
    # answer to the question it asks before firing.
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A, countdown=10)["id"])
    first = _first_holder(cluster, task_id)
    cluster.down.add(first)
    cluster.report_unreachable({first})
    cluster.advance(14_999)
    assert cluster.deliveries == []
    cluster.advance(1)
    (delivery,) = cluster.deliveries
    assert delivery.at_ms == T0_MS + 15_000
    assert delivery.node != first


def test_the_next_copy_waits_for_a_silent_first_holder_until_it_is_reported_unreachable() -> None:
    # A silent first holder may have delivered the task (its finished notice lost with its
    # answer): the next copy asks again until the first answers, or the leader reports it
    # unreachable (about a second after it died).
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A, countdown=10)["id"])
    first = _first_holder(cluster, task_id)
    cluster.down.add(first)
    cluster.advance(30_000)
    assert cluster.deliveries == []
    cluster.report_unreachable({first})
    reported_ms = cluster.now_ms
    cluster.advance(CONFIG.peer_answer_timeout_ms)
    (delivery,) = cluster.deliveries
    assert delivery.node != first
    assert delivery.at_ms <= reported_ms + CONFIG.peer_answer_timeout_ms


def test_a_lost_finished_notice_does_not_let_the_next_copy_fire() -> None:
    # Copy 0 delivers, but its finished notice to copy 1 is lost: copy 1 asks before it fires,
    # hears "succeeded", and does not deliver again.
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A)["id"])
    (first,) = cluster.deliveries
    cluster.feed(first.node, DeliveryResponded(delivery_id=first.action.delivery_id, status=200))
    cluster.inbox.clear()  # the claim renewals and the finished notices: all lost
    cluster.advance(120_000)
    assert len(cluster.deliveries) == 1
    assert set(cluster.holders("q", task_id).values()) == {"succeeded"}


def test_when_the_claimant_dies_mid_delivery_the_next_copy_fires_after_the_lease() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    enqueue(cluster, A)
    (first,) = cluster.deliveries
    cluster.down.add(first.node)
    cluster.report_unreachable({first.node})
    cluster.advance(CONFIG.replica_delay_ms + CONFIG.claim_lease_ms)
    (second,) = cluster.deliveries[1:]
    assert second.node != first.node
    assert second.at_ms <= T0_MS + CONFIG.replica_delay_ms + CONFIG.claim_lease_ms


def test_a_failing_holder_keeps_the_task_and_the_retry_count_travels() -> None:
    config = replace(CONFIG, retry=RetryPolicy(min_backoff_ms=1_000, retry_limit=5))
    cluster = Cluster([A, B, C], config)
    enqueue(cluster, A)
    (first,) = cluster.deliveries
    cluster.answer(first, 500)
    cluster.advance(1_000)
    (second,) = cluster.deliveries[1:]
    assert second.node == first.node  # the claim held the other copy back
    assert dict(second.action.request.headers)["X-Task-Retry-Count"] == "1"


def test_cancel_through_a_node_that_holds_no_copy_cancels_every_copy() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A, countdown=10)["id"])
    outsider = next(n for n in (A, B, C) if n not in cluster.holders("q", task_id))
    reply = cluster.call(outsider, "DELETE", f"/q/{task_id}")
    assert reply.status == 200, reply.body
    assert sorted(cluster.holders("q", task_id).values()) == ["cancelled", "cancelled"]
    cluster.advance(60_000)
    assert cluster.deliveries == []


def test_cancel_is_not_confirmed_while_a_holder_is_unreachable() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A, countdown=10)["id"])
    holders = list(cluster.holders("q", task_id))
    cluster.down.add(holders[1])
    rid = cluster.request(holders[0], "DELETE", f"/q/{task_id}")
    cluster.advance(CONFIG.peer_answer_timeout_ms)
    reply = cluster.responses[rid]
    assert reply.status == 503
    assert "not confirmed" in reply.json()["error"]


def test_get_through_any_node_shows_the_most_advanced_copy() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A)["id"])
    (first,) = cluster.deliveries
    cluster.answer(first, 200)
    for name in (A, B, C):
        task = cluster.call(name, "GET", f"/q/{task_id}").json()
        assert task["state"] == "succeeded"
        assert len(task["copies"]) == 2
    assert cluster.call(A, "GET", "/q/unknown").status == 404


def test_a_member_leaving_gets_its_copies_made_again_elsewhere() -> None:
    cluster = Cluster([A, B, C], replace(CONFIG, replicas=2))
    ids = [str(enqueue(cluster, A, countdown=100)["id"]) for _ in range(30)]
    cluster.down.add(C)
    cluster.set_members([A, B])
    for task_id in ids:
        assert sorted(n for n in cluster.holders("q", task_id) if n != C) == [A, B]


def test_the_same_id_enqueued_on_two_nodes_at_once_is_one_task_delivered_once() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    first = cluster.request(A, "POST", "/q", {"url": URL, "id": "order-1"})
    second = cluster.request(B, "POST", "/q", {"url": URL, "id": "order-1"})
    cluster.settle()
    statuses = sorted(cluster.responses[r].json()["status"] for r in (first, second))
    assert "error" not in statuses
    cluster.advance(60_000)
    (delivery,) = cluster.deliveries
    cluster.answer(delivery, 200)
    cluster.advance(60_000)
    assert len(cluster.deliveries) == 1


def test_an_id_repeated_after_the_members_changed_is_still_delivered_once() -> None:
    # Found in review: the new placement put fresh copies on members that never had the task,
    # and they fired although the enqueue was answered "duplicate".
    cluster = Cluster([A, B, C], CONFIG)
    ids = [f"job-{i}" for i in range(20)]
    for task_id in ids:
        enqueue(cluster, A, id=task_id)
    for delivery in list(cluster.deliveries):
        cluster.answer(delivery, 200)
    cluster.down.add(C)
    cluster.set_members([A, B])
    cluster.down.discard(C)
    cluster.set_members([A, B, C])
    for task_id in ids:
        assert enqueue(cluster, B, id=task_id)["status"] == "duplicate"
    cluster.advance(120_000)
    assert len(cluster.deliveries) == len(ids)


def test_an_id_repeated_while_pending_joins_the_fresh_copies_to_the_task() -> None:
    # With R >= 2, the holders of an id before and after one member change overlap, so the
    # repeat finds the task. (With R = 1 they need not: docs/cluster.md says so.)
    cluster = Cluster([A, B, C], CONFIG)
    cluster.set_members([A, B])
    ids = [f"job-{i}" for i in range(20)]
    for task_id in ids:
        enqueue(cluster, A, id=task_id, countdown=10)
    cluster.set_members([A, B, C])
    for task_id in ids:
        assert enqueue(cluster, C, id=task_id, countdown=10)["status"] == "duplicate"
    moved = [t for t in ids if len(cluster.holders("q", t)) == 3]
    assert moved  # some ids now have a fresh copy on C: the case under test
    cluster.advance(60_000)
    assert sorted(d.task_id for d in cluster.deliveries) == sorted(ids)


def test_a_delete_while_the_task_waits_for_its_retry_cancels_every_copy() -> None:
    # The claimant's retry claim holds the other copy back, but it is no delivery in flight:
    # the DELETE cancels both copies (docs/api.md: "a new DELETE cancels it").
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A)["id"])
    (attempt,) = cluster.deliveries
    cluster.answer(attempt, 500)
    assert sorted(cluster.holders("q", task_id).values()) == ["retrying", "scheduled"]
    reply = cluster.call(B, "DELETE", f"/q/{task_id}")
    assert reply.status == 200, reply.json()
    assert set(cluster.holders("q", task_id).values()) == {"cancelled"}
    cluster.advance(600_000)
    assert cluster.deliveries == [attempt]


def test_a_delete_while_an_attempt_is_in_flight_cancels_no_copy() -> None:
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A)["id"])
    (attempt,) = cluster.deliveries
    reply = cluster.call(B, "DELETE", f"/q/{task_id}")
    assert reply.status == 409
    assert sorted(cluster.holders("q", task_id).values()) == ["delivering", "scheduled"]
    cluster.answer(attempt, 500)
    cluster.advance(10_000)  # the first retry (after the minimum backoff) is not cancelled
    (retry,) = cluster.deliveries[1:]
    assert retry.task_id == task_id and retry.node == attempt.node


def test_a_delete_is_not_confirmed_while_a_member_that_might_hold_a_copy_is_silent() -> None:
    # The silent member holds no copy that the answers name, but it could hold one that they
    # do not (`python -m sim --seed 21 --scenario random_halves`: two enqueues of one id,
    # placed through members that saw different member lists; the DELETE confirmed by one
    # group answered 200 and the other group delivered).
    cluster = Cluster([A, B, C], CONFIG)
    task_id = str(enqueue(cluster, A, countdown=60)["id"])
    silent = next(n for n in (A, B, C) if n not in cluster.holders("q", task_id))
    asker = next(n for n in (A, B, C) if n != silent)
    cluster.down.add(silent)
    rid = cluster.request(asker, "DELETE", f"/q/{task_id}")
    cluster.advance(CONFIG.peer_answer_timeout_ms)
    reply = cluster.responses.pop(rid)
    assert reply.status == 503 and silent in reply.json()["error"], reply.json()
    cluster.down.clear()
    assert cluster.call(asker, "DELETE", f"/q/{task_id}").status == 200


def test_a_copy_that_finds_no_other_copy_makes_them_again_where_a_repeat_looks() -> None:
    # `python -m sim --seed 285 --scenario swarm`: copy 0's holder never stored its copy (its
    # StoreCopy lost); copy 1 asked, heard "none" from everyone, and delivered, leaving the
    # task's end on itself alone; a repeat of the id placed on the preferred members then
    # delivered it again. Now the copy that fires makes the missing copies again (after its
    # own in line), so the holders a repeat asks know the task.
    cluster = Cluster([A, B, C], CONFIG)
    task_id = "job-remade"
    first, second = placement(f"q/{task_id}", [A, B, C])[:2]
    rid = cluster.request(second, "POST", "/q", {"url": URL, "id": task_id, "countdown": 60})
    cluster.inbox = [(to, e) for to, e in cluster.inbox if to != first]
    cluster.down = {first}  # (and so are the copies sent again, until `second` fires)
    cluster.advance(CONFIG.placement_timeout_ms)
    assert cluster.responses[rid].status == 503
    assert cluster.holders("q", task_id) == {second: "scheduled"}
    cluster.report_unreachable({first})
    cluster.advance(60_000 + CONFIG.replica_delay_ms)
    (delivery,) = cluster.deliveries
    assert delivery.node == second
    cluster.down = set()
    cluster.report_unreachable(set())
    cluster.advance(CONFIG.repair_retry_ms)
    cluster.answer(delivery, 200)
    assert cluster.holders("q", task_id) == {first: "succeeded", second: "succeeded"}
    again = cluster.call(first, "POST", "/q", {"url": URL, "id": task_id})
    assert again.json()["status"] == "duplicate"
    cluster.advance(60_000)
    assert len(cluster.deliveries) == 1


def test_a_repair_copy_never_acknowledged_is_forgotten_once_the_task_succeeds() -> None:
    # Found in issue 10: the unacknowledged copy stayed listed forever, and every 2 s the
    # holder scanned all its tasks again for it.
    D = "d:1"
    cluster = Cluster([A, B, C, D], replace(CONFIG, replicas=2))
    task_id = str(enqueue(cluster, A, countdown=10)["id"])
    copies = {n: cluster.nodes[n].tasks.get("q", task_id) for n in cluster.holders("q", task_id)}
    first, second = sorted(copies, key=lambda n: copies[n].copy_index)  # type: ignore[union-attr]
    third, fourth = [n for n in [A, B, C, D] if n not in (first, second)]
    # `second` and `fourth` leave: the repair's copy goes to `third`, which never answers.
    cluster.down |= {second, third, fourth}
    cluster.set_members([first, third])
    repair = cluster.nodes[first].repair
    assert repair.unconfirmed_copies
    cluster.advance(10_000)
    (delivery,) = [d for d in cluster.deliveries if d.task_id == task_id]
    cluster.answer(delivery, 200)
    cluster.advance(10_000)
    assert repair.unconfirmed_copies == {}
    assert repair.retry_at_ms is None


def test_tasks_placed_while_a_member_was_unreachable_get_their_copies_once_it_is_back() -> None:
    # Found in issue 10: they kept one copy too few until they came due, up to 30 days later.
    cluster = Cluster([A, B, C], replace(CONFIG, replicas=3))
    cluster.report_unreachable({C})
    ids = [str(enqueue(cluster, A, countdown=3600)["id"]) for _ in range(10)]
    assert all(len(cluster.holders("q", task_id)) == 2 for task_id in ids)
    cluster.report_unreachable(set())
    cluster.advance(1_000)
    assert all(sorted(cluster.holders("q", task_id)) == [A, B, C] for task_id in ids)
    assert sum(len(node.repair.under_replicated) for node in cluster.nodes.values()) == 0
    # The copies made are the task's: one delivery, the others held back by its claims.
    cluster.advance(3_600_000)
    firsts = [d for d in cluster.deliveries if d.task_id in ids]
    assert len(firsts) == 10
    for delivery in firsts:
        cluster.answer(delivery, 200)
    cluster.advance(60_000)
    assert len([d for d in cluster.deliveries if d.task_id in ids]) == 10
