"""Duplicates the simulator found after "asking before firing", pinned by seed and by a scripted
cluster (tests/cluster_driver.py) each.

1  Two enqueues of one client id placed on disjoint holders, because the coordinators saw
   different member lists (members removed by a crash or a partition at the first enqueue, back
   at the repeat: seeds 54 crash_restart, 46 bridge) or skipped different members as unreachable
   (a node just resumed from a pause with a stale view: seed 23 pause). Each group's copy 0
   fired without asking, knowing nothing of the other group.
   Fix: a copy 0 whose holders are not the members its key prefers now asks before it fires,
   and a sync that finds the task waiting on holders that do not list it joins them instead of
   firing (the preferred group is the one every later enqueue finds).
2  A holder whose StoreCopy was lost hears `Unconfirmed` for a task it does not hold; the retry
   of the enqueue then stores a fresh copy 0 there, due at once, which fired before the
   coordinator learnt that another holder had already delivered the task (seed 19 one_way).
   Fix: `Unconfirmed` for an absent copy is remembered, and the copy asks when it arrives.
"""

from __future__ import annotations

from miyamoto.logic.config import NodeConfig
from miyamoto.logic.messages import Envelope
from miyamoto.logic.replica_messages import StoreCopy
from miyamoto.logic.ring import placement
from sim.checkers import Anomaly
from sim.run import run
from sim.scenarios import Shape, draw_config

from .cluster_driver import Cluster

A, B, C, D, E = "a:1", "b:1", "c:1", "d:1", "e:1"
ALL = [A, B, C, D, E]
URL = "http://receiver:9000/work"
R2 = NodeConfig(replicas=2, replica_delay_ms=5_000, claim_lease_ms=3_000)
TASK_ID = "job-1"


AS_FOUND = Shape(late=False)
"""These runs were found before late tasks existed: replay them as found."""


def _anomalies(seed: int, scenario: str) -> set[Anomaly]:
    report = run(draw_config(seed, scenario, AS_FOUND)).report
    return {v.anomaly for v in report.violations}


def _order(members: list[str], task_id: str = TASK_ID) -> list[str]:
    return placement(f"q/{task_id}", members)


def _enqueue(cluster: Cluster, via: str, countdown_s: float) -> str:
    reply = cluster.call(via, "POST", "/q", {"url": URL, "id": TASK_ID, "countdown": countdown_s})
    assert reply.status == 200, reply.body
    return str(reply.json()["status"])


def _deliver_all(cluster: Cluster, ms: int) -> list[str]:
    """Runs the cluster for `ms`, answering each delivery 200 as it starts; the delivering
    nodes."""
    answered = 0
    for _ in range(ms // 500):
        cluster.advance(500)
        for delivery in cluster.deliveries[answered:]:
            cluster.answer(delivery, 200)
        answered = len(cluster.deliveries)
    return [d.node for d in cluster.deliveries]


def _two_groups_after_members_return(
    first_countdown_s: float, repeat_countdown_s: float
) -> Cluster:
    """The id's two preferred members are out when it is first enqueued (it goes to the next
    two), and back when a repeat arrives through a member holding no copy: fresh copies on the
    preferred two, a group that does not know the first."""
    preferred = _order(ALL)[:2]
    cluster = Cluster(ALL, R2)
    cluster.set_members([m for m in ALL if m not in preferred])
    first_holders = _order([m for m in ALL if m not in preferred])[:2]
    assert _enqueue(cluster, first_holders[0], first_countdown_s) == "scheduled"
    cluster.set_members(ALL)
    (outsider,) = [m for m in ALL if m not in preferred and m not in first_holders]
    assert _enqueue(cluster, outsider, repeat_countdown_s) == "scheduled"  # the second group
    assert set(cluster.holders("q", TASK_ID)) == set(preferred) | set(first_holders)
    return cluster


# -- 1: two groups of copies of one id -------------------------------------------------------


def test_an_old_group_of_copies_asks_when_a_repeat_placed_a_new_one_that_fired_first() -> None:
    # 54 crash_restart: the new group is due first and delivers; the old group's copy 0, no
    # longer where the id is placed, asks before it fires, hears "succeeded" and finishes.
    cluster = _two_groups_after_members_return(first_countdown_s=10, repeat_countdown_s=3)
    assert _deliver_all(cluster, 40_000) == _order(ALL)[:1]
    assert set(cluster.holders("q", TASK_ID).values()) == {"succeeded"}


def test_an_old_group_due_first_joins_the_new_group_instead_of_firing_beside_it() -> None:
    # 46 bridge: the old group is due first; its copy 0 asks, finds the new group waiting (and
    # not listing it), joins it last in line; the new group's copy 0 delivers, once.
    cluster = _two_groups_after_members_return(first_countdown_s=3, repeat_countdown_s=10)
    assert _deliver_all(cluster, 40_000) == _order(ALL)[:1]
    assert set(cluster.holders("q", TASK_ID).values()) == {"succeeded"}


def test_copies_placed_by_a_coordinator_that_skipped_the_preferred_members_ask_first() -> None:
    # 23 pause: a node just back from a pause still takes the id's preferred members for
    # unreachable and places a repeat on the next two; its copy 0 is due at once (the ETA has
    # passed) while the preferred group waits for its ETA.
    members = [A, B, C, D]
    order = _order(members)
    cluster = Cluster(members, R2)
    assert _enqueue(cluster, order[3], countdown_s=3) == "scheduled"  # on order[0], order[1]
    stale = order[3]
    cluster.membership[stale].unreachable_ids = tuple(sorted(order[:2]))
    assert _enqueue(cluster, stale, countdown_s=0) == "scheduled"  # fresh on order[2], order[3]
    assert set(cluster.holders("q", TASK_ID)) == set(members)
    cluster.membership[stale].unreachable_ids = ()
    assert _deliver_all(cluster, 40_000) == order[:1]


def test_seed_54_crash_restart_delivers_task_27_once() -> None:
    assert Anomaly.DUPLICATED not in _anomalies(54, "crash_restart")


def test_seed_46_bridge_delivers_task_94_once() -> None:
    assert Anomaly.DUPLICATED not in _anomalies(46, "bridge")


def test_seed_23_pause_delivers_task_72_once() -> None:
    assert Anomaly.DUPLICATED not in _anomalies(23, "pause")


# -- 2: a copy that arrives after its Unconfirmed ----------------------------------------------


def test_a_retry_does_not_fire_a_fresh_copy_where_the_first_store_copy_was_lost() -> None:
    # 19 one_way: the StoreCopy to the id's copy 0 holder is lost; the enqueue answers 503 and
    # sends Unconfirmed (which arrives). The coordinator's own copy 1 asks, finds nobody else,
    # delivers. The client's retry through the third node stores a fresh copy 0 on the holder
    # that never had one, due at once: it must ask (and hear "succeeded"), not fire.
    members = [A, B, C]
    order = _order(members)
    copy0, coordinator, third = order
    cluster = Cluster(members, R2)
    rid = cluster.request(
        coordinator, "POST", "/q", {"url": URL, "id": TASK_ID, "countdown": 0}
    )

    def lost(item: tuple[str, Envelope]) -> bool:
        return item[0] == copy0 and isinstance(item[1].message, StoreCopy)

    cluster.inbox = [item for item in cluster.inbox if not lost(item)]
    cluster.advance(R2.placement_timeout_ms)
    assert cluster.responses.pop(rid).status == 503
    # Since root cause B's fix the Unconfirmed makes copy 0's holder get its copy again at
    # once (tests/test_repair.py), and copy 0 delivers; the retry still finds the task.
    assert _deliver_all(cluster, 10_000) == [copy0]
    assert cluster.holders("q", TASK_ID) == {copy0: "succeeded", coordinator: "succeeded"}
    assert _enqueue(cluster, third, countdown_s=0) == "duplicate"
    assert _deliver_all(cluster, 30_000) == [copy0]
    assert set(cluster.holders("q", TASK_ID).values()) == {"succeeded"}


def test_seed_19_one_way_delivers_task_139_once() -> None:
    assert Anomaly.DUPLICATED not in _anomalies(19, "one_way")
