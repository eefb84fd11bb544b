"""The membership restarted from its hard state (docs/durability.md): Raft's promises hold across
a restart, and the clusters the in-memory rules left stuck come back by themselves.

The hard state a test restores is the one the node had when it crashed: the shell commits every
change before the messages that follow it (tests/test_durable_commit_gate.py), so whatever a
node said before crashing is on its disk.
"""

from __future__ import annotations

import random

import pytest

from miyamoto.logic.membership import Membership, Role
from miyamoto.logic.messages import (
    Envelope,
    JoinRequest,
    MemberList,
    VoteRequest,
    VoteResponse,
)
from miyamoto.logic.persistence import (
    MembershipHardState,
    decode_hard_state,
    encode_hard_state,
)

from .membership_network import FAST, Network
from .test_membership import (
    CLUSTER,
    INCARNATION,
    TIMING,
    A,
    B,
    C,
    D,
    envelope,
    follower,
    founder,
    member_list,
    messages,
)


def from_its_disk(m: Membership, *, seed: str, now_ms: int, rng_seed: int = 99) -> Membership:
    """`m` after a crash, from its hard state as the store gives it back (encoded and decoded)."""
    saved = decode_hard_state(encode_hard_state(m.hard_state()))
    return Membership.restored(
        saved, seed_id=seed, config=TIMING, rng=random.Random(rng_seed), now_ms=now_ms
    )


def vote_request(sender: str, *, term: int, latest: MemberList) -> Envelope:
    return envelope(
        sender, VoteRequest(epoch_term=latest.epoch_term, epoch=latest.epoch), term=term
    )


def test_a_restarted_voter_never_votes_twice_in_a_term() -> None:
    m, members = follower()  # A follows B in term 1
    # B goes quiet; C campaigns for term 2 and gets A's vote.
    out = m.handle_message(
        vote_request(C, term=2, latest=members), 3 * TIMING.election_timeout_max_ms
    )
    assert messages(out, VoteResponse) == [(C, VoteResponse(granted=True))]
    restarted = from_its_disk(m, seed=B, now_ms=10_000)
    # B asks for the same term after the restart: the vote is given already.
    out = restarted.handle_message(vote_request(B, term=2, latest=members), 10_000)
    assert messages(out, VoteResponse) == [(B, VoteResponse(granted=False))]
    # C asking again gets the same answer as before (its vote, not a second one).
    out = restarted.handle_message(vote_request(C, term=2, latest=members), 10_000)
    assert messages(out, VoteResponse) == [(C, VoteResponse(granted=True))]
    assert restarted.view().term == 2


def test_a_restarted_member_is_the_same_member_with_its_term_and_lists() -> None:
    m, members = follower(term=3, epoch=5)
    restarted = from_its_disk(m, seed=B, now_ms=1_000)
    v = restarted.view()
    assert (v.self_id, v.incarnation, v.cluster_id) == (A, m.incarnation, CLUSTER)
    assert (v.term, v.epoch, v.latest) == (3, 5, members)
    assert v.member_ids == (A, B, C)
    # A member of its list: it waits for the leader's heartbeat (or elects one), never joins.
    assert v.role is Role.FOLLOWER
    deadline = restarted.next_deadline_ms()
    assert deadline is not None
    assert 1_000 + TIMING.election_timeout_min_ms <= deadline
    assert deadline <= 1_000 + TIMING.election_timeout_max_ms
    stamped = restarted.stamp(JoinRequest(joiner=members.members[0]))
    assert (stamped.incarnation, stamped.cluster_id, stamped.term) == (m.incarnation, CLUSTER, 3)


def test_a_restarted_founder_leads_its_own_cluster_again_instead_of_founding_one() -> None:
    m = founder()
    restarted = from_its_disk(m, seed=A, now_ms=1_000)  # started again with its first command
    assert restarted.view().cluster_id == m.view().cluster_id
    assert restarted.view().role is Role.FOLLOWER
    deadline = restarted.next_deadline_ms()
    assert deadline is not None
    restarted.handle_timer(deadline)  # alone in its list: it elects itself in a new term
    v = restarted.view()
    assert (v.role, v.term, v.epoch, v.cluster_id) == (Role.LEADER, 2, 1, m.view().cluster_id)


def test_a_restarted_node_removed_meanwhile_joins_through_the_members_it_remembers() -> None:
    m, _members = follower()  # A in {A, B, C}
    saved = m.hard_state()
    removed = member_list(4, 1, {B: INCARNATION[B], C: INCARNATION[C]})
    saved = MembershipHardState(
        cluster_id=saved.cluster_id,
        self_id=saved.self_id,
        incarnation=saved.incarnation,
        term=saved.term,
        voted_for=saved.voted_for,
        latest=removed,
        committed=removed,
    )
    restarted = Membership.restored(saved, seed_id=D, config=TIMING, rng=random.Random(5), now_ms=0)
    assert restarted.view().role is Role.JOINING
    targets = set()
    now_ms = 0
    for _ in range(6):
        out = restarted.handle_timer(now_ms)
        targets |= {to for to, _ in messages(out, JoinRequest)}
        deadline = restarted.next_deadline_ms()
        assert deadline is not None
        now_ms = deadline
    assert {B, C} <= targets  # the members it remembers, besides the seed it was given


# -- whole clusters -------------------------------------------------------------------------------


def crash(net: Network, node_id: str) -> MembershipHardState:
    """Crash `node_id`; what its disk holds (encoded and decoded, as the store gives it back)."""
    saved = decode_hard_state(encode_hard_state(net.nodes[node_id].hard_state()))
    net.crash(node_id)
    return saved


def restart(net: Network, saved: MembershipHardState, *, seed: str) -> None:
    net.nodes[saved.self_id] = Membership.restored(
        saved,
        seed_id=seed,
        config=FAST,
        rng=random.Random(f"{net.seed}:{saved.self_id}:restored:{net.now_ms}"),
        now_ms=net.now_ms,
    )
    net.check()


@pytest.mark.parametrize("seed", range(10))
def test_a_two_node_cluster_whose_second_node_restarts_has_a_leader_again(seed: int) -> None:
    net = Network(seed=seed)
    ids = net.start_cluster(2)
    follower_id = next(n for n in ids if net.nodes[n].view().role is Role.FOLLOWER)
    incarnations = {n: net.nodes[n].incarnation for n in ids}
    saved = crash(net, follower_id)
    net.run_for(3 * FAST.member_timeout_ms)  # the survivor steps down: no majority of two
    assert net.leaders() == []
    restart(net, saved, seed=ids[0])
    assert net.run_until(lambda: net.converged(ids), 4 * FAST.election_timeout_max_ms), (
        net.describe()
    )
    assert {n: net.nodes[n].incarnation for n in ids} == incarnations


@pytest.mark.parametrize("seed", range(10))
def test_a_whole_cluster_crashed_and_restarted_is_the_same_cluster(seed: int) -> None:
    net = Network(seed=seed, loss=0.05)
    ids = net.start_cluster(3)
    cluster_id = net.nodes[ids[0]].view().cluster_id
    disks = [crash(net, node_id) for node_id in ids]
    net.run_for(FAST.member_timeout_ms)
    for saved in disks:
        restart(net, saved, seed=ids[0])  # each with its first command
    assert net.run_until(lambda: net.converged(ids), 10 * FAST.election_timeout_max_ms), (
        net.describe()
    )
    assert {net.nodes[n].view().cluster_id for n in ids} == {cluster_id}


def test_hard_state_survives_the_codec_unchanged() -> None:
    joining = Membership(self_id=D, seed_id=A, config=TIMING, rng=random.Random(3), now_ms=0)
    for m in (founder(), follower()[0], joining):
        state = m.hard_state()
        assert state.problem() is None
        assert decode_hard_state(encode_hard_state(state)) == state


def test_hard_state_follows_every_change_and_is_reused_while_nothing_changes() -> None:
    m, members = follower()
    before = m.hard_state()
    assert m.hard_state() is before  # the shell asks before every message: no new object
    m.handle_message(vote_request(C, term=2, latest=members), 3 * TIMING.election_timeout_max_ms)
    after = m.hard_state()
    assert (after.term, after.voted_for) == (2, members.members[2])
    assert (before.term, before.voted_for) == (1, None)
