"""A node leaves mid-workload in the simulator (real Membership and Node, the wire codec when the
seed draws it, invariants after every event, the checkers' anomalies): nothing lost, nothing
delivered twice, no task short of copies, and the node that left holds nothing.

The node is stopped for good once it has left (a crash the checkers see): with no copy left on
it, that loses nothing, so the run must pass as a calm one does."""

from __future__ import annotations

import pytest

from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.leave import LeaveStep
from sim.run import HEALED_LINKS, WARMUP_MS, build, liveness_phase
from sim.scenarios import Shape, draw_config
from sim.trace import Trace
from sim.world import NodeState, World

SHAPE = Shape(nodes=3, replicas=2, minutes=1, tasks=300, limits="none", id_reuse=False, late=False)


def _leave(world: World, node_id: str, replies: list[int]) -> None:
    def on_reply(response: HttpResponse | None, _order: object) -> None:
        replies.append(0 if response is None else response.status)

    request = HttpRequest(method="POST", target="/_cluster/leave")
    world.client_send(node_id, request, on_reply)


@pytest.mark.parametrize(("seed", "leaver"), [(1, "leader"), (2, "follower"), (3, "leader")])
def test_a_node_leaves_during_the_workload_and_no_task_is_lost_or_duplicated(
    seed: int, leaver: str
) -> None:
    config = draw_config(seed, "calm", SHAPE)
    world, checker, workload = build(config, Trace(None))
    world.run_until(config.start_ms + WARMUP_MS)
    workload.schedule()
    replies: list[int] = []
    chosen: list[str] = []

    def leave() -> None:
        leader = world.leader()
        assert leader is not None
        node_id = leader if leaver == "leader" else next(n for n in world.node_ids if n != leader)
        chosen.append(node_id)
        _leave(world, node_id, replies)

    world.later(config.safety_ms // 3, "a node leaves", leave)
    world.run_until(config.start_ms + WARMUP_MS + config.safety_ms)
    (node_id,) = chosen
    assert replies == [202], replies
    node = world.nodes[node_id].node
    assert node is not None and node.leave.step is LeaveStep.LEFT
    assert not [t for ts in node.tasks.store.by_queue() for t in ts if not t.state.is_final]
    stay = sorted(n for n in world.node_ids if n != node_id)
    for other in stay:
        other_node = world.nodes[other].node
        assert other_node is not None and list(other_node.members) == stay
    world.crash(node_id, permanent=True)
    assert world.state(node_id) is NodeState.DEAD

    world.heal(HEALED_LINKS)
    converged_ms = liveness_phase(world, checker, config)
    world.run_until(world.now_ms + checker.bounds.duplicate_window_ms)
    report = checker.report(world.now_ms)
    assert converged_ms is not None, report.violations
    assert report.violations == [], report.violations
    assert report.acked > 0 and report.lost == report.lost_all_holders == 0
    assert report.duplicated_explained == report.duplicated_unexplained == 0
    assert report.under_replicated == 0
