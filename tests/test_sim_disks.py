"""The simulator's disks (sim/disk.py): what a crash keeps, the restart faults, the checks that
hold across restarts, and the disk variants of the matrix."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.local_tasks import TaskChanges
from miyamoto.logic.messages import Envelope, Heartbeat, MemberList, VoteResponse
from miyamoto.logic.node import Node
from sim.__main__ import main
from sim.checkers import Anomaly, Checker, FailureKind
from sim.disk_checks import DiskChecks
from sim.history import Order
from sim.matrix import Job, run_job, run_jobs
from sim.run import RunResult, bounds, build, run
from sim.scenarios import RESTART_SCENARIO_NAMES, SCENARIOS, FaultKind, Shape, draw_config
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
    assert not report.quorum_lost and report.failure is None
    in_memory = run_job(Job(seed=seed, scenario="cluster_restart", shape=MEMORY)).report
    assert in_memory.quorum_lost  # what memory alone gives up


def test_a_node_that_does_not_write_its_copies_loses_tasks_on_a_cluster_restart() -> None:
    """The bar with disks has teeth: a task whose every holder crashed is lost, not excused."""
    config = draw_config(CLUSTER_RESTART_SEEDS[0], "cluster_restart", DISKS)
    report = run(config, node_class=ForgetsCopies).report
    assert Anomaly.LOST in {v.anomaly for v in report.violations}
    assert report.lost_all_holders == 0


def test_a_seed_with_disks_replays_exactly() -> None:
    first = run_job(Job(seed=3, scenario="crash_in_commit", shape=DISKS))
    again = run_job(Job(seed=3, scenario="crash_in_commit", shape=DISKS))
    assert first.trace_hash == again.trace_hash and first.report == again.report
    memory = run_job(Job(seed=3, scenario="crash_in_commit", shape=MEMORY))
    assert memory.trace_hash != first.trace_hash


@pytest.mark.parametrize(
    ("seed", "scenario", "shape", "anomaly"),
    [
        # A cancel waiting for its commit: the canceller's copy is gone, the others' not yet
        # (their CancelTask waits for the same commit). Not a task short of copies.
        (1, "calm", Shape(disks=True), Anomaly.UNDER_REPLICATED),
        # Deliveries held for a commit went out later than their node admitted them: counted
        # at the release, a rate-limited queue's span was squeezed (rate), and a share learned
        # meanwhile judged a delivery admitted under the one before (concurrency).
        (3, "disk_lost", DISKS, Anomaly.RATE),
        (3, "founder_restart", DISKS, Anomaly.RATE),
        (1, "majority_minority", DISKS, Anomaly.CONCURRENCY),
    ],
)
def test_what_the_disks_first_showed_was_the_simulator_not_the_node(
    seed: int, scenario: str, shape: Shape, anomaly: Anomaly
) -> None:
    report = run_job(Job(seed=seed, scenario=scenario, shape=shape)).report
    assert anomaly not in {v.anomaly for v in report.violations}


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


# -- the disk matrix (CI) ------------------------------------------------------------------------

DISK_CI_SEEDS = 4
DISK_CI_BUDGET_S = 90
"""Every scenario with disks and the restart scenarios in memory, 4 seeds each (112 runs, 2
processes): measured in the branch's report next to the in-memory matrix of test_sim_runs."""

ISSUE_10 = (
    "issue 10, root cause B, the part left: a copy that was never stored (a StoreCopy lost, a "
    "member unreachable for a few seconds, a holder restarted before it committed the copy) is "
    "not always made again before the repair window ends (under_replicated; re-sending after "
    "Unconfirmed fixed most runs, these are not diagnosed per seed yet)"
)
FOUNDER_FOUNDS_AGAIN = (
    "in memory (docs/cluster.md, Known limits; a data directory removes it): a founder "
    "restarted with its first command founds a second cluster beside the old one: two leaders "
    "for good (not_converged), an id enqueued in both is delivered twice, and the new cluster "
    "of one answers replicas=1 and loses those tasks when the founder restarts again"
)

KNOWN: dict[tuple[str, int], tuple[str, frozenset[Anomaly]]] = {}
"""(variant, seed) of the disk matrix -> why it fails, and the anomalies that cause shows.
Root cause C (a holder restarted empty under the same id) is fixed: its runs (disk_lost 1,
rolling_restart 1-4) pass now."""
for _reason, _anomalies, _runs in (
    (ISSUE_10, {Anomaly.UNDER_REPLICATED}, {
        "random_halves+disks": (1,), "isolate_leader+disks": (4,),
        "lossy_network+disks": (2, 3, 4), "swarm+disks": (2, 3), "rate_limited+disks": (2,),
        "cluster_restart+disks": (4,),
    }),
    (FOUNDER_FOUNDS_AGAIN, {Anomaly.NOT_CONVERGED, Anomaly.DUPLICATED, Anomaly.LOST}, {
        "founder_restart": (3, 4),
    }),
):  # fmt: skip
    for _variant, _seeds in _runs.items():
        for _seed in _seeds:
            KNOWN[(_variant, _seed)] = (_reason, frozenset(_anomalies))


@pytest.fixture(scope="module")
def disk_matrix() -> tuple[list[Job], list[RunResult], float]:
    seeds = range(1, DISK_CI_SEEDS + 1)
    jobs = [Job(seed=seed, scenario=name, shape=DISKS) for name in SCENARIOS for seed in seeds]
    jobs += [
        Job(seed=seed, scenario=name, shape=MEMORY)
        for name in sorted(RESTART_SCENARIO_NAMES)
        for seed in seeds
    ]
    start = time.perf_counter()
    results = run_jobs(jobs, processes=2)
    return jobs, list(results), time.perf_counter() - start


def test_the_disk_matrix_runs_within_its_budget_and_no_node_crashes(
    disk_matrix: tuple[list[Job], list[RunResult], float],
) -> None:
    jobs, results, wall_s = disk_matrix
    assert {j.variant for j in jobs} >= {f"{name}+disks" for name in SCENARIOS}
    assert wall_s < DISK_CI_BUDGET_S, wall_s
    crashed = [
        (job.command(), [str(v) for v in r.report.violations][:3])
        for job, r in zip(jobs, results, strict=True)
        if r.report.failure is FailureKind.CRASH
    ]
    assert crashed == []


def test_the_disk_matrix_finds_no_anomaly_but_its_known_root_causes(
    disk_matrix: tuple[list[Job], list[RunResult], float],
) -> None:
    jobs, results, _ = disk_matrix
    unexplained = []
    for job, result in zip(jobs, results, strict=True):
        _, allowed = KNOWN.get((job.variant, job.seed), ("", frozenset()))
        extra = [str(v)[:300] for v in result.report.violations if v.anomaly not in allowed]
        if extra:
            unexplained.append((job.command(), extra[:3]))
    assert unexplained == []


def test_with_disks_no_run_of_the_matrix_loses_a_task_but_to_a_lost_disk(
    disk_matrix: tuple[list[Job], list[RunResult], float],
) -> None:
    jobs, results, _ = disk_matrix
    with_disks = [(j, r) for j, r in zip(jobs, results, strict=True) if j.shape.disks]
    assert sum(r.report.acked for _, r in with_disks) > 10_000
    losses = [
        (job.command(), r.report.lost, r.report.lost_all_holders, r.report.lost_no_quorum)
        for job, r in with_disks
        if (r.report.lost or r.report.lost_all_holders or r.report.lost_no_quorum)
        and not _loses_disks(r)
    ]
    assert losses == []
    assert not any(r.report.quorum_lost for _, r in with_disks if not _loses_disks(r))


def _loses_disks(result: RunResult) -> bool:
    """A lost disk, or a machine gone for good (its disk with it), may lose a task's copies."""
    return bool({FaultKind.DISK_LOST, FaultKind.CRASH_PERMANENT} & set(result.config.faults))


@pytest.mark.parametrize(
    ("variant", "seed"),
    [
        pytest.param(variant, seed, marks=pytest.mark.xfail(strict=True, reason=reason))
        for (variant, seed), (reason, _) in KNOWN.items()
    ],
)
def test_a_disk_matrix_run_failing_for_a_known_root_cause_finds_no_anomaly(
    disk_matrix: tuple[list[Job], list[RunResult], float], variant: str, seed: int
) -> None:
    jobs, results, _ = disk_matrix
    (result,) = [
        r for j, r in zip(jobs, results, strict=True) if (j.variant, j.seed) == (variant, seed)
    ]
    assert result.report.failure is None, [str(v) for v in result.report.violations][:3]
