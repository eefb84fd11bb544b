"""Bugs the simulator found in the node, pinned by their seed or schedule.

Each is marked xfail(strict) until the node is fixed: the fix makes the test pass, strict
xfail then fails the suite, and whoever fixed it removes the marker, so it stays a regression
test. Replay any of them with the command in its docstring and `--trace`.

The runs are pinned to the workload they were found with: no limited queue and no reused ids
(`--limits none --id-reuse no`), which the seed would now draw.
"""

from __future__ import annotations

from dataclasses import replace

from sim.checkers import Anomaly
from sim.partitions import Partition, PartitionKind
from sim.receivers import HEALTHY
from sim.run import HEALED_LINKS, build, liveness_phase, run
from sim.scenarios import Shape, draw_config
from sim.trace import Trace

AS_FOUND = Shape(limits="none", id_reuse=False, late=False)


def _anomalies(seed: int, scenario: str) -> set[Anomaly]:
    report = run(draw_config(seed, scenario, AS_FOUND)).report
    return {v.anomaly for v in report.violations}


def test_a_member_removed_while_paused_does_not_fire_its_old_copies_after_it_rejoins() -> None:
    """`python -m sim --seed 2 --scenario pause --limits none --id-reuse no`: 10.0.0.4 is
    paused past the member timeout and removed; a repair puts task-89's second copy on
    10.0.0.1; 10.0.0.4 resumes, rejoins, and still fires its own copy 3.4 s after 10.0.0.2
    delivered the task."""
    assert Anomaly.DUPLICATED not in _anomalies(2, "pause")


def test_a_member_removed_while_cut_off_does_not_fire_its_old_copies_after_it_rejoins() -> None:
    """`python -m sim --seed 2 --scenario isolate_one --limits none --id-reuse no`: task-71's
    copy on 10.0.0.1 fires at ETA + replica delay although 10.0.0.2 delivered it at its ETA:
    10.0.0.1 had been cut off and removed, 10.0.0.2 repaired onto 10.0.0.3 and no longer tells
    10.0.0.1 anything."""
    assert Anomaly.DUPLICATED not in _anomalies(2, "isolate_one")


def test_a_cancel_acknowledged_after_a_repair_reaches_the_old_holder_too() -> None:
    """`python -m sim --seed 13 --scenario swarm --limits none --id-reuse no`: task-12's
    holder 10.0.0.4 is paused and removed; the cancel is confirmed by the holders the repair
    knows (10.0.0.1, 10.0.0.3), and 10.0.0.4 delivers task-12 ten seconds after the client was
    told "cancelled"."""
    assert Anomaly.CANCELLED not in _anomalies(13, "swarm")


def test_a_copy_left_by_a_failed_placement_does_not_fire_after_the_task_is_cancelled() -> None:
    """`python -m sim --seed 3 --scenario isolate_leader --limits none --id-reuse no`: the
    isolated leader takes task-64, keeps a copy, and answers 503 (the other holders are cut
    off); the client enqueues it again elsewhere and then cancels it ("cancelled"); the isolated
    node's copy still fires."""
    assert Anomaly.CANCELLED not in _anomalies(3, "isolate_leader")


def test_a_node_that_is_still_joining_does_not_take_tasks_as_a_cluster_of_one() -> None:
    """The schedule hypothesis shrank this to (tests/test_sim_stateful.py): enqueue at
    10.0.0.1, crash it as the request arrives, restart it at once, and send the client's retry
    to it: the restarted node, not yet a member, answers "scheduled" with one copy of its own
    and also stores one on 10.0.0.2; both fire at the ETA."""
    config = draw_config(1, "calm", Shape(nodes=3, replicas=2, tasks=0, limits="none"))
    config = replace(config, receivers=HEALTHY, wire_codec=True)
    world, checker, workload = build(config, Trace())
    world.run_until(world.now_ms + 3_000)
    first = world.node_ids[0]
    plan = workload.plan(0, home=first, countdown_ms=1_000)
    workload.enqueue(plan)
    world.run_until(world.now_ms + 2)
    world.crash(first)
    world.restart(first)
    workload.enqueue(plan, first)
    world.heal(HEALED_LINKS)
    liveness_phase(world, checker, config)
    world.run_until(world.now_ms + checker.bounds.duplicate_window_ms)
    assert checker.report(world.now_ms).violations == []


def test_restarted_nodes_join_through_a_member_not_through_each_other() -> None:
    """`python -m sim --seed 48 --scenario rate_limited`: members removed while down restart
    one after another, each through a running node the simulator drew; 10.0.0.4 joined through
    10.0.0.5 and 10.0.0.5 through 10.0.0.4, neither a member, and no one ever got in
    (not_converged). Here: c, d, e are removed, restarted behind a partition, c crashes and
    restarts again; an operator gives each a member as its seed (docs/cluster.md)."""
    config = draw_config(5, "calm", Shape(nodes=5, replicas=2, tasks=0, limits="none"))
    config = replace(config, receivers=HEALTHY)
    lines: list[str] = []
    world, checker, _ = build(config, Trace(lines.append))
    world.run_until(world.now_ms + 3_000)
    a, b, c, d, e = world.node_ids
    for node in (e, d, c):
        world.crash(node)
        world.run_until(world.now_ms + 8_000)  # past the member timeout: removed
    away, members = {c, d, e}, {a, b}
    blocked = frozenset((x, y) for x in away for y in members)
    blocked |= frozenset((y, x) for x, y in blocked)
    world.cut(Partition(kind=PartitionKind.MAJORITY_MINORITY, blocked=blocked, description="x"))
    world.restart(c)
    world.restart(d)
    world.run_until(world.now_ms + 1_000)
    world.crash(c)
    world.restart(c)
    world.restart(e)
    world.heal(HEALED_LINKS)
    liveness_phase(world, checker, config)
    seeds = {line.split(" joining through ")[1] for line in lines if " restart " in line}
    assert seeds <= members
    assert checker.report(world.now_ms).violations == []
