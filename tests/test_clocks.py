"""Two clocks (docs/cluster.md, "Clocks"): a node's wall clock stepped forward or back moves its
ETAs, and no lease, vote, heartbeat or timeout."""

from __future__ import annotations

from itertools import pairwise

import pytest

from miyamoto.logic.config import NodeConfig
from miyamoto.logic.membership import Role
from miyamoto.logic.messages import Heartbeat

from .cluster_driver import T0_MS, Cluster

A, B, C = "a:1", "b:1", "c:1"
URL = "http://receiver:9000/work"
SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
STEPS_MS = [5 * SECOND_MS, -5 * MINUTE_MS, 5 * MINUTE_MS]


def formed_cluster() -> Cluster:
    cluster = Cluster([A, B, C], NodeConfig(), elected=True)
    cluster.advance(5 * SECOND_MS)
    for node in cluster.nodes.values():
        view = node.membership.view()
        assert (view.leader, view.member_ids) == (A, (A, B, C)), view
    return cluster


def heartbeat_gaps_ms(cluster: Cluster, since_ms: int) -> list[int]:
    """The gaps between the heartbeats the leader sent B since `since_ms` (to its end)."""
    sent_ms = [since_ms] + [
        at_ms
        for at_ms, sender, envelope in cluster.sent
        if sender == A and at_ms >= since_ms and isinstance(envelope.message, Heartbeat)
    ]
    return [later - earlier for earlier, later in pairwise([*sent_ms, cluster.now_ms])]


@pytest.mark.parametrize("stepped", [A, B])
@pytest.mark.parametrize("step_ms", STEPS_MS)
def test_a_stepped_wall_clock_moves_no_lease_vote_heartbeat_or_standing(
    stepped: str, step_ms: int
) -> None:
    cluster = formed_cluster()
    before = {name: node.membership.view() for name, node in cluster.nodes.items()}
    stepped_at_ms = cluster.now_ms
    cluster.step_wall(stepped, step_ms)
    for _ in range(30):  # 30 s, looking every second
        cluster.advance(SECOND_MS)
        for name, node in cluster.nodes.items():
            view = node.membership.view()
            assert (view.role, view.leader, view.term, view.epoch) == (
                before[name].role,
                A,
                before[name].term,
                before[name].epoch,
            ), (name, view)
            assert node.core.standing, name
            # Not taken for a paused process (which re-checks every replicated copy).
            assert not node.syncs.out_of_standing, name
    assert cluster.nodes[A].membership.view().role is Role.LEADER
    heartbeat_interval_ms = NodeConfig().timing.heartbeat_interval_ms
    assert max(heartbeat_gaps_ms(cluster, stepped_at_ms)) <= heartbeat_interval_ms


def single_node_with_task_due_in_a_minute() -> tuple[Cluster, str]:
    cluster = Cluster([A], NodeConfig(), elected=True)
    cluster.advance(SECOND_MS)
    reply = cluster.call(A, "POST", "/q", {"url": URL, "countdown": 60})
    assert reply.status == 200, reply.body
    task_id = reply.json()["id"]
    assert isinstance(task_id, str)
    return cluster, task_id


def test_an_eta_follows_a_wall_clock_stepped_forward() -> None:
    cluster, task_id = single_node_with_task_due_in_a_minute()
    enqueued_ms = cluster.now_ms
    cluster.step_wall(A, 5 * MINUTE_MS)
    [delivery] = cluster.deliveries  # at once: by the node's clock the ETA is 4 minutes past
    assert (delivery.task_id, delivery.at_ms) == (task_id, enqueued_ms)


def test_an_eta_follows_a_wall_clock_stepped_back() -> None:
    cluster, task_id = single_node_with_task_due_in_a_minute()
    enqueued_ms = cluster.now_ms
    cluster.step_wall(A, -5 * MINUTE_MS)
    cluster.advance(6 * MINUTE_MS - SECOND_MS)
    assert cluster.deliveries == []  # by the node's clock the minute has not passed yet
    cluster.advance(SECOND_MS)
    [delivery] = cluster.deliveries
    assert (delivery.task_id, delivery.at_ms) == (task_id, enqueued_ms + 6 * MINUTE_MS)
    assert delivery.at_ms > T0_MS
