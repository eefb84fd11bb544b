"""More node bugs the simulator found, pinned by seed and, where the rule can be shown without
the simulator, by a small scripted cluster (tests/cluster_driver.py).

A to H and K are fixed; each test would fail again if its fix went away.
The seed tests replay `python -m sim --seed N --scenario S` (add `--trace` to see it); a seed
can stop showing its bug when any change moves the run, so each root cause also has a scripted
test where one could be written that does not depend on the seed's luck.

Root causes (the diagnosis report has the traces):
A  a repair made from a stale member list sends a holder list that replaces a newer one;
B  the reconcile of a repeated id sends a holder list captured seconds earlier (and even when it
   adds nothing), replacing the list a repair made meanwhile;
   (A and B: the dropped holder's copy hears no claim and no finished notice, and fires again)
C  every copy of a task whose ETA is more than a replica delay in the past is due at once;
D  heartbeats read right after a pause put the node back in standing, so a copy stored from a
   stale message during the catch-up fires without a sync;
E  a copy stored by a repeated enqueue is never joined to the task when the existing holder's
   answer is lost;
F  the copy a failed (503) enqueue left on its coordinator is missed by the retry once the
   member list changed;
G  two holders removed while away keep their stale copies because each lists the other;
H  a StoreCopy delayed past a repair stores a copy that no holder lists;
K  a cancel refused with 409 (a copy was being delivered) still cancels the other copies, and
   their "cancelled" later finishes the delivering copy when its attempt fails.
E to H are fixed by one rule (docs/replication.md, "Asking before firing"): a copy asks the
members before it fires, unless it is a first copy that the other holders are known to know.
"""

from __future__ import annotations

from collections.abc import Callable

from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import TimerExpired
from miyamoto.logic.ring import placement
from sim.checkers import Anomaly
from sim.run import run
from sim.scenarios import Shape, draw_config

from .cluster_driver import T0_MS, Cluster, Delivery

A, B, C, D, E = "a:1", "b:1", "c:1", "d:1", "e:1"
URL = "http://receiver:9000/work"
ETA_S = (T0_MS + 60_000) / 1000
R2 = NodeConfig(replicas=2, replica_delay_ms=5_000, claim_lease_ms=3_000)
R3 = NodeConfig(replicas=3, replica_delay_ms=5_000, claim_lease_ms=3_000)


AS_FOUND = Shape(late=False)
"""These runs were found before late tasks existed: replay them as found."""


def _anomalies(seed: int, scenario: str) -> set[Anomaly]:
    report = run(draw_config(seed, scenario, AS_FOUND)).report
    return {v.anomaly for v in report.violations}


def _answer_all_for(cluster: Cluster, ms: int, status: int = 200) -> list[Delivery]:
    """Runs the cluster for `ms`, answering every delivery with `status` as it starts."""
    answered: set[int] = set()
    for _ in range(ms // 1_000):
        cluster.advance(1_000)
        for delivery in list(cluster.deliveries):
            if id(delivery) not in answered:
                answered.add(id(delivery))
                cluster.answer(delivery, status)
    return cluster.deliveries


def _id_placed(
    members_before: list[str],
    members_after: list[str],
    want: Callable[[list[str], list[str]], bool],
) -> str:
    """The first id `job-N` whose rendezvous order before and after a member change is as the
    test needs (`want(order_before, order_after)`)."""
    for n in range(10_000):
        task_id = f"job-{n}"
        before = placement(f"q/{task_id}", members_before)
        after = placement(f"q/{task_id}", members_after)
        if want(before, after):
            return task_id
    raise AssertionError("no such id")


# -- A, B: a holder list replaced by an older one ------------------------------------------------


def test_a_repair_from_a_stale_member_list_does_not_orphan_a_newer_copy() -> None:
    """`python -m sim --seed 9 --scenario pause` (A; task-124, also 64, 11, 88, 23): 10.0.0.2,
    paused past the member timeout and removed, resumes and reads the heartbeats that waited for
    it: epoch 8 lists it, so it counts itself in standing and repairs task-124 as its lowest
    holder ([2/0 4/2 5/3]). Its HoldersChanged replaces 10.0.0.4's newer list [4/2 5/3 1/4]
    (epoch 9 repair), dropping 10.0.0.1. 10.0.0.4 delivers at 59.3 s and tells 10.0.0.5 and
    10.0.0.3 only; 10.0.0.1 fires its copy 4 at 63.3 s."""
    assert Anomaly.DUPLICATED not in _anomalies(9, "pause")


def test_a_reconcile_does_not_replace_a_holder_list_repaired_meanwhile_seed_3() -> None:
    """`python -m sim --seed 3 --scenario isolate_one` (B; task-3): 10.0.0.4 coordinates a
    repeat of task-3; 10.0.0.2 answers "exists, holders [1/0 2/1 3/2]" at 57.86 s, 10.0.0.1 is
    cut off, so the enqueue waits 5 s. Meanwhile 10.0.0.2 repairs (10.0.0.1 removed) to
    [2/1 3/2 4/3]. At 62.86 s the reconcile sends the 5 s old [1/0 2/1 3/2] (nothing fresh to
    join) to 10.0.0.2 and 10.0.0.3, dropping 10.0.0.4's own copy 3, which fires at 77.7 s."""
    assert Anomaly.DUPLICATED not in _anomalies(3, "isolate_one")


def test_a_reconcile_does_not_replace_a_holder_list_repaired_meanwhile_seed_7() -> None:
    """`python -m sim --seed 7 --scenario isolate_one` (B; task-5, task-28, task-76): same as
    seed 3 — e.g. task-5: 10.0.0.1 repaired to [1/0 5/2 4/3] at 92.2 s; the reconcile of a
    repeat at 94.0 s (coordinator 10.0.0.5) sends [1/0 2/1 5/2]; 10.0.0.4's copy 3 fires at
    133.5 s after 10.0.0.2 delivered at 117.7 s."""
    assert Anomaly.DUPLICATED not in _anomalies(7, "isolate_one")


def test_a_reconcile_does_not_replace_a_holder_list_repaired_meanwhile_seed_10() -> None:
    """`python -m sim --seed 10 --scenario majorities_ring` (B; task-15): 10.0.0.4's repair
    [4/0 3/1 5/3] at 50.8 s is replaced at 53.5 s by its own reconcile of a repeat with the
    list it was told at 48.5 s, [4/0 3/1 2/2]; 10.0.0.5's copy fires 15 s after 10.0.0.4's."""
    assert Anomaly.DUPLICATED not in _anomalies(10, "majorities_ring")


def test_a_reconcile_does_not_replace_a_holder_list_repaired_meanwhile_seed_11() -> None:
    """`python -m sim --seed 11 --scenario one_way` (B; task-77): 10.0.0.3 repaired twice to
    [3/0 2/2 1/4]; coordinating a repeat at 29.8 s it takes the stale answer of 10.0.0.2
    ([3/0 4/1 2/2], the last "exists" answer wins) and sends it to itself and the others:
    10.0.0.1's copy 4 fires 20 s after 10.0.0.3 delivered."""
    assert Anomaly.DUPLICATED not in _anomalies(11, "one_way")


def test_a_late_reconcile_keeps_the_holder_a_repair_added_while_the_enqueue_waited() -> None:
    # B without the simulator: a repeat of the id waits for a silent holder V; meanwhile V is
    # removed and the first holder repairs onto U; the reconcile then sends the list it was told
    # before the repair, and U's copy no longer hears the first holder's finished notice.
    names = [A, B, C, D, E]
    task_id = "job-b"
    _first, second, silent, _, coordinator = placement(f"q/{task_id}", names)
    cluster = Cluster(names, R3)
    cluster.down = {second}  # the first enqueue stores on `_first` and `silent` only (503)
    rid = cluster.request(coordinator, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    cluster.advance(R3.placement_timeout_ms)
    assert cluster.responses[rid].status == 503
    cluster.down = {silent}
    rid = cluster.request(coordinator, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    cluster.settle()  # `_first` answers "exists"; `second` stores a fresh copy; `silent` is mute
    cluster.set_members([n for n in names if n != silent])  # `_first` repairs meanwhile
    cluster.advance(R3.placement_timeout_ms)
    assert cluster.responses[rid].json()["status"] == "duplicate"
    deliveries = _answer_all_for(cluster, 120_000)
    assert [d.task_id for d in deliveries] == [task_id]


# -- C: an ETA in the past -----------------------------------------------------------------------


def test_a_task_whose_eta_is_long_past_is_delivered_once() -> None:
    """`python -m sim --seed 7 --scenario pause` (C; task-54): 10.0.0.2 takes an enqueue with
    ETA 44.8 s just before a 16 s pause and places it at 60.35 s: copy 0 is due at 44.8 s and
    copy 1 at 49.8 s, both past, so 10.0.0.4 and 10.0.0.1 fire as they store them (60.354,
    60.355 s) and the claims cross. No fault is needed, as the scripted test below shows."""
    assert Anomaly.DUPLICATED not in _anomalies(7, "pause")


def test_copies_of_a_task_with_a_past_eta_still_fire_one_after_the_other() -> None:
    cluster = Cluster([A, B, C], R2)
    reply = cluster.call(
        A, "POST", "/q", {"url": URL, "id": "late", "eta": (T0_MS - 20_000) / 1000}
    )
    assert reply.json()["status"] == "scheduled"
    deliveries = _answer_all_for(cluster, 60_000)
    assert len(deliveries) == 1


# -- D: standing regained from heartbeats that waited during a pause -----------------------------


def test_a_copy_stored_from_a_stale_message_after_a_pause_does_not_fire_after_a_cancel() -> None:
    """`python -m sim --seed 5 --scenario pause` (D; task-30): 10.0.0.2 is paused 62.8-83.3 s
    and removed; task-30 is placed on it (the StoreCopy waits), repaired onto 10.0.0.1 and
    cancelled (200, 10.0.0.2 no longer a holder). At resume the first waiting message is an old
    heartbeat that lists it: `_standing_ms` becomes 83.3 s, `_after` clears `_out_of_standing`
    and marks the copies it holds now; the next waiting message, the StoreCopy, stores a copy
    due at 77.5 s that is not marked and fires at once."""
    assert Anomaly.CANCELLED not in _anomalies(5, "pause")


def test_a_stale_message_read_after_a_pause_does_not_fire_a_cancelled_task() -> None:
    """`python -m sim --seed 8 --scenario pause` (D; task-73 on 10.0.0.3 after a 12 s pause,
    task-31 on 10.0.0.2 after a 25 s pause): as seed 5."""
    assert Anomaly.CANCELLED not in _anomalies(8, "pause")


# -- E, F: copies of a repeated id that nobody joins to the task ---------------------------------


def test_a_fresh_copy_is_joined_even_when_the_existing_holders_answer_is_lost() -> None:
    """`python -m sim --seed 8 --scenario one_way` (E; task-11, task-19): e.g. task-19: a
    repeat coordinated by 10.0.0.2 stores a fresh copy on 10.0.0.3; 10.0.0.5's answer
    ("exists, [5/0 4/2]") is cut (one-way 5->2), so the enqueue times out without a reconcile
    and 10.0.0.5 never learns of 10.0.0.3's copy, which fires 7 s after 10.0.0.5 delivered."""
    assert Anomaly.DUPLICATED not in _anomalies(8, "one_way")


def test_a_copy_left_by_a_failed_enqueue_on_its_coordinator_is_not_delivered_twice() -> None:
    """`python -m sim --seed 6 --scenario swarm` (F; task-25): 10.0.0.2, cut from 10.0.0.3 and
    10.0.0.4, takes a retry of task-25, stores its own copy [4/0 3/1 2/2] and answers 503. The
    next retry (10.0.0.4, after 10.0.0.1 rejoined) places [4, 3, 1], all fresh: "scheduled".
    Nobody knows 10.0.0.2's copy; it fires 4 s after 10.0.0.4 delivered."""
    assert Anomaly.DUPLICATED not in _anomalies(6, "swarm")


def test_a_fresh_copy_is_joined_when_the_holder_that_had_the_id_did_not_answer() -> None:
    # E without the simulator: the id lives on [x, z]; after d joins, a repeat is placed on
    # [d, x]; x is down during that enqueue (503). d's fresh copy must not fire as well.
    before, after = [A, B, C], [A, B, C, D]
    task_id = _id_placed(before, after, lambda b, a: a[:2] == [D, b[0]])
    holder, other = placement(f"q/{task_id}", before)[:2]
    cluster = Cluster(after, R2)
    cluster.set_members(before)
    reply = cluster.call(other, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    assert reply.json()["status"] == "scheduled"
    cluster.set_members(after)
    cluster.down = {holder}
    rid = cluster.request(other, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    cluster.advance(R2.placement_timeout_ms)
    assert cluster.responses[rid].status == 503
    cluster.down = set()
    deliveries = _answer_all_for(cluster, 120_000)
    assert [d.task_id for d in deliveries] == [task_id]


def test_a_retry_after_a_member_change_does_not_leave_the_first_attempts_copy_behind() -> None:
    # F without the simulator: the coordinator keeps its copy of a 503 enqueue; after d joins,
    # the retry is placed on [d, y] (not on the coordinator) and answers "scheduled".
    before, after = [A, B, C], [A, B, C, D]
    task_id = _id_placed(before, after, lambda b, a: a[:2] == [D, b[0]])
    silent, coordinator = placement(f"q/{task_id}", before)[:2]
    cluster = Cluster(after, R2)
    cluster.set_members(before)
    cluster.down = {silent}
    rid = cluster.request(coordinator, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    cluster.advance(R2.placement_timeout_ms)
    assert cluster.responses[rid].status == 503
    cluster.down = set()
    cluster.set_members(after)
    reply = cluster.call(silent, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    assert reply.status == 200
    deliveries = _answer_all_for(cluster, 120_000)
    assert [d.task_id for d in deliveries] == [task_id]


# -- G, H: found while checking fixes for the above ----------------------------------------------


def test_two_holders_removed_while_away_do_not_vouch_for_each_others_stale_copies() -> None:
    # G: b and d hold copies 1 and 2; both are away past the member timeout and removed; a
    # repairs onto the others. They come back at once and sync: each is listed by the other's
    # (equally stale) copy, so each keeps its copy and fires it after a delivered the task.
    names = [A, B, C, D, E]
    cluster = Cluster(names, R3)
    task_id = "job-g"
    first, away_1, away_2 = placement(f"q/{task_id}", names)[:3]
    reply = cluster.call(first, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    assert reply.json()["replicas"] == 3
    cluster.down = {away_1, away_2}
    stayed = [n for n in names if n not in cluster.down]
    for name in stayed:
        cluster.membership[name].set_members(tuple(stayed))
        cluster.feed(name, TimerExpired())
    cluster.advance(6_000)  # longer than the member timeout: the two come back out of standing
    cluster.down = set()
    for name in names:
        cluster.membership[name].set_members(tuple(names))
    for name in names:
        cluster.feed(name, TimerExpired())
    deliveries = _answer_all_for(cluster, 120_000)
    assert [d.task_id for d in deliveries] == [task_id]


def test_a_store_copy_delayed_past_a_repair_does_not_make_a_copy_nobody_knows() -> None:
    # H: the StoreCopy to y is delayed; y is removed and x repairs onto the coordinator k; y is
    # back when the delayed StoreCopy arrives: y stores [x/0 y/1], acknowledges, and the enqueue
    # answers "scheduled". x's list is [x/0 k/2]: y's copy never hears x's finished notice.
    cluster = Cluster([A, B, C], R2)
    task_id = "job-h"
    first, delayed, coordinator = placement(f"q/{task_id}", [A, B, C])
    rid = cluster.request(coordinator, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    held = [(to, env) for to, env in cluster.inbox if to == delayed]
    cluster.inbox = [(to, env) for to, env in cluster.inbox if to != delayed]
    cluster.settle()
    cluster.set_members([first, coordinator])
    cluster.set_members([first, delayed, coordinator])
    cluster.inbox.extend(held)
    cluster.settle()
    assert cluster.responses[rid].json()["status"] == "scheduled"
    deliveries = _answer_all_for(cluster, 120_000)
    assert [d.task_id for d in deliveries] == [task_id]


# -- K: a refused cancel that still cancels ------------------------------------------------------


def test_a_cancel_refused_while_a_copy_is_delivering_does_not_lose_the_task() -> None:
    # K (also `python -m sim --seed 272 --scenario swarm`, and seed 286: lost): the DELETE gets 409
    # because the first holder is delivering, but the second holder cancelled its copy. The
    # attempt fails (500); the first holder is then away past the member timeout and syncs its
    # retrying copy: the other says "cancelled" and it gives the task up. The client was told the
    # task could not be cancelled, and it is never delivered.
    cluster = Cluster([A, B, C], R2)
    task_id = "job-k"
    first, second = placement(f"q/{task_id}", [A, B, C])[:2]
    reply = cluster.call(first, "POST", "/q", {"url": URL, "id": task_id})
    assert reply.json()["status"] == "scheduled"
    (attempt,) = cluster.deliveries
    assert attempt.node == first
    refused = cluster.call(second, "DELETE", f"/q/{task_id}")
    assert refused.status == 409
    cluster.answer(attempt, 500)
    cluster.down = {first}
    cluster.advance(6_000)
    cluster.down = set()
    cluster.feed(first, TimerExpired())
    deliveries = _answer_all_for(cluster, 300_000)
    assert len([d for d in deliveries if d is not attempt]) == 1


# -- L: a refused cancel's "cancelled" spread by a repeated enqueue --------------------------------


def test_a_repeat_of_a_task_whose_cancel_was_refused_does_not_cancel_its_live_copy() -> None:
    # L (also `python -m sim --seed 39 --scenario rate_limited`: lost): the first holder is
    # down at the ETA; the second copy fires, and its claim to the first is lost. The first is
    # back when a DELETE comes: it cancels its copy, the second is delivering (409). The
    # attempt fails (500): the task lives on in the second copy, retrying. A member joins; the
    # client repeats the enqueue, placed on [first holder, newcomer]: the first answers
    # "exists, cancelled". The reconcile must tell only the fresh copy, not the live one.
    before, after = [A, B, C], [A, B, C, D]
    task_id = _id_placed(before, after, lambda b, a: a[:2] == [b[0], D])
    first, second, third = placement(f"q/{task_id}", before)
    cluster = Cluster(after, R2)
    cluster.set_members(before)
    reply = cluster.call(third, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    assert reply.json()["status"] == "scheduled"
    cluster.down = {first}
    cluster.report_unreachable({first})
    cluster.advance(60_000 + R2.replica_delay_ms)
    (attempt,) = cluster.deliveries
    assert attempt.node == second
    cluster.down = set()
    cluster.report_unreachable(set())
    refused = cluster.call(third, "DELETE", f"/q/{task_id}")
    assert refused.status == 409
    assert cluster.holders("q", task_id) == {first: "cancelled", second: "delivering"}
    cluster.answer(attempt, 500)
    cluster.set_members(after)
    repeat = cluster.call(D, "POST", "/q", {"url": URL, "id": task_id, "eta": ETA_S})
    assert repeat.json() == {"status": "duplicate", "id": task_id, "state": "cancelled"}
    assert cluster.holders("q", task_id)[second] == "retrying"
    deliveries = _answer_all_for(cluster, 120_000)
    assert [(d.node, d.task_id) for d in deliveries if d is not attempt] == [(second, task_id)]


def test_a_repeat_of_a_task_whose_cancel_was_refused_is_still_delivered_seed_39() -> None:
    """`python -m sim --seed 39 --scenario rate_limited` (L; task-30): 10.0.0.2's attempt gets
    a 503 and it retries later; the DELETE through 10.0.0.5 cancels 10.0.0.2's retrying copy
    while 10.0.0.1's claimed copy answers "delivering" (409). The repeat through 10.0.0.3 hears
    "exists, cancelled" from 10.0.0.2 and sent Finished(cancelled) to 10.0.0.1 too."""
    assert Anomaly.LOST not in _anomalies(39, "rate_limited")


# -- found by a 400-seed swarm soak ----------------------------------------------------------------


def test_a_copy_that_found_no_other_remakes_them_seed_285() -> None:
    """`python -m sim --seed 285 --scenario swarm` (task-95): copy 0's holder never stored its
    copy; copy 1 delivered alone; a repeat of the id through a node that had joined since was
    placed on the preferred members and delivered again. tests/test_replication.py has the
    rule without the simulator."""
    assert Anomaly.DUPLICATED not in _anomalies(285, "swarm")


def test_a_copy_cancelled_after_ours_was_made_does_not_cancel_ours_seed_400() -> None:
    """`python -m sim --seed 400 --scenario swarm` (task-73, lost): two racing enqueues made
    the copies; a DELETE answered 409 (an attempt in flight) cancelled the other copy when
    the attempt failed and became a retry. Ours took that "cancelled" for one of another
    enqueue and gave the task up. Only a copy cancelled before ours was made counts now."""
    assert Anomaly.LOST not in _anomalies(400, "swarm")


def test_the_run_that_left_lists_without_a_live_majority_passes_seed_241() -> None:
    """`python -m sim --seed 241 --scenario swarm`: two cut-off leaders each shrank the list
    to themselves and the member they shared, which then crashed: no list had a live
    majority (docs/cluster.md, Known limits), and its tasks were counted lost. Since holders
    re-send copies that were never confirmed (issue 10), the run no longer reaches that state
    (none of about 700 swarm seeds tried does) and has no violation at all."""
    report = run(draw_config(241, "swarm", AS_FOUND)).report
    assert report.violations == []
