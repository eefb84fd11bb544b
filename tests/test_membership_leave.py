"""Leaving the cluster for good, in the membership alone (docs/cluster.md, "Leaving a cluster"):
a leaving member is removed only once it says its copies are handed off, a leaving leader hands
its leadership over first, and a node that left refuses everything and never comes back on
its own. Every step is also checked for safety by the in-memory network."""

from __future__ import annotations

from miyamoto.logic import codec
from miyamoto.logic.membership import Role
from miyamoto.logic.messages import Envelope, LeaveRequest, Member

from .membership_network import FAST, Network


def _leave(net: Network, node_id: str) -> None:
    net.send(node_id, net.nodes[node_id].start_leaving(net.now_ms))


def _hand_off(net: Network, node_id: str) -> None:
    net.send(node_id, net.nodes[node_id].handed_off(net.now_ms))


def test_a_leaving_follower_is_reported_unreachable_but_not_removed_before_its_hand_off() -> None:
    net = Network(seed=1)
    ids = net.start_cluster(3)
    leader, leaving = ids[0], ids[2]
    _leave(net, leaving)
    net.run_for(3 * FAST.member_timeout_ms)  # far longer than any removal takes
    assert net.converged(ids), net.describe()
    view = net.nodes[leaving].view()
    assert view.leaving and view.role is Role.FOLLOWER
    # Every member hears that it takes no new copies (placement skips the unreachable).
    assert leaving in net.nodes[leader].unreachable()
    assert leaving in net.nodes[ids[1]].unreachable()
    assert net.nodes[leader].view().stats.leaves_requested == 1


def test_a_follower_that_handed_off_is_removed_and_has_left() -> None:
    net = Network(seed=2)
    ids = net.start_cluster(3)
    leaving = ids[2]
    _leave(net, leaving)
    net.run_for(FAST.heartbeat_interval_ms)
    _hand_off(net, leaving)
    stay = ids[:2]
    assert net.run_until(lambda: net.nodes[leaving].has_left, 5_000), net.describe()
    assert net.run_until(lambda: net.converged(stay), 5_000), net.describe()
    view = net.nodes[leaving].view()
    assert view.role is Role.LEFT and not view.leaving and not view.in_majority
    assert view.member_ids == tuple(stay)  # the list that removed it
    assert net.nodes[ids[0]].view().stats.members_left == 1
    # It stays out: no join, no election, no timer, for as long as it runs.
    net.run_for(10 * FAST.member_timeout_ms)
    assert net.nodes[leaving].view().role is Role.LEFT
    assert net.nodes[leaving].next_deadline_ms() is None
    assert net.converged(stay)
    assert net.nodes[ids[0]].view().term == net.nodes[ids[1]].view().term


def test_a_leaving_leader_steps_down_and_the_others_elect_one_that_removes_it() -> None:
    net = Network(seed=3)
    ids = net.start_cluster(3)
    leader = ids[0]
    term_before = net.nodes[leader].view().term
    _leave(net, leader)
    assert net.nodes[leader].view().role is Role.FOLLOWER
    _hand_off(net, leader)
    stay = ids[1:]
    assert net.run_until(lambda: net.nodes[leader].has_left, 10_000), net.describe()
    assert net.run_until(lambda: net.converged(stay), 5_000), net.describe()
    new_leader = net.leaders()
    assert len(new_leader) == 1 and new_leader[0] in stay
    assert net.nodes[new_leader[0]].view().term > term_before


def test_a_node_that_left_refuses_every_peer_message() -> None:
    net = Network(seed=4)
    ids = net.start_cluster(3)
    leaving = ids[1]
    _leave(net, leaving)
    _hand_off(net, leaving)
    assert net.run_until(lambda: net.nodes[leaving].has_left, 5_000), net.describe()
    machine = net.nodes[leaving]
    leader = net.nodes[ids[0]]
    heartbeat = codec.decode(codec.encode(leader.stamp(LeaveRequest(
        member=Member(id=ids[0], incarnation=leader.incarnation), handed_off=True
    ))))  # fmt: skip
    before = machine.view().stats.dropped_not_member
    assert machine.handle_message(heartbeat, net.now_ms) == []
    assert not machine.admit(heartbeat, net.now_ms)
    assert machine.view().stats.dropped_not_member == before + 2
    assert not machine.in_standing(net.now_ms)


def test_two_members_can_shrink_to_one() -> None:
    net = Network(seed=5)
    ids = net.start_cluster(2)
    _leave(net, ids[1])
    _hand_off(net, ids[1])
    assert net.run_until(lambda: net.nodes[ids[1]].has_left, 5_000), net.describe()
    assert net.run_until(lambda: net.converged(ids[:1]), 5_000), net.describe()


def test_a_forged_leave_for_another_member_is_dropped() -> None:
    net = Network(seed=6)
    ids = net.start_cluster(3)
    leader = net.nodes[ids[0]]
    other = net.nodes[ids[2]]
    # ids[1] claims that ids[2] leaves: only a member may say it leaves, for itself.
    forged = Envelope(
        sender=ids[1], incarnation=net.nodes[ids[1]].incarnation,
        cluster_id=leader.view().cluster_id, term=leader.view().term,
        epoch=leader.view().epoch,
        message=LeaveRequest(member=Member(id=ids[2], incarnation=other.incarnation),
                             handed_off=True),
    )  # fmt: skip
    before = leader.view().stats.dropped_malformed
    assert leader.handle_message(forged, net.now_ms) == []
    assert leader.view().stats.dropped_malformed == before + 1
    net.run_for(3 * FAST.member_timeout_ms)
    assert net.converged(ids)


def test_the_leader_of_two_can_leave_and_the_other_leads_alone() -> None:
    net = Network(seed=7)
    ids = net.start_cluster(2)
    _leave(net, ids[0])  # the founder leads
    _hand_off(net, ids[0])
    assert net.run_until(lambda: net.nodes[ids[0]].has_left, 10_000), net.describe()
    assert net.run_until(lambda: net.converged(ids[1:]), 5_000), net.describe()
