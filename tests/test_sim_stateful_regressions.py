"""Fault schedules the hypothesis state machine (tests/test_sim_stateful.py) found and shrank,
replayed rule by rule. Each failed before the fix named in its docstring."""

from __future__ import annotations

from sim.partitions import PartitionKind

from .test_sim_stateful import SimulatedCluster


def test_a_repeat_through_a_restarted_holder_does_not_revive_a_cancelled_task() -> None:
    """The holder that coordinated an enqueue and its cancel crashes; the client repeats the
    enqueue, and its new process (not let in yet) stored a fresh copy, asked, heard only
    "cancelled" from a copy that lists its id (its predecessor's) and delivered. Fixed: a node
    not in standing stores no copy; a cancelled copy of another enqueue of the id counts."""
    for pause_ms, crash_wait_ms in ((11, 0), (68, 499)):
        machine = SimulatedCluster()
        plan = machine.first_task()
        machine.cancel(plan=plan)
        machine.advance(ms=pause_ms)
        machine.crash(node=0)
        if crash_wait_ms:
            machine.advance(ms=crash_wait_ms)
        machine.repeat_enqueue(plan=plan)
        machine.teardown()


def test_a_task_owed_when_a_majority_crashed_is_counted_apart_not_as_lost() -> None:
    """Two of three nodes crash at once: no majority can let the restarted processes back in
    (documented), and the survivor may not deliver. Its task is `lost_no_quorum`, not lost."""
    machine = SimulatedCluster()
    machine.first_task()
    machine.enqueue(countdown_ms=0, node=0)
    machine.crash(node=0)
    machine.crash(node=1)
    machine.teardown()
    report = machine.checker.report(machine.world.now_ms)
    assert report.quorum_lost and report.lost_no_quorum >= 1 and report.lost == 0


def test_a_leader_back_from_a_pause_does_not_remove_a_live_member() -> None:
    """The leader is paused past the member timeout while another member crashes. Back, it
    read the dead member's old acknowledgement first (fresh, it seemed), removed the live
    member it had not heard yet, and the cluster never elected again. Fixed: a leader back
    from such a pause steps down."""
    machine = SimulatedCluster()
    machine.first_task()
    machine.step(steps=5)
    machine.advance(ms=204)
    machine.crash(node=2)
    machine.pause(node=0)
    machine.step(steps=33)
    machine.teardown()


def test_a_fresh_copy_of_a_repeat_due_in_a_moment_asks_before_it_fires() -> None:
    """A task with a 5 ms countdown is delivered by one holder while the other refused its copy
    (just resumed, not in standing): 503. The client's retry stores a fresh copy there, due
    1 ms later; it fired before the coordinator heard "succeeded" from the first holder. Fixed:
    a fresh copy of a client id due within the placement timeout asks first."""
    machine = SimulatedCluster()
    machine.first_task()
    machine.advance(ms=1)
    machine.partition(kind=PartitionKind.MAJORITY_MINORITY, seed=0)
    machine.advance(ms=3)
    machine.enqueue(countdown_ms=0, node=0)
    machine.advance(ms=17)
    machine.enqueue(countdown_ms=0, node=0)
    machine.partition(kind=PartitionKind.MAJORITY_MINORITY, seed=1)
    machine.advance(ms=1027)
    machine.pause(node=0)
    machine.enqueue(countdown_ms=0, node=0)
    machine.advance(ms=3)
    machine.partition(kind=PartitionKind.ISOLATE_ONE, seed=0)
    machine.advance(ms=5)
    machine.enqueue(countdown_ms=0, node=0)
    machine.advance(ms=4978)
    machine.enqueue(countdown_ms=5, node=2)
    machine.advance(ms=1)
    machine.teardown()


def test_the_liveness_phase_waits_for_an_enqueue_still_being_retried() -> None:
    """Two nodes paused with enqueues sent to them; after the heal a client retry is answered
    "scheduled" with an ETA 7 s later. The liveness phase had ended before that answer (no
    task was owed yet), and the run stopped 4 ms after the ETA: "lost". Fixed in the
    simulator: it waits for client enqueues still in progress."""
    machine = SimulatedCluster()
    plan = machine.first_task()
    machine.cancel(plan=plan)
    machine.cancel(plan=plan)
    machine.step(steps=43)
    first = machine.enqueue(countdown_ms=0, node=0)
    second = machine.enqueue(countdown_ms=0, node=0)
    machine.cancel(plan=second)
    machine.cancel(plan=second)
    machine.pause(node=0)
    machine.pause(node=2)
    machine.enqueue(countdown_ms=0, node=2)
    machine.advance(ms=11566)
    machine.repeat_enqueue(plan=first)
    machine.enqueue(countdown_ms=7006, node=0)
    machine.advance(ms=4)
    machine.teardown()


def test_a_cancelled_id_forgotten_by_every_node_may_be_enqueued_anew() -> None:
    """Both nodes that knew of an acknowledged cancel crash (the second after the first was
    removed: the quorum is lost); the client's repeat of the id makes a new task, delivered
    before the client hears "scheduled". Fixed in the checker: once every node that held or
    remembered the task crashed, the cancel no longer covers the id."""
    machine = SimulatedCluster()
    plan = machine.first_task()
    machine.advance(ms=1)
    machine.cancel(plan=plan)
    machine.advance(ms=343)
    machine.partition(kind=PartitionKind.ISOLATE_ONE, seed=1)
    machine.enqueue(countdown_ms=0, node=0)
    machine.step(steps=30)
    machine.heal_partition()
    machine.advance(ms=1)
    machine.crash(node=1)
    machine.enqueue(countdown_ms=0, node=0)
    machine.advance(ms=5851)
    machine.crash(node=0)
    machine.repeat_enqueue(plan=plan)
    machine.teardown()
