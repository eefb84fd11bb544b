"""The simulator's disks (sim/disk.py): what a crash keeps, the restart faults, the checks that
hold across restarts, and the disk variants of the matrix."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.local_tasks import TaskChanges
from miyamoto.logic.messages import Envelope, Heartbeat, MemberList, VoteResponse
from miyamoto.logic.node import Node
from sim.__main__ import main
from sim.checkers import Anomaly, Checker
from sim.disk_checks import DiskChecks
from sim.history import Order
from sim.matrix import Job, run_job
from sim.run import bounds, build
from sim.scenarios import Shape, draw_config
from sim.trace import Trace
from sim.world import NodeState, World

DISKS = Shape(minutes=1.0, disks=True)
MEMORY = Shape(minutes=1.0)


class ForgetsCopies(Node):
    """Writes its membership to disk but never a task copy: a restart comes back empty."""

    def take_changes(self) -> TaskChanges | None:
        super().take_changes()
        return None


def _world(seed: int = 1, nodes: int = 3) -> World:
    config = draw_config(seed, "calm", Shape(nodes=nodes, tasks=0, minutes=0.5, disks=True))
    world, _, _ = build(config, Trace(None))
    world.run_until(world.now_ms + 3_000)  # the others join the founder
    return world


def _enqueue(world: World, node_id: str, task_id: str, countdown_s: int = 30) -> list[object]:
    """Send an enqueue; the list gets the answer (None: refused, or no answer in time)."""
    answers: list[object] = []
    body = urlencode(
        [("task.url", "http://10.9.0.1/hook"), ("task.countdown", str(countdown_s)),
         ("task.id", task_id), ("w", task_id)]
    ).encode()  # fmt: skip
    request = HttpRequest(
        method="POST", target="/q0",
        headers=(("content-type", "application/x-www-form-urlencoded"),), body=body,
    )  # fmt: skip

    def on_reply(response: HttpResponse | None, order: Order | None) -> None:
        del order
        answers.append(None if response is None else json.loads(response.body)["status"])

    world.client_send(node_id, request, on_reply, timeout_ms=2_000)
    return answers


def _on_disk(world: World, node_id: str) -> set[str]:
    disk = world.nodes[node_id].disk
    assert disk is not None
    return disk.task_ids()


def test_an_answered_enqueue_is_on_the_disk_of_every_holder_it_counts_before_the_answer() -> None:
    world = _world()
    answers = _enqueue(world, world.node_ids[1], "t1")
    world.run_until(world.now_ms + 1_000)
    assert answers == ["scheduled"]
    assert all("t1" in _on_disk(world, n) for n in world.node_ids)  # R = 3 of 3 nodes
    for node_id in world.node_ids:
        world.crash(node_id)
    for node_id in world.node_ids:
        world.restart(node_id, world.node_ids[0])  # their first commands
    world.run_until(world.now_ms + 1)
    for node_id in world.node_ids:
        node = world.nodes[node_id].node
        assert node is not None and node.tasks.get("q0", "t1") is not None


def test_a_crash_during_a_commit_loses_the_commit_and_the_answer_waiting_for_it() -> None:
    world = _world()
    coordinator = world.node_ids[1]
    world.nodes[coordinator].crash_in_commit = "during"
    answers = _enqueue(world, coordinator, "t1")
    world.run_until(world.now_ms + 1_000)
    assert world.state(coordinator) is NodeState.DOWN
    assert answers == [None]  # the connection broke: not acknowledged
    # Its StoreCopy messages waited for the same commit: no node stored a copy.
    assert not any("t1" in _on_disk(world, n) for n in world.node_ids)
    world.restart(coordinator)
    world.run_until(world.now_ms + 1)
    restarted = world.nodes[coordinator].node
    assert restarted is not None and restarted.tasks.get("q0", "t1") is None


def test_a_crash_right_after_a_commit_keeps_it_and_loses_the_messages_that_waited() -> None:
    world = _world()
    coordinator = world.node_ids[1]
    world.nodes[coordinator].crash_in_commit = "after"
    answers = _enqueue(world, coordinator, "t1")
    world.run_until(world.now_ms + 1_000)
    assert world.state(coordinator) is NodeState.DOWN
    assert answers == [None]
    others = [n for n in world.node_ids if n != coordinator]
    assert "t1" in _on_disk(world, coordinator)
    assert not any("t1" in _on_disk(world, n) for n in others)  # its StoreCopy never left
    world.restart(coordinator)
    world.run_until(world.now_ms + 1)
    restarted = world.nodes[coordinator].node
    assert restarted is not None and restarted.tasks.get("q0", "t1") is not None


def test_a_lost_disk_brings_the_node_back_empty_as_a_new_member() -> None:
    world = _world()
    node_id = world.node_ids[2]
    old = world.nodes[node_id].node
    assert old is not None
    _enqueue(world, node_id, "t1")
    world.run_until(world.now_ms + 1_000)
    world.crash(node_id)
    world.lose_disk(node_id)
    assert _on_disk(world, node_id) == set()
    world.restart(node_id)
    new = world.nodes[node_id].node
    assert new is not None and new.tasks.get("q0", "t1") is None
    assert new.membership.view().incarnation != old.membership.view().incarnation


# -- whole runs --------------------------------------------------------------------------------

CLUSTER_RESTART_SEEDS = (1, 2)


@pytest.mark.parametrize("seed", CLUSTER_RESTART_SEEDS)
def test_a_whole_cluster_restart_with_disks_loses_nothing_and_keeps_its_quorum(seed: int) -> None:
    report = run_job(Job(seed=seed, scenario="cluster_restart", shape=DISKS)).report
    assert report.acked > 0
    assert (report.lost, report.lost_all_holders, report.lost_no_quorum) == (0, 0, 0)
    assert not report.quorum_lost
    assert report.delivered == report.tasks - (report.tasks - report.acked) or report.delivered
    in_memory = run_job(Job(seed=seed, scenario="cluster_restart", shape=MEMORY)).report
    assert in_memory.quorum_lost  # what memory alone gives up


def test_a_node_that_does_not_write_its_copies_loses_tasks_on_a_cluster_restart() -> None:
    """The bar with disks has teeth: a task whose every holder crashed is lost, not excused."""
    config = draw_config(CLUSTER_RESTART_SEEDS[0], "cluster_restart", DISKS)
    from sim.run import run

    report = run(config, node_class=ForgetsCopies).report
    assert Anomaly.LOST in {v.anomaly for v in report.violations}
    assert report.lost_all_holders == 0


def test_a_seed_with_disks_replays_exactly() -> None:
    first = run_job(Job(seed=3, scenario="crash_in_commit", shape=DISKS))
    again = run_job(Job(seed=3, scenario="crash_in_commit", shape=DISKS))
    assert first.trace_hash == again.trace_hash and first.report == again.report
    memory = run_job(Job(seed=3, scenario="crash_in_commit", shape=MEMORY))
    assert memory.trace_hash != first.trace_hash


# -- the checks across restarts ----------------------------------------------------------------


def _envelope(sender: str, incarnation: int, term: int, message: object) -> Envelope:
    return Envelope(
        cluster_id=7, sender=sender, incarnation=incarnation, term=term, epoch=1,
        message=message,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_member_granting_two_votes_in_a_term_across_its_restart_is_caught() -> None:
    checker = Checker(bounds(draw_config(1, "calm", MEMORY)))
    checks = DiskChecks(checker)
    vote = VoteResponse(granted=True)
    checks.sent(("a", 0), "b", _envelope("a", 5, 3, vote), 10)
    checks.sent(("a", 1), "b", _envelope("a", 5, 3, vote), 20)  # the same vote again: fine
    checks.sent(("a", 1), "c", _envelope("a", 5, 4, vote), 30)  # another term: fine
    assert checker.violations == []
    checks.sent(("a", 1), "c", _envelope("a", 5, 3, vote), 40)  # restarted, voted again in 3
    (violation,) = checker.violations
    assert violation.anomaly is Anomaly.ELECTION_SAFETY and "two votes in term 3" in str(violation)


def test_a_member_leading_a_term_again_after_its_restart_is_caught() -> None:
    checker = Checker(bounds(draw_config(1, "calm", MEMORY)))
    checks = DiskChecks(checker)
    beat = Heartbeat(latest=MemberList(epoch=1, epoch_term=1, members=()))
    checks.sent(("a", 0), "b", _envelope("a", 5, 3, beat), 10)
    checks.sent(("a", 0), "c", _envelope("a", 5, 3, beat), 11)
    assert checker.violations == []
    checks.sent(("a", 1), "b", _envelope("a", 5, 3, beat), 50)  # same member, new process
    (violation,) = checker.violations
    assert violation.anomaly is Anomaly.ELECTION_SAFETY and "two processes" in str(violation)


# -- the command line ---------------------------------------------------------------------------


def test_disks_are_on_the_seed_line_and_in_the_reproduce_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--seed", "1", "--scenario", "calm", "--nodes", "3", "--tasks", "10",
                 "--minutes", "0.2", "--disks"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("SEED=1 scenario=calm nodes=3 ") and " disks=yes" in out.splitlines()[0]
    job = Job(seed=1, scenario="calm", shape=Shape(nodes=3, disks=True))
    assert job.command() == "python -m sim --seed 1 --scenario calm --nodes 3 --disks"
    assert job.variant == "calm+disks"
