"""The election and membership rules, one test per rule, driven on one `Membership` machine.

In the style of etcd raft's paper tests: each test sets a node up in a known state by feeding it
the messages the other nodes would send (the test plays them), applies one input and checks the
messages that come out and the state the node shows. Multi-node scenarios are in
test_membership_cluster.py.
"""

from __future__ import annotations

import random

from miyamoto.logic.membership import ClusterTiming, Membership, MemberState, MemberView, Role
from miyamoto.logic.messages import (
    Envelope,
    Heartbeat,
    HeartbeatAck,
    JoinRedirect,
    JoinRequest,
    Member,
    MemberList,
    MembershipMessage,
    Outgoing,
    PreVoteRequest,
    PreVoteResponse,
    VoteRequest,
    VoteResponse,
)
from miyamoto.logic.replica_messages import QueryTask

TIMING = ClusterTiming()  # the defaults: heartbeat 200 ms, election 1000-2000 ms, member 5000 ms
A, B, C, D, E = (f"10.0.0.{i}:7000" for i in range(1, 6))
INCARNATION = {B: 2002, C: 3003, D: 4004, E: 5005}
CLUSTER = 4242


# -- playing the other nodes ---------------------------------------------------------------------


def envelope(
    sender: str,
    message: MembershipMessage,
    *,
    term: int,
    cluster: int = CLUSTER,
    incarnation: int | None = None,
) -> Envelope:
    return Envelope(
        sender=sender,
        incarnation=INCARNATION[sender] if incarnation is None else incarnation,
        cluster_id=cluster,
        term=term,
        epoch=0,
        message=message,
    )


def member_list(epoch: int, epoch_term: int, members: dict[str, int]) -> MemberList:
    return MemberList(
        epoch=epoch,
        epoch_term=epoch_term,
        members=tuple(Member(id=i, incarnation=members[i]) for i in sorted(members)),
    )


def messages(out: list[Outgoing], kind: type) -> list[tuple[str, object]]:
    return [(o.to, o.envelope.message) for o in out if isinstance(o.envelope.message, kind)]


def node(self_id: str = A, seed: str = B, *, rng_seed: int = 1) -> Membership:
    return Membership(
        self_id=self_id, seed_id=seed, config=TIMING, rng=random.Random(rng_seed), now_ms=0
    )


def follower(
    *, peers: tuple[str, ...] = (B, C), leader: str = B, term: int = 1, epoch: int = 3
) -> tuple[Membership, MemberList]:
    """Node A, following `leader` in `term`, in a list (epoch, term) of A and `peers`."""
    m = node(A, leader)
    members = member_list(epoch, term, {A: m.incarnation, **{p: INCARNATION[p] for p in peers}})
    out = m.handle_message(envelope(leader, Heartbeat(latest=members), term=term), 0)
    assert m.view().role is Role.FOLLOWER
    assert messages(out, HeartbeatAck) == [(leader, HeartbeatAck(epoch_term=term, epoch=epoch))]
    return m, members


def pre_candidate(**kwargs: object) -> tuple[Membership, MemberList, int]:
    """A follower whose election timer fired: (machine, list, time)."""
    m, members = follower(**kwargs)  # type: ignore[arg-type]
    at_ms = m.next_deadline_ms()
    assert at_ms is not None
    m.handle_timer(at_ms)
    assert m.view().role is Role.PRE_CANDIDATE
    return m, members, at_ms


def candidate(**kwargs: object) -> tuple[Membership, MemberList, int]:
    m, members, at_ms = pre_candidate(**kwargs)
    term = m.view().term
    for peer in members.ids[2:]:  # C, D...: pre-votes from all but B
        m.handle_message(
            envelope(peer, PreVoteResponse(next_term=term + 1, granted=True), term=term), at_ms
        )
    assert m.view().role is Role.CANDIDATE
    return m, members, at_ms


def founder() -> Membership:
    return node(A, A)


def ack(m: Membership, sender: str, latest: MemberList, at_ms: int) -> list[Outgoing]:
    v = m.view()
    message = HeartbeatAck(epoch_term=latest.epoch_term, epoch=latest.epoch)
    return m.handle_message(envelope(sender, message, term=v.term, cluster=v.cluster_id), at_ms)


def join(m: Membership, joiner: str, at_ms: int, incarnation: int | None = None) -> list[Outgoing]:
    inc = INCARNATION[joiner] if incarnation is None else incarnation
    request = JoinRequest(joiner=Member(id=joiner, incarnation=inc))
    return m.handle_message(envelope(joiner, request, term=0, cluster=0, incarnation=inc), at_ms)


def latest_sent(out: list[Outgoing]) -> MemberList:
    heartbeats = messages(out, Heartbeat)
    assert heartbeats, out
    heartbeat = heartbeats[-1][1]
    assert isinstance(heartbeat, Heartbeat)
    return heartbeat.latest


def leader_of(*peers: str) -> tuple[Membership, MemberList]:
    """A founder that admitted `peers` one by one; every change acknowledged at time 0."""
    m = founder()
    latest = member_list(1, 1, {A: m.incarnation})
    for peer in peers:
        latest = latest_sent(join(m, peer, 0))
        for member in latest.ids:
            if member != A:
                ack(m, member, latest, 0)
    assert m.view().member_ids == tuple(sorted((A, *peers)))
    assert m.view().epoch == 1 + len(peers)
    return m, latest


# -- starting -------------------------------------------------------------------------------------


def test_node_whose_seed_is_itself_leads_a_cluster_of_one_in_term_1_epoch_1() -> None:
    m = founder()
    v = m.view()
    assert (v.role, v.leader, v.term, v.epoch, v.member_ids) == (Role.LEADER, A, 1, 1, (A,))
    assert v.has_leader and v.in_majority and v.cluster_id != 0
    # Alone it is its own majority: check-quorum never deposes it.
    assert m.handle_timer(10 * TIMING.election_timeout_max_ms) == []
    assert m.view().role is Role.LEADER


def test_node_with_another_seed_asks_the_seed_to_join_and_retries_with_backoff() -> None:
    m = node(A, B)
    assert m.view().role is Role.JOINING and m.view().leader is None
    assert m.next_deadline_ms() == 0  # asks at once
    now_ms, delays = 0, []
    for _ in range(8):
        out = m.handle_timer(now_ms)
        assert messages(out, JoinRequest) == [
            (B, JoinRequest(joiner=Member(id=A, incarnation=m.incarnation)))
        ]
        deadline = m.next_deadline_ms()
        assert deadline is not None
        delays.append(deadline - now_ms)
        now_ms = deadline
    # Doubling from 200 ms up to 2000 ms, each drawn in [half, full] of its step.
    for step, delay in enumerate(delays):
        ceiling = min(TIMING.join_retry_max_ms, TIMING.join_retry_min_ms << step)
        assert ceiling // 2 <= delay <= ceiling, (step, delay)
    assert delays[-1] >= TIMING.join_retry_max_ms // 2


def test_joining_node_becomes_follower_when_a_leader_lists_it() -> None:
    m = node(A, B)
    members = member_list(2, 1, {A: m.incarnation, B: INCARNATION[B]})
    out = m.handle_message(envelope(B, Heartbeat(latest=members), term=1), 10)
    v = m.view()
    assert (v.role, v.leader, v.term, v.epoch, v.cluster_id) == (Role.FOLLOWER, B, 1, 2, CLUSTER)
    assert v.member_ids == (A, B)
    assert messages(out, HeartbeatAck) == [(B, HeartbeatAck(epoch_term=1, epoch=2))]


def test_heartbeat_that_lists_another_incarnation_of_us_does_not_admit_us() -> None:
    m = node(A, B)
    members = member_list(2, 1, {A: m.incarnation + 1, B: INCARNATION[B]})
    out = m.handle_message(envelope(B, Heartbeat(latest=members), term=1), 10)
    assert m.view().role is Role.JOINING
    assert messages(out, HeartbeatAck) == []


# -- elections ------------------------------------------------------------------------------------


def test_follower_starts_pre_vote_after_election_timeout_without_raising_its_term() -> None:
    m, _ = follower()
    deadline = m.next_deadline_ms()
    assert deadline is not None
    assert TIMING.election_timeout_min_ms <= deadline <= TIMING.election_timeout_max_ms
    assert m.handle_timer(deadline - 1) == []
    out = m.handle_timer(deadline)
    request = PreVoteRequest(next_term=2, epoch_term=1, epoch=3)
    assert sorted(messages(out, PreVoteRequest)) == [(B, request), (C, request)]
    v = m.view()
    assert (v.role, v.term, v.leader) == (Role.PRE_CANDIDATE, 1, None)


def test_election_timeouts_are_randomized_between_min_and_max() -> None:
    deadlines = set()
    for rng_seed in range(30):
        m = node(A, B, rng_seed=rng_seed)
        members = member_list(2, 1, {A: m.incarnation, B: INCARNATION[B]})
        m.handle_message(envelope(B, Heartbeat(latest=members), term=1), 0)
        deadline = m.next_deadline_ms()
        assert deadline is not None
        assert TIMING.election_timeout_min_ms <= deadline <= TIMING.election_timeout_max_ms
        deadlines.add(deadline)
    assert len(deadlines) > 20


def test_heartbeat_from_the_leader_resets_the_election_timer() -> None:
    m, members = follower()
    first = m.next_deadline_ms()
    assert first is not None
    m.handle_message(envelope(B, Heartbeat(latest=members), term=1), first - 10)
    second = m.next_deadline_ms()
    assert second is not None and second >= first - 10 + TIMING.election_timeout_min_ms
    assert m.handle_timer(first) == []
    assert m.view().role is Role.FOLLOWER


def test_pre_vote_changes_neither_the_voters_term_nor_its_vote() -> None:
    m, _ = follower()
    lease_over_ms = TIMING.election_timeout_min_ms
    out = m.handle_message(
        envelope(C, PreVoteRequest(next_term=2, epoch_term=1, epoch=3), term=1), lease_over_ms
    )
    assert messages(out, PreVoteResponse) == [(C, PreVoteResponse(next_term=2, granted=True))]
    assert m.view().term == 1
    # Still free to vote for someone else in term 2.
    out = m.handle_message(
        envelope(B, VoteRequest(epoch_term=1, epoch=3), term=2), lease_over_ms + 1
    )
    assert messages(out, VoteResponse) == [(B, VoteResponse(granted=True))]


def test_voter_refuses_pre_vote_while_it_hears_its_leader() -> None:
    m, _ = follower()
    out = m.handle_message(
        envelope(C, PreVoteRequest(next_term=2, epoch_term=1, epoch=3), term=1),
        TIMING.election_timeout_min_ms - 1,
    )
    assert messages(out, PreVoteResponse) == [(C, PreVoteResponse(next_term=2, granted=False))]


def test_leader_refuses_pre_votes() -> None:
    m, latest = leader_of(B, C)
    v = m.view()
    request = PreVoteRequest(next_term=v.term + 1, epoch_term=latest.epoch_term, epoch=3)
    out = m.handle_message(envelope(B, request, term=v.term, cluster=v.cluster_id), 500)
    assert messages(out, PreVoteResponse) == [
        (B, PreVoteResponse(next_term=v.term + 1, granted=False))
    ]


def test_a_leader_back_from_a_pause_of_a_member_timeout_steps_down() -> None:
    # It has not run for 5 s: what it reads first waited in buffers, so it does not judge the
    # members by it (it would keep a dead member whose old message looks fresh).
    # (Check-quorum alone would keep it: the acknowledgement it reads first is one member.)
    m, latest = leader_of(B, C)
    ack(m, B, latest, TIMING.member_timeout_ms)
    m.handle_timer(TIMING.member_timeout_ms)
    assert m.view().role is Role.FOLLOWER and m.view().stats.step_downs == 1
    alone, _ = leader_of()
    alone.handle_timer(TIMING.member_timeout_ms)  # a cluster of one has no one to defer to
    assert alone.view().role is Role.LEADER


def test_pre_candidate_becomes_candidate_with_a_majority_of_pre_votes() -> None:
    m, _, at_ms = pre_candidate()
    out = m.handle_message(envelope(C, PreVoteResponse(next_term=2, granted=True), term=1), at_ms)
    v = m.view()
    assert (v.role, v.term) == (Role.CANDIDATE, 2)
    request = VoteRequest(epoch_term=1, epoch=3)
    assert sorted(messages(out, VoteRequest)) == [(B, request), (C, request)]
    assert all(o.envelope.term == 2 for o in out)


def test_pre_vote_refusals_and_stale_grants_do_not_make_a_candidate() -> None:
    m, _, at_ms = pre_candidate()
    m.handle_message(envelope(C, PreVoteResponse(next_term=2, granted=False), term=1), at_ms)
    m.handle_message(envelope(B, PreVoteResponse(next_term=1, granted=True), term=1), at_ms)
    assert m.view().role is Role.PRE_CANDIDATE


def test_partitioned_node_does_not_inflate_its_term() -> None:
    m, _ = follower()
    for _ in range(50):
        deadline = m.next_deadline_ms()
        assert deadline is not None
        m.handle_timer(deadline)  # its pre-votes go nowhere
    v = m.view()
    assert (v.role, v.term) == (Role.PRE_CANDIDATE, 1)
    assert v.stats.pre_votes_started == 50 and v.stats.elections_started == 0


def test_candidate_wins_with_a_majority_and_republishes_the_list_under_its_term() -> None:
    m, members, at_ms = candidate()
    out = m.handle_message(envelope(B, VoteResponse(granted=True), term=2), at_ms)
    v = m.view()
    assert (v.role, v.leader, v.term) == (Role.LEADER, A, 2)
    beats = messages(out, Heartbeat)
    assert sorted(to for to, _ in beats) == [B, C]
    heartbeat = beats[0][1]
    assert isinstance(heartbeat, Heartbeat)
    # Same members and epoch, stamped with the new term; the old version is still the
    # acknowledged one until a majority answers.
    assert heartbeat.latest == member_list(3, 2, {m_.id: m_.incarnation for m_ in members.members})
    assert heartbeat.committed == members
    assert v.epoch == 3 and v.member_ids == members.ids


def test_candidate_without_a_majority_stays_candidate_then_tries_again() -> None:
    m, _, at_ms = candidate(peers=(B, C, D, E))
    m.handle_message(envelope(B, VoteResponse(granted=True), term=2), at_ms)
    m.handle_message(envelope(C, VoteResponse(granted=False), term=2), at_ms)
    assert m.view().role is Role.CANDIDATE
    deadline = m.next_deadline_ms()
    assert deadline is not None
    out = m.handle_timer(deadline)
    assert m.view().role is Role.PRE_CANDIDATE and m.view().term == 2
    assert len(messages(out, PreVoteRequest)) == 4


def test_voter_grants_one_vote_per_term_first_come_first_served() -> None:
    m, _ = follower(peers=(B, C, D))
    at_ms = TIMING.election_timeout_min_ms  # the lease is over
    first = m.handle_message(envelope(C, VoteRequest(epoch_term=1, epoch=3), term=2), at_ms)
    second = m.handle_message(envelope(D, VoteRequest(epoch_term=1, epoch=3), term=2), at_ms)
    again = m.handle_message(envelope(C, VoteRequest(epoch_term=1, epoch=3), term=2), at_ms)
    assert messages(first, VoteResponse) == [(C, VoteResponse(granted=True))]
    assert messages(second, VoteResponse) == [(D, VoteResponse(granted=False))]
    assert messages(again, VoteResponse) == [(C, VoteResponse(granted=True))]  # a resend


def test_voter_ignores_vote_requests_for_a_new_term_while_it_hears_its_leader() -> None:
    m, _ = follower()
    out = m.handle_message(envelope(C, VoteRequest(epoch_term=1, epoch=3), term=2), 100)
    assert out == []
    v = m.view()
    assert (v.term, v.leader, v.stats.dropped_in_lease) == (1, B, 1)


def test_candidate_with_older_epoch_loses() -> None:
    m, _ = follower()  # holds list (epoch_term 1, epoch 3)
    at_ms = TIMING.election_timeout_min_ms
    older = m.handle_message(envelope(C, VoteRequest(epoch_term=1, epoch=2), term=2), at_ms)
    assert messages(older, VoteResponse) == [(C, VoteResponse(granted=False))]
    older_pre = m.handle_message(
        envelope(C, PreVoteRequest(next_term=3, epoch_term=1, epoch=2), term=2), at_ms
    )
    assert messages(older_pre, PreVoteResponse) == [
        (C, PreVoteResponse(next_term=3, granted=False))
    ]


def test_list_from_a_newer_term_beats_a_higher_epoch_from_an_older_term() -> None:
    m, _ = follower(term=4, epoch=3)
    at_ms = TIMING.election_timeout_min_ms
    out = m.handle_message(envelope(C, VoteRequest(epoch_term=3, epoch=9), term=5), at_ms)
    assert messages(out, VoteResponse) == [(C, VoteResponse(granted=False))]


def test_restarted_node_cannot_double_vote() -> None:
    m, _members, at_ms = candidate()  # candidate in term 2, list names C's incarnation 3003
    # C voted for someone else in term 2, crashed, and came back as a new process. With its
    # memory gone it grants any vote in term 2 ...
    restarted_c = node(C, B, rng_seed=99)
    out = restarted_c.handle_message(
        Envelope(
            sender=A,
            incarnation=m.incarnation,
            cluster_id=CLUSTER,
            term=2,
            epoch=3,
            message=VoteRequest(epoch_term=1, epoch=3),
        ),
        at_ms,
    )
    (reply,) = out
    assert reply.envelope.message == VoteResponse(granted=True)
    # ... but the candidate counts a vote only from the incarnation its member list names.
    m.handle_message(reply.envelope, at_ms)
    v = m.view()
    assert v.role is Role.CANDIDATE and v.stats.dropped_not_member == 1
    m.handle_message(envelope(C, VoteResponse(granted=True), term=2), at_ms)
    assert m.view().role is Role.LEADER


def test_leader_steps_down_without_quorum() -> None:
    m, latest = leader_of(B, C)
    now_ms = 0
    while now_ms < 3 * TIMING.election_timeout_min_ms:  # B answers every beat; C is silent
        now_ms = m.next_deadline_ms() or 0
        m.handle_timer(now_ms)
        ack(m, B, latest, now_ms)
    assert m.view().role is Role.LEADER
    m, latest = leader_of(B, C)
    deadline = m.next_deadline_ms()
    while deadline is not None and deadline < TIMING.election_timeout_min_ms:
        m.handle_timer(deadline)
        deadline = m.next_deadline_ms()
    assert m.view().role is Role.LEADER
    assert deadline is not None
    assert m.handle_timer(deadline) == []
    v = m.view()
    assert (v.role, v.leader, v.term, v.stats.step_downs) == (Role.FOLLOWER, None, 1, 1)


def test_higher_term_turns_a_leader_into_a_follower() -> None:
    m, _ = leader_of(B, C)
    cluster = m.view().cluster_id
    message = HeartbeatAck(epoch_term=1, epoch=3)
    m.handle_message(envelope(B, message, term=7, cluster=cluster), 100)
    v = m.view()
    assert (v.role, v.term, v.leader) == (Role.FOLLOWER, 7, None)


def test_message_with_a_stale_term_is_dropped_and_counted() -> None:
    m, _ = follower(term=3)
    out = m.handle_message(envelope(C, VoteRequest(epoch_term=1, epoch=3), term=2), 5_000)
    assert out == []
    assert m.view().stats.dropped_stale == 1 and m.view().term == 3


def test_deposed_leader_learns_the_newer_term_from_the_answer_to_its_heartbeat() -> None:
    m, _ = follower(term=3)
    old = member_list(3, 2, {A: m.incarnation, C: INCARNATION[C]})
    out = m.handle_message(envelope(C, Heartbeat(latest=old), term=2), 10)
    assert [(o.to, o.envelope.term) for o in out] == [(C, 3)]
    assert m.view().leader == B and m.view().stats.dropped_stale == 1


def test_message_from_another_cluster_is_dropped_and_counted() -> None:
    m, members = follower()
    out = m.handle_message(envelope(C, Heartbeat(latest=members), term=9, cluster=777), 10)
    assert out == []
    v = m.view()
    assert (v.term, v.leader, v.stats.dropped_foreign) == (1, B, 1)


def test_heartbeat_whose_leader_is_not_in_its_list_is_dropped_as_malformed() -> None:
    m, _ = follower()
    bogus = member_list(4, 1, {A: m.incarnation, B: INCARNATION[B]})
    m.handle_message(envelope(C, Heartbeat(latest=bogus), term=1), 10)
    assert m.view().stats.dropped_malformed == 1 and m.view().epoch == 3


def test_second_leader_in_a_known_term_is_refused_and_counted() -> None:
    m, _ = follower(peers=(B, C))
    other = member_list(3, 1, {A: m.incarnation, B: INCARNATION[B], C: INCARNATION[C]})
    assert m.handle_message(envelope(C, Heartbeat(latest=other), term=1), 10) == []
    v = m.view()
    assert v.leader == B and v.stats.dropped_conflicting_leader == 1


def test_follower_keeps_the_newer_list_when_heartbeats_arrive_out_of_order() -> None:
    m, members = follower()
    newer = member_list(4, 1, {A: m.incarnation, B: INCARNATION[B], C: INCARNATION[C], D: 1})
    m.handle_message(envelope(B, Heartbeat(latest=newer, committed=members), term=1), 10)
    out = m.handle_message(envelope(B, Heartbeat(latest=members), term=1), 20)
    assert messages(out, HeartbeatAck) == [(B, HeartbeatAck(epoch_term=1, epoch=4))]
    assert m.view().latest_epoch == 4 and m.view().epoch == 3


# -- membership changes ---------------------------------------------------------------------------


def test_join_through_non_leader_is_forwarded() -> None:
    m, _ = follower()
    out = join(m, D, 10)
    joiner = Member(id=D, incarnation=INCARNATION[D])
    assert messages(out, JoinRequest) == [(B, JoinRequest(joiner=joiner, forwarded=True))]
    assert messages(out, JoinRedirect) == [(D, JoinRedirect(leader=B))]
    # Forwarded once only: a follower drops a forwarded join (no loops between followers).
    forwarded = JoinRequest(joiner=joiner, forwarded=True)
    assert m.handle_message(envelope(C, forwarded, term=1), 20) == []
    assert m.view().stats.joins_forwarded == 1 and m.view().stats.joins_dropped == 1


def test_leader_adds_a_joiner_under_a_new_epoch_and_publishes_it_once_acknowledged() -> None:
    m = founder()
    out = join(m, B, 10)
    latest = latest_sent(out)
    assert latest.ids == (A, B) and latest.epoch == 2
    assert [to for to, _ in messages(out, Heartbeat)] == [B]
    assert m.view().epoch == 1  # the new list needs 2 of 2 acknowledgements
    out = ack(m, B, latest, 20)
    v = m.view()
    assert (v.epoch, v.member_ids) == (2, (A, B))
    heartbeat = messages(out, Heartbeat)[0][1]
    assert isinstance(heartbeat, Heartbeat) and heartbeat.committed is None


def test_leader_changes_one_member_at_a_time() -> None:
    m, _ = leader_of(B)
    out = join(m, C, 10) + join(m, D, 10)
    assert latest_sent(out).ids == (A, B, C)
    proposed = latest_sent(out)
    ack(m, B, proposed, 20)  # 2 of 3 acknowledged epoch 3: now D may come in
    assert m.view().epoch == 3
    out = join(m, D, 30)
    assert latest_sent(out).ids == (A, B, C, D) and latest_sent(out).epoch == 4


def test_new_leader_changes_nothing_before_a_majority_acknowledges_its_term() -> None:
    m, members, at_ms = candidate()
    m.handle_message(envelope(B, VoteResponse(granted=True), term=2), at_ms)
    out = join(m, D, at_ms)
    assert out == []  # waits: the list re-published in term 2 is not yet acknowledged
    republished = member_list(3, 2, {x.id: x.incarnation for x in members.members})
    ack(m, B, republished, at_ms)
    out = join(m, D, at_ms + 1)
    assert latest_sent(out).ids == (A, B, C, D)


def test_leader_removes_a_member_silent_past_member_timeout() -> None:
    m, latest = leader_of(B, C)
    now_ms = 0
    while now_ms < TIMING.member_timeout_ms - TIMING.heartbeat_interval_ms:
        now_ms = m.next_deadline_ms() or 0
        out = m.handle_timer(now_ms)
        assert latest_sent(out).ids == (A, B, C)
        ack(m, B, latest, now_ms)
    assert m.view().members[2] == MemberView(
        id=C, incarnation=INCARNATION[C], state=MemberState.UNREACHABLE
    )
    while latest_sent(out).ids == (A, B, C):
        now_ms = m.next_deadline_ms() or 0
        out = m.handle_timer(now_ms)
        ack(m, B, latest, now_ms)
    assert TIMING.member_timeout_ms <= now_ms <= TIMING.member_timeout_ms + 200
    new = latest_sent(out)
    assert new.ids == (A, B) and new.epoch == 4
    assert C in [to for to, _ in messages(out, Heartbeat)]  # told, in case it hears
    ack(m, B, new, now_ms)
    assert (m.view().epoch, m.view().member_ids) == (4, (A, B))


def test_removed_member_asks_to_join_again_when_it_hears_it_was_removed() -> None:
    m, _ = follower()
    without_a = member_list(4, 1, {B: INCARNATION[B], C: INCARNATION[C]})
    out = m.handle_message(envelope(B, Heartbeat(latest=without_a), term=1), 10)
    assert m.view().role is Role.JOINING
    assert messages(out, JoinRequest) == [
        (B, JoinRequest(joiner=Member(id=A, incarnation=m.incarnation)))
    ]


def test_new_incarnation_of_a_member_replaces_the_old_one_by_removal_then_join() -> None:
    m, _ = leader_of(B, C)
    # C restarts: a new process under the same id asks to join while the old one is listed.
    out = join(m, C, 100, incarnation=9)
    assert out == []  # the old C answered a moment ago: this could be a late message
    assert m.view().member_ids == (A, B, C)
    now_ms = 0
    while m.view().epoch == 3:
        now_ms = m.next_deadline_ms() or 0
        out = m.handle_timer(now_ms)
        ack(m, B, latest_sent(out), now_ms)
        join(m, C, now_ms, incarnation=9)
    assert now_ms >= TIMING.election_timeout_min_ms
    assert m.view().member_ids == (A, B)  # the old incarnation is out (epoch 4) ...
    out = join(m, C, now_ms + 1, incarnation=9)
    readmitted = latest_sent(out)
    assert readmitted.epoch == 5 and readmitted.incarnation_of(C) == 9  # ... the new one in


def test_leader_shows_the_member_list_to_a_node_campaigning_from_outside_it() -> None:
    m, _ = leader_of(B, C)
    v = m.view()
    request = PreVoteRequest(next_term=v.term + 1, epoch_term=1, epoch=2)
    out = m.handle_message(envelope(D, request, term=1, cluster=v.cluster_id), 50)
    assert messages(out, PreVoteResponse) == [(D, PreVoteResponse(next_term=2, granted=False))]
    assert [to for to, _ in messages(out, Heartbeat)] == [D]


def test_follower_points_a_node_campaigning_from_outside_the_list_to_the_leader() -> None:
    m, _ = follower()
    out = m.handle_message(
        envelope(D, PreVoteRequest(next_term=2, epoch_term=1, epoch=2), term=1), 50
    )
    assert messages(out, JoinRedirect) == [(D, JoinRedirect(leader=B))]


def test_restarted_founder_gives_up_its_new_cluster_for_the_one_that_still_lists_it() -> None:
    m = founder()  # A restarted with itself as seed: a new cluster of one
    theirs = member_list(5, 4, {A: 1111, B: INCARNATION[B], C: INCARNATION[C]})
    out = m.handle_message(envelope(B, Heartbeat(latest=theirs), term=4, cluster=999), 10)
    v = m.view()
    assert (v.role, v.cluster_id, v.term, v.epoch) == (Role.JOINING, 999, 4, 5)
    assert messages(out, JoinRequest) == [
        (B, JoinRequest(joiner=Member(id=A, incarnation=m.incarnation)))
    ]
    assert v.stats.solo_clusters_abandoned == 1


def test_founder_that_others_joined_keeps_its_cluster() -> None:
    m, _ = leader_of(D)
    theirs = member_list(5, 4, {A: 1111, B: INCARNATION[B], C: INCARNATION[C]})
    assert m.handle_message(envelope(B, Heartbeat(latest=theirs), term=4, cluster=999), 10) == []
    assert m.view().role is Role.LEADER and m.view().stats.dropped_foreign == 1


# -- what the rest of the node uses ---------------------------------------------------------------


def test_stamp_puts_this_nodes_identity_term_and_epoch_on_a_message() -> None:
    m, _ = follower(term=3)
    message = QueryTask(ref=1, queue="q", task_id="t")
    stamped = m.stamp(message)
    assert (stamped.sender, stamped.incarnation, stamped.cluster_id) == (A, m.incarnation, CLUSTER)
    assert (stamped.term, stamped.epoch, stamped.message) == (3, 3, message)


def test_admit_refuses_replica_messages_from_another_incarnation_or_cluster() -> None:
    m, _ = follower()
    message = QueryTask(ref=1, queue="q", task_id="t")
    current = Envelope(
        sender=C, incarnation=INCARNATION[C], cluster_id=CLUSTER, term=1, epoch=3, message=message
    )
    assert m.admit(current, 10)
    assert not m.admit(
        Envelope(sender=C, incarnation=1, cluster_id=CLUSTER, term=1, epoch=3, message=message), 10
    )
    assert not m.admit(
        Envelope(
            sender=C, incarnation=INCARNATION[C], cluster_id=5, term=1, epoch=3, message=message
        ),
        10,
    )
    stats = m.view().stats
    assert (stats.dropped_stale, stats.dropped_foreign) == (1, 1)


def test_view_shows_members_sorted_with_their_state_and_the_leader() -> None:
    m, _ = follower(peers=(C, B), leader=B)
    v = m.view()
    assert v.member_ids == (A, B, C)
    assert [x.state for x in v.members] == [MemberState.ALIVE] * 3
    assert v.has_leader and v.in_majority and v.leader == B
    m.handle_timer(TIMING.election_timeout_max_ms + 1)  # no leader heard for long: unknown
    v = m.view()
    assert v.leader is None and not v.has_leader
    assert [x.state for x in v.members] == [
        MemberState.ALIVE,
        MemberState.UNKNOWN,
        MemberState.UNKNOWN,
    ]
