"""The membership and leader election of one node, as a sans-I/O state machine.

The rules are Raft's (terms, one vote per term, randomized election timeouts, pre-vote,
check-quorum, single-member changes), with the member list in the place of the log: a list
version (epoch_term, epoch) is compared the way Raft compares (last log term, last log index).
docs/cluster.md states every rule; this module follows it, one step function per role.

Without a disk (`--in-memory`), a restarted process is a new incarnation that remembers nothing,
so it must not count as the process it replaces: member lists name (id, incarnation), votes and
acknowledgements count only from the incarnation the counter's list names, and a new incarnation
of a known id becomes a member again only through removal of the old one and a fresh join. With
a data directory the shell commits `hard_state()` before sending, and `restored` brings back the
same member (docs/durability.md).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Final, assert_never

from ..messages import (
    EMPTY_MEMBER_LIST,
    MEMBERS_MAX,
    MEMBERSHIP_MESSAGE_TYPES,
    Envelope,
    Heartbeat,
    HeartbeatAck,
    JoinRedirect,
    JoinRequest,
    LeaveRequest,
    Member,
    MemberList,
    MembershipMessage,
    Outgoing,
    PeerMessage,
    PreVoteRequest,
    PreVoteResponse,
    VoteRequest,
    VoteResponse,
    is_node_id,
)
from ..persistence import MembershipHardState
from .timing import ClusterTiming
from .view import ClusterView, MembershipStats, MemberState, MemberView, Role

_NEVER_MS: Final = -(2**62)
"""`heard at` for a member never heard from: older than any timeout."""

TERM_STEP_MAX: Final = 2**20
"""How far a term or epoch a peer sends may be ahead of ours. Each election adds one to the
term and each membership change one to the epoch, so a real cluster never gets this far ahead
of a member that is in touch with it; a value beyond it (2**64-1, say) is a bug or a forgery,
and adopting it would leave this node unable to count one further (see docs/cluster.md)."""
TERM_MAX: Final = 2**53
"""The bound for a node that knows no cluster yet (and so no term to step from): far below
2**64-1, so a term or epoch taken from anyone can always be counted up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Leaving:
    """A member that asked its leader to let it leave."""

    incarnation: int
    handed_off: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class _PendingJoin:
    incarnation: int
    requested_ms: int


class Membership:
    """One node's membership and election state. Feed it messages and timers; send what it returns.

    A node started with `seed_id == self_id` founds a cluster of one and leads it (term 1,
    epoch 1); any other node joins through its seed.
    """

    _more_seeds: tuple[str, ...] = ()
    """Further nodes to join through, taking turns with the seed (`add_seeds`)."""
    _hard_state_cache: MembershipHardState | None = None
    """The last `hard_state()`, handed out again while it is still true."""

    def __init__(
        self,
        *,
        self_id: str,
        seed_id: str,
        config: ClusterTiming,
        rng: random.Random,
        now_ms: int,
    ) -> None:
        assert is_node_id(self_id), self_id
        assert is_node_id(seed_id), seed_id
        self._id = self_id
        self._seed = seed_id
        self._timing = config
        self._rng = rng
        self._incarnation = rng.getrandbits(64)
        self._me = Member(id=self_id, incarnation=self._incarnation)
        self._now_ms = now_ms
        self._stats = MembershipStats()

        self._cluster_id = 0
        self._term = 0
        self._voted_for: Member | None = None
        self._term_leader: str | None = None
        """Who leads the current term, once known; never replaced within the term."""
        self._leader: str | None = None
        """The leader this node follows now (None after its election timer fired)."""
        self._heard_leader_ms = _NEVER_MS
        self._standing_ms = _NEVER_MS
        """The last time this node knew itself a member: it led, or its leader's heartbeat
        listed it. See `in_standing`."""
        self._catch_up_until_ms = _NEVER_MS
        """Until then, heartbeats may be ones that waited while this process was paused: they
        do not prove standing."""
        self._latest: MemberList = EMPTY_MEMBER_LIST
        """The newest member list this node holds; it decides votes and quorums (as in Raft)."""
        self._committed: MemberList = EMPTY_MEMBER_LIST
        """The newest list a majority acknowledged: what the node shows as its membership."""
        self._unreachable: tuple[str, ...] = ()
        """Members the leader reported it does not hear (for the view)."""
        self._role = Role.JOINING

        self._election_deadline_ms = now_ms
        self._pre_votes: set[str] = set()
        self._votes: set[str] = set()

        self._heartbeat_due_ms = now_ms
        self._heard_ms: dict[str, int] = {}
        self._acked: dict[str, tuple[int, int]] = {}
        self._pending_joins: dict[str, _PendingJoin] = {}
        self._removed_to_tell: list[str] = []

        self._join_due_ms: int | None = now_ms
        self._join_attempts = 0
        self._join_hint: str | None = None

        self._leaving = False
        """This node is leaving for good: it stands for no election and asks its leader to
        remove it (`start_leaving`)."""
        self._handed_off = False
        """Its copies are on the other members: the leader may remove it now."""
        self._leave_due_ms: int | None = None
        """When it next tells its leader it is leaving."""
        self._leaving_members: dict[str, _Leaving] = {}
        """As the leader: the members that asked to leave."""

        self._term_floor = 0
        self._epoch_floor = 0
        if seed_id == self_id:
            self._found_cluster(now_ms)
        self._check_invariants()

    # -- the interface -------------------------------------------------------------------------

    def handle_message(self, envelope: Envelope, now_ms: int) -> list[Outgoing]:
        assert isinstance(envelope.message, MEMBERSHIP_MESSAGE_TYPES), envelope.message
        self._advance(now_ms)
        self._stats.received += 1
        if self._role is Role.LEFT:
            return self._drop("dropped_not_member")  # we left: nothing concerns us any more
        if self._out_of_range(envelope):
            self._stats.dropped_out_of_range += 1
            return []
        out = self._receive(envelope, envelope.message, now_ms)
        self._check_invariants()
        return out

    def handle_timer(self, now_ms: int) -> list[Outgoing]:
        """Do whatever is due at `now_ms` (nothing if nothing is: calling early is harmless)."""
        self._advance(now_ms)
        match self._role:
            case Role.LEADER:
                out = self._tick_leader(now_ms) if now_ms >= self._heartbeat_due_ms else []
            case Role.FOLLOWER | Role.PRE_CANDIDATE | Role.CANDIDATE if self._leaving:
                out = self._tell_leader_leaving(now_ms)
            case Role.FOLLOWER | Role.PRE_CANDIDATE | Role.CANDIDATE:
                out = self._start_pre_vote(now_ms) if now_ms >= self._election_deadline_ms else []
            case Role.JOINING:
                due = self._join_due_ms is not None and now_ms >= self._join_due_ms
                out = self._send_join(now_ms) if due else []
            case Role.LEFT:
                out = []
            case _:
                assert_never(self._role)
        self._check_invariants()
        return out

    def next_deadline_ms(self) -> int | None:
        match self._role:
            case Role.LEADER:
                return self._heartbeat_due_ms
            case Role.FOLLOWER | Role.PRE_CANDIDATE | Role.CANDIDATE if self._leaving:
                return self._leave_due_ms
            case Role.FOLLOWER | Role.PRE_CANDIDATE | Role.CANDIDATE:
                return self._election_deadline_ms
            case Role.JOINING:
                return self._join_due_ms
            case Role.LEFT:
                return None
            case _:
                assert_never(self._role)

    def stamp(self, message: PeerMessage) -> Envelope:
        """`message` in an envelope with this node's current stamp, ready for the codec."""
        return Envelope(
            sender=self._id,
            incarnation=self._incarnation,
            cluster_id=self._cluster_id,
            term=self._term,
            epoch=self._committed.epoch,
            message=message,
        )

    def admit(self, envelope: Envelope, now_ms: int) -> bool:
        """Whether a message that is not the membership's (a replica's) should be handled.

        Refused (and counted): a message from another cluster, from ourselves, or from another
        process than the one the member list names under the sender's id (an old incarnation's
        late message, or a restarted node not yet let back in). Traffic from a member counts as
        hearing from it.
        """
        self._advance(now_ms)
        self._stats.received += 1
        if self._role is Role.LEFT:
            self._stats.dropped_not_member += 1
            return False
        if self._out_of_range(envelope):
            self._stats.dropped_out_of_range += 1
            return False
        if envelope.sender == self._id:
            self._stats.dropped_malformed += 1
            return False
        if self._is_foreign(envelope):
            self._stats.dropped_foreign += 1
            return False
        listed = self._latest.incarnation_of(envelope.sender)
        if listed is not None and listed != envelope.incarnation:
            self._stats.dropped_stale += 1
            return False
        if self._role is Role.LEADER and listed is not None:
            self._heard_ms[envelope.sender] = now_ms
        return True

    def view(self) -> ClusterView:
        has_leader = self._has_leader(self._now_ms)
        return ClusterView(
            self_id=self._id,
            incarnation=self._incarnation,
            cluster_id=self._cluster_id,
            role=self._role,
            leader=self._leader if has_leader else None,
            term=self._term,
            epoch=self._committed.epoch,
            latest=self._latest,
            members=tuple(
                MemberView(id=m.id, incarnation=m.incarnation, state=self._member_state(m.id))
                for m in self._committed.members
            ),
            has_leader=has_leader,
            in_majority=has_leader and self._latest.has(self._id, self._incarnation),
            stats=dataclasses.replace(self._stats),
            leaving=self._leaving and self._role is not Role.LEFT,
        )

    @property
    def members(self) -> tuple[str, ...]:
        """The acknowledged member list (sorted ids): where the replicas may live."""
        return self._committed.ids

    @property
    def epoch(self) -> int:
        """Grows whenever `members` changes: compare it to learn of a new member list."""
        return self._committed.epoch

    @property
    def member_list(self) -> MemberList:
        """The acknowledged member list with incarnations: a member whose incarnation changed
        is a restarted process that lost what it held in memory."""
        return self._committed

    @property
    def leader(self) -> str | None:
        return self._leader if self._has_leader(self._now_ms) else None

    def in_standing(self, now_ms: int) -> bool:
        """Whether no leader can have removed this node yet: it leads, or it was listed by its
        leader less than a member timeout ago (removal takes at least that long).

        A node out of standing may have been removed and its copies made again elsewhere, so
        it must not deliver replicated copies on its own (docs/replication.md)."""
        self._note_leading(now_ms)
        if self._role is Role.JOINING or not self._latest.has(self._id, self._incarnation):
            return False
        return now_ms - self._standing_ms < self._timing.member_timeout_ms

    def _advance(self, now_ms: int) -> None:
        self._note_leading(now_ms)
        if now_ms - self._now_ms >= self._timing.member_timeout_ms:
            # We did not run for a member timeout (a pause; timers come far more often): what
            # we read first waited in buffers, and may list us though we were removed since.
            self._catch_up_until_ms = now_ms + self._timing.heartbeat_interval_ms
            if self._role is Role.LEADER and len(self._latest.ids) > 1:
                # A leader back from a pause would judge the members by what it reads first:
                # a dead member's old message looks fresh, and a live one not yet heard looks
                # silent for the whole pause (it removed the live one). The others have likely
                # elected a new leader meanwhile anyway: step down, as check-quorum would.
                self._stats.step_downs += 1
                self._leader = None
                self._heard_leader_ms = _NEVER_MS
                self._become_follower(now_ms)
        self._now_ms = now_ms

    def _note_leading(self, now_ms: int) -> None:
        # A leader is a member in standing until check-quorum makes it step down; the time it
        # last led counts like a heartbeat that listed it. A paused leader resumes with a
        # stale clock reading here, so it is measured at the previous input, not this one.
        if self._role is Role.LEADER and self._latest.has(self._id, self._incarnation):
            self._standing_ms = max(self._standing_ms, self._now_ms)

    def unreachable(self) -> tuple[str, ...]:
        """Members the leader has not heard from lately, as this node last learned it (its own
        reckoning when it leads). Placement avoids them until the leader decides to remove them."""
        if self._role is Role.LEADER:
            return self._heartbeat(self._now_ms).unreachable
        return self._unreachable

    @property
    def incarnation(self) -> int:
        return self._incarnation

    # -- leaving the cluster for good (docs/cluster.md, "Leaving a cluster") --------------------

    @property
    def leaving(self) -> bool:
        """`start_leaving` was called and the node has not left yet."""
        return self._leaving and self._role is not Role.LEFT

    @property
    def has_left(self) -> bool:
        """The leader removed this node after it asked to leave: it is a member no more."""
        return self._role is Role.LEFT

    def leave_refusal(self) -> str | None:
        """Why this node cannot start leaving now (None: it can)."""
        if self._role is Role.LEFT or self._leaving:
            return None  # (already under way: starting again changes nothing)
        if self._role is Role.JOINING or not self._latest.has(self._id, self._incarnation):
            return "this node is not a cluster member"
        if self._role in (Role.PRE_CANDIDATE, Role.CANDIDATE) or not self._has_leader(
            self._now_ms
        ):
            return "this node hears no leader (an election is under way, or a majority is cut off)"
        return None

    def start_leaving(self, now_ms: int) -> list[Outgoing]:
        """This member leaves for good. It stands for no election from now on (a leader steps
        down first: the others elect one among themselves) and tells its leader, so that no new
        copies are placed on it. It is removed only after `handed_off`."""
        self._advance(now_ms)
        if self._leaving:
            return []
        assert self._role in (Role.LEADER, Role.FOLLOWER), self._role
        assert self._latest.has(self._id, self._incarnation), self._latest
        self._leaving = True
        if self._role is Role.LEADER:
            self._leader = None
            self._heard_leader_ms = _NEVER_MS
            self._become_follower(now_ms)
        self._leave_due_ms = now_ms
        out = self._tell_leader_leaving(now_ms)
        self._check_invariants()
        return out

    def handed_off(self, now_ms: int) -> list[Outgoing]:
        """Every copy this node held is on the other members: the leader may remove it."""
        assert self._leaving, "handed_off before start_leaving"
        self._advance(now_ms)
        self._handed_off = True
        if self._role is Role.LEFT:
            return []
        self._leave_due_ms = now_ms
        out = self._tell_leader_leaving(now_ms)
        self._check_invariants()
        return out

    def _tell_leader_leaving(self, now_ms: int) -> list[Outgoing]:
        """Until removed, a leaving node tells its leader every heartbeat interval (a new
        leader knows nothing of it)."""
        if self._leave_due_ms is None or now_ms < self._leave_due_ms:
            return []
        self._leave_due_ms = now_ms + self._timing.heartbeat_interval_ms
        leader = self._leader
        if leader is None or leader == self._id or not self._has_leader(now_ms):
            return []
        return [self._send(leader, LeaveRequest(member=self._me, handed_off=self._handed_off))]

    def _on_leave_request(self, env: Envelope, msg: LeaveRequest, now_ms: int) -> list[Outgoing]:
        if msg.member != Member(id=env.sender, incarnation=env.incarnation):
            return self._drop("dropped_malformed")
        if not self._latest.has(env.sender, env.incarnation):
            # Removed already (or never a member): show it the lists, so that it learns it
            # has left once its removal is acknowledged.
            return [self._heartbeat_to(env.sender, now_ms)]
        self._heard_ms[env.sender] = now_ms
        known = self._leaving_members.get(env.sender)
        if known is None:
            self._stats.leaves_requested += 1
        handed_off = msg.handed_off or (known is not None and known.handed_off)
        self._leaving_members[env.sender] = _Leaving(
            incarnation=env.incarnation, handed_off=handed_off
        )
        return self._broadcast(now_ms) if self._leader_progress(now_ms) else []

    def _become_left(self, committed: MemberList) -> list[Outgoing]:
        """The leader's acknowledged list no longer names us: we have left."""
        self._role = Role.LEFT
        self._latest = committed
        self._committed = committed
        self._leader = None
        self._heard_leader_ms = _NEVER_MS
        self._leave_due_ms = None
        self._unreachable = ()
        self._pre_votes.clear()
        self._votes.clear()
        self._clear_leader_state()
        return []

    # -- durability (docs/durability.md) ---------------------------------------------------------

    def hard_state(self) -> MembershipHardState:
        """What must be on disk before anything this node sends next may be trusted (Raft's
        persistent state): the shell commits it whenever it changed, before sending.

        The same object while nothing in it changed: the shell asks before every peer message,
        and building a new one each time was most of that check's cost."""
        cached = self._hard_state_cache
        if (
            cached is not None
            and cached.term == self._term
            and cached.latest is self._latest
            and cached.committed is self._committed
            and cached.voted_for == self._voted_for
            and cached.cluster_id == self._cluster_id
            and cached.incarnation == self._incarnation
        ):
            return cached
        self._hard_state_cache = MembershipHardState(
            cluster_id=self._cluster_id,
            self_id=self._id,
            incarnation=self._incarnation,
            term=self._term,
            voted_for=self._voted_for,
            latest=self._latest,
            committed=self._committed,
        )
        return self._hard_state_cache

    def add_seeds(self, seed_ids: tuple[str, ...]) -> None:
        """More nodes to ask to let this one in, besides the seed (`--seed A,B,C`)."""
        assert all(is_node_id(s) for s in seed_ids), seed_ids
        assert len(seed_ids) <= MEMBERS_MAX, seed_ids
        self._more_seeds = tuple(sorted(set(seed_ids) - {self._id}))

    @classmethod
    def restored(
        cls,
        saved: MembershipHardState,
        *,
        seed_id: str,
        config: ClusterTiming,
        rng: random.Random,
        now_ms: int,
    ) -> Membership:
        """The same member again after a restart, from the hard state it committed.

        It keeps its incarnation, term, vote and member lists, so it never votes twice in a
        term and its votes and acknowledgements still count. It does not found a cluster
        whatever `seed_id` says: a member of the newest list it knows waits for that list's
        leader (or elects one); a node not in it joins through its seed and every member it
        remembers."""
        assert saved.problem() is None, (saved.problem(), saved)
        membership = cls(
            self_id=saved.self_id, seed_id=seed_id, config=config, rng=rng, now_ms=now_ms
        )
        membership._take_hard_state(saved, now_ms)
        membership._check_invariants()
        return membership

    def _take_hard_state(self, saved: MembershipHardState, now_ms: int) -> None:
        # Whatever the constructor decided (it may have founded a cluster) is replaced.
        self._incarnation = saved.incarnation
        self._me = Member(id=self._id, incarnation=saved.incarnation)
        self._cluster_id = saved.cluster_id
        self._set_term(saved.term)
        self._voted_for = saved.voted_for
        self._latest = saved.latest
        self._committed = saved.committed
        self._leader = None
        self._heard_leader_ms = _NEVER_MS
        self._clear_leader_state()
        self._term_floor = saved.term
        self._epoch_floor = saved.committed.epoch
        if self._latest.has(self._id, self._incarnation):
            # A member: follow whoever leads, or campaign once the election timer fires.
            self._role = Role.FOLLOWER
            self._join_due_ms = None
            self._reset_election_timer(now_ms)
        else:
            self._role = Role.JOINING
            self._join_attempts = 0
            self._join_hint = None
            self._join_due_ms = now_ms

    # -- receiving: the checks every message passes (Raft's §5.1 term rules) --------------------

    def _out_of_range(self, env: Envelope) -> bool:
        """Whether a term or epoch in `env` is too far ahead of ours to be real."""
        if self._cluster_id == 0 or self._role is Role.JOINING:
            term_max = epoch_max = TERM_MAX
        else:
            term_max = min(TERM_MAX, self._term + TERM_STEP_MAX)
            epoch_max = min(TERM_MAX, self._latest.epoch + TERM_STEP_MAX)
        terms = [env.term]
        epochs = [env.epoch]
        match env.message:
            case PreVoteRequest(next_term=next_term, epoch_term=epoch_term, epoch=epoch):
                terms += (next_term, epoch_term)
                epochs.append(epoch)
            case PreVoteResponse(next_term=next_term):
                terms.append(next_term)
            case VoteRequest(epoch_term=epoch_term, epoch=epoch) | HeartbeatAck(
                epoch_term=epoch_term, epoch=epoch
            ):
                terms.append(epoch_term)
                epochs.append(epoch)
            case Heartbeat(latest=latest, committed=committed):
                for member_list in (latest, committed or latest):
                    terms.append(member_list.epoch_term)
                    epochs.append(member_list.epoch)
            case _:
                pass
        return max(terms) > term_max or max(epochs) > epoch_max

    def _receive(self, env: Envelope, msg: MembershipMessage, now_ms: int) -> list[Outgoing]:
        if env.sender == self._id:
            return self._drop("dropped_malformed")  # we never send to ourselves
        if self._is_foreign(env):
            if isinstance(msg, Heartbeat) and self._solo_may_join(env, msg):
                return self._abandon_solo_cluster(env, msg, now_ms)
            return self._drop("dropped_foreign")
        # Joins and pre-votes are term-neutral: a joiner's term means nothing to the cluster,
        # and a pre-vote must not disturb anyone (that is its point).
        if isinstance(msg, JoinRequest | JoinRedirect | PreVoteRequest):
            return self._step(env, msg, now_ms)
        if isinstance(msg, PreVoteResponse):
            # A granted pre-vote carries the voter's (possibly older) term; judge it by
            # next_term. A refusal from a newer term tells us that term exists.
            if not msg.granted and env.term > self._term:
                self._adopt_term(env.term, now_ms)
            return self._step(env, msg, now_ms)
        if env.term < self._term:
            self._stats.dropped_stale += 1
            if isinstance(msg, Heartbeat):
                # A deposed leader learns the newer term from the answer and steps down.
                return [self._ack(env.sender)]
            return []
        if env.term > self._term:
            if isinstance(msg, VoteRequest) and self._in_lease(now_ms):
                # We hear a leader: a node that wants a new term is cut off or was removed.
                return self._drop("dropped_in_lease")
            self._adopt_term(env.term, now_ms)
        return self._step(env, msg, now_ms)

    def _step(self, env: Envelope, msg: MembershipMessage, now_ms: int) -> list[Outgoing]:
        match self._role:
            case Role.LEFT:
                raise AssertionError("a node that left handles no message")
            case Role.LEADER:
                return self._step_leader(env, msg, now_ms)
            case Role.FOLLOWER:
                return self._step_follower(env, msg, now_ms)
            case Role.PRE_CANDIDATE | Role.CANDIDATE:
                return self._step_candidate(env, msg, now_ms)
            case Role.JOINING:
                return self._step_joining(env, msg, now_ms)
            case _:
                assert_never(self._role)

    # -- one step function per role -------------------------------------------------------------

    def _step_leader(self, env: Envelope, msg: MembershipMessage, now_ms: int) -> list[Outgoing]:
        match msg:
            case HeartbeatAck():
                return self._on_heartbeat_ack(env, msg, now_ms)
            case JoinRequest():
                return self._admit_joiner(env, msg, now_ms)
            case LeaveRequest():
                return self._on_leave_request(env, msg, now_ms)
            case PreVoteRequest():
                out = self._on_pre_vote_request(env, msg, now_ms)
                if not self._latest.has(env.sender, env.incarnation):
                    # A removed or restarted node still campaigning: show it the member list,
                    # so it learns it must join again.
                    out.append(self._heartbeat_to(env.sender, now_ms))
                return out
            case VoteRequest():
                return self._on_vote_request(env, msg, now_ms)
            case Heartbeat():
                # Another leader in our own term: impossible unless something is badly wrong.
                return self._drop("dropped_conflicting_leader")
            case JoinRedirect() | PreVoteResponse() | VoteResponse():
                return self._drop("dropped_stale")
            case _:
                assert_never(msg)

    def _step_follower(self, env: Envelope, msg: MembershipMessage, now_ms: int) -> list[Outgoing]:
        match msg:
            case Heartbeat():
                return self._on_heartbeat(env, msg, now_ms)
            case JoinRequest():
                return self._forward_join(env, msg)
            case PreVoteRequest():
                return self._on_pre_vote_request(env, msg, now_ms)
            case VoteRequest():
                return self._on_vote_request(env, msg, now_ms)
            case JoinRedirect():
                return self._ask_leader_to_confirm(msg)
            case HeartbeatAck() | PreVoteResponse() | VoteResponse() | LeaveRequest():
                return self._drop("dropped_stale")  # (a leave goes to the leader; it retries)
            case _:
                assert_never(msg)

    def _step_candidate(self, env: Envelope, msg: MembershipMessage, now_ms: int) -> list[Outgoing]:
        match msg:
            case Heartbeat():
                return self._on_heartbeat(env, msg, now_ms)
            case PreVoteResponse():
                return self._on_pre_vote_response(env, msg, now_ms)
            case VoteResponse():
                return self._on_vote_response(env, msg, now_ms)
            case PreVoteRequest():
                return self._on_pre_vote_request(env, msg, now_ms)
            case VoteRequest():
                return self._on_vote_request(env, msg, now_ms)
            case JoinRequest():
                return self._drop("joins_dropped")  # no leader to forward it to
            case JoinRedirect():
                return self._ask_leader_to_confirm(msg)
            case HeartbeatAck() | LeaveRequest():
                return self._drop("dropped_stale")
            case _:
                assert_never(msg)

    def _step_joining(self, env: Envelope, msg: MembershipMessage, now_ms: int) -> list[Outgoing]:
        match msg:
            case Heartbeat():
                return self._on_heartbeat(env, msg, now_ms)
            case JoinRedirect():
                if msg.leader != self._id:
                    self._join_hint = msg.leader
                return []
            case PreVoteRequest():
                return self._on_pre_vote_request(env, msg, now_ms)
            case VoteRequest():
                # Anyone may vote; the candidate counts our vote only if its list names us.
                return self._on_vote_request(env, msg, now_ms)
            case JoinRequest():
                return self._drop("joins_dropped")
            case HeartbeatAck() | PreVoteResponse() | VoteResponse() | LeaveRequest():
                return self._drop("dropped_stale")
            case _:
                assert_never(msg)

    # -- heartbeats -----------------------------------------------------------------------------

    def _on_heartbeat(self, env: Envelope, msg: Heartbeat, now_ms: int) -> list[Outgoing]:
        """From the leader of our term (the term checks ran): follow it and take its lists."""
        if self._heartbeat_problem(env, msg) is not None:
            return self._drop("dropped_malformed")
        if self._term_leader is not None and self._term_leader != env.sender:
            return self._drop("dropped_conflicting_leader")
        self._term_leader = env.sender
        self._leader = env.sender
        self._heard_leader_ms = now_ms
        if self._cluster_id == 0:
            self._cluster_id = env.cluster_id
        if self._leaving and not msg.latest.has(self._id, self._incarnation):
            # Our removal: we have left once a majority acknowledged it (a leader that wins
            # before that may still list us, and we would still be a member); until then we
            # keep our lists, and tell the leader again.
            committed = msg.committed or msg.latest
            if committed.version > self._committed.version and not committed.has(
                self._id, self._incarnation
            ):
                return self._become_left(committed)
            self._unreachable = msg.unreachable
            return []
        # Only newer versions: a reordered older heartbeat must not roll back what we
        # acknowledged (the leader may have counted it towards a majority).
        if msg.latest.version > self._latest.version:
            self._latest = msg.latest
        self._take_committed(msg.committed or msg.latest)
        self._unreachable = msg.unreachable
        if self._latest.has(self._id, self._incarnation) and now_ms >= self._catch_up_until_ms:
            self._standing_ms = now_ms
        if not self._latest.has(self._id, self._incarnation):
            return self._become_joining(now_ms, hint=env.sender)
        self._role = Role.FOLLOWER
        self._pre_votes.clear()
        self._votes.clear()
        self._reset_election_timer(now_ms)
        return [self._ack(env.sender)]

    def _take_committed(self, committed: MemberList) -> None:
        if committed.version <= self._committed.version:
            return
        if committed.epoch < self._committed.epoch:
            # Cannot happen while the election rules hold (a leader has every committed list).
            self._stats.epoch_regressions_refused += 1
            return
        self._committed = committed

    def _heartbeat_problem(self, env: Envelope, msg: Heartbeat) -> str | None:
        committed = msg.committed or msg.latest
        problem = msg.latest.problem() or committed.problem()
        if problem is not None:
            return problem
        if msg.latest.epoch_term != env.term:
            return "the newest list is not stamped with the leader's term"
        if committed.version > msg.latest.version:
            return "the committed list is newer than the newest one"
        if not msg.latest.has(env.sender, env.incarnation):
            return "the leader is not in its own member list"
        if env.cluster_id == 0:
            return "a leader without a cluster id"
        if len(msg.unreachable) > MEMBERS_MAX:
            return f"more than {MEMBERS_MAX} unreachable members"
        return None

    def _ack(self, to: str) -> Outgoing:
        return self._send(
            to, HeartbeatAck(epoch_term=self._latest.epoch_term, epoch=self._latest.epoch)
        )

    def _on_heartbeat_ack(self, env: Envelope, msg: HeartbeatAck, now_ms: int) -> list[Outgoing]:
        if not self._latest.has(env.sender, env.incarnation):
            return self._drop("dropped_not_member")
        self._heard_ms[env.sender] = now_ms
        self._acked[env.sender] = (msg.epoch_term, msg.epoch)
        return self._broadcast(now_ms) if self._leader_progress(now_ms) else []

    # -- votes (Raft §5.2 and §5.4.1; pre-vote and check-quorum from Ongaro's thesis) -----------

    def _on_pre_vote_request(
        self, env: Envelope, msg: PreVoteRequest, now_ms: int
    ) -> list[Outgoing]:
        """Answer without changing anything: no term, no vote, no timer."""
        granted = (
            self._role is not Role.LEADER
            and msg.next_term > self._term
            and (msg.epoch_term, msg.epoch) >= self._latest.version
            and not self._in_lease(now_ms)
        )
        out = [self._send(env.sender, PreVoteResponse(next_term=msg.next_term, granted=granted))]
        leader = self._leader
        if (
            self._role is not Role.LEADER
            and leader is not None
            and leader != env.sender
            and not self._latest.has(env.sender, env.incarnation)
        ):
            # A node campaigning from a list that no longer names it (removed while cut off,
            # and its old list may not even name the leader): point it at the leader.
            out.append(self._send(env.sender, JoinRedirect(leader=leader)))
        return out

    def _ask_leader_to_confirm(self, msg: JoinRedirect) -> list[Outgoing]:
        """Someone says we are not in the member list. Ask that leader to let us in: if we are
        in its list after all, it just sends us a heartbeat."""
        if msg.leader == self._id:
            return self._drop("dropped_malformed")
        return [self._send(msg.leader, JoinRequest(joiner=self._me))]

    def _on_vote_request(self, env: Envelope, msg: VoteRequest, now_ms: int) -> list[Outgoing]:
        candidate = Member(id=env.sender, incarnation=env.incarnation)
        may_vote = self._voted_for == candidate or (
            self._voted_for is None and self._leader is None
        )
        # The candidate's newest list must be at least as new as ours (Raft's up-to-date rule),
        # so a list a majority acknowledged survives every election.
        up_to_date = (msg.epoch_term, msg.epoch) >= self._latest.version
        granted = may_vote and up_to_date
        if granted:
            self._voted_for = candidate
            if self._role is not Role.JOINING:
                self._reset_election_timer(now_ms)
        return [self._send(env.sender, VoteResponse(granted=granted))]

    def _on_pre_vote_response(
        self, env: Envelope, msg: PreVoteResponse, now_ms: int
    ) -> list[Outgoing]:
        if self._role is not Role.PRE_CANDIDATE or msg.next_term != self._term + 1:
            return self._drop("dropped_stale")
        if not self._latest.has(env.sender, env.incarnation):
            return self._drop("dropped_not_member")
        if not msg.granted:
            return []
        self._pre_votes.add(env.sender)
        if len(self._pre_votes) >= self._latest.majority:
            return self._become_candidate(now_ms)
        return []

    def _on_vote_response(self, env: Envelope, msg: VoteResponse, now_ms: int) -> list[Outgoing]:
        if self._role is not Role.CANDIDATE:
            return self._drop("dropped_stale")
        if not self._latest.has(env.sender, env.incarnation):
            # Also a restarted voter: its new incarnation may vote again in this term, so only
            # the incarnation our list names is counted.
            return self._drop("dropped_not_member")
        if not msg.granted:
            return []
        self._votes.add(env.sender)
        if len(self._votes) >= self._latest.majority:
            return self._become_leader(now_ms)
        return []

    def _start_pre_vote(self, now_ms: int) -> list[Outgoing]:
        if not self._latest.has(self._id, self._incarnation):
            return self._become_joining(now_ms, hint=None)
        self._role = Role.PRE_CANDIDATE
        self._leader = None
        self._heard_leader_ms = _NEVER_MS
        self._pre_votes = {self._id}
        self._votes.clear()
        self._stats.pre_votes_started += 1
        self._reset_election_timer(now_ms)
        if len(self._pre_votes) >= self._latest.majority:
            return self._become_candidate(now_ms)
        request = PreVoteRequest(
            next_term=self._term + 1,
            epoch_term=self._latest.epoch_term,
            epoch=self._latest.epoch,
        )
        return [self._send(peer, request) for peer in self._latest.ids if peer != self._id]

    def _become_candidate(self, now_ms: int) -> list[Outgoing]:
        assert self._role is Role.PRE_CANDIDATE, self._role
        self._set_term(self._term + 1)
        self._voted_for = self._me
        self._role = Role.CANDIDATE
        self._votes = {self._id}
        self._pre_votes.clear()
        self._stats.elections_started += 1
        self._reset_election_timer(now_ms)
        if len(self._votes) >= self._latest.majority:
            return self._become_leader(now_ms)
        request = VoteRequest(epoch_term=self._latest.epoch_term, epoch=self._latest.epoch)
        return [self._send(peer, request) for peer in self._latest.ids if peer != self._id]

    def _become_leader(self, now_ms: int) -> list[Outgoing]:
        assert self._role is Role.CANDIDATE, self._role
        assert len(self._votes) >= self._latest.majority, (self._votes, self._latest)
        assert self._voted_for == self._me, self._voted_for
        assert self._term_leader is None, (self._term, self._term_leader)
        self._role = Role.LEADER
        self._term_leader = self._id
        self._leader = self._id
        self._heard_leader_ms = now_ms
        self._votes.clear()
        # Re-publish the inherited list under our term. Nothing changes until a majority has
        # acknowledged it: that is Raft's "commit an entry of your own term first", which keeps
        # a list from an older term from being overruled after we build on it.
        self._latest = dataclasses.replace(self._latest, epoch_term=self._term)
        self._heard_ms = {peer: now_ms for peer in self._latest.ids if peer != self._id}
        self._acked = {}
        self._pending_joins = {}
        self._leaving_members = {}
        self._stats.elections_won += 1
        self._leader_progress(now_ms)
        return self._broadcast(now_ms)

    def _adopt_term(self, term: int, now_ms: int) -> None:
        """A newer term exists: forget this term's vote and leader; leaders and candidates
        become followers."""
        assert term > self._term, (term, self._term)
        self._set_term(term)
        self._voted_for = None
        self._leader = None
        self._heard_leader_ms = _NEVER_MS
        if self._role is not Role.JOINING:
            self._become_follower(now_ms)

    def _set_term(self, term: int) -> None:
        self._term = term
        self._term_leader = None

    def _become_follower(self, now_ms: int) -> None:
        assert self._latest.has(self._id, self._incarnation)
        self._role = Role.FOLLOWER
        self._pre_votes.clear()
        self._votes.clear()
        self._clear_leader_state()
        self._reset_election_timer(now_ms)

    def _reset_election_timer(self, now_ms: int) -> None:
        timing = self._timing
        timeout = self._rng.randint(timing.election_timeout_min_ms, timing.election_timeout_max_ms)
        self._election_deadline_ms = now_ms + timeout

    def _in_lease(self, now_ms: int) -> bool:
        """Whether this node still hears a leader (or is one): then it helps no one depose it."""
        if self._role is Role.LEADER:
            return True
        recent = now_ms - self._heard_leader_ms < self._timing.election_timeout_min_ms
        return self._leader is not None and recent

    # -- the leader: heartbeats, check-quorum, membership changes -------------------------------

    def _found_cluster(self, now_ms: int) -> None:
        self._cluster_id = self._rng.randrange(1, 2**64)
        self._set_term(1)
        self._voted_for = self._me
        self._latest = MemberList(epoch=1, epoch_term=1, members=(self._me,))
        self._committed = self._latest
        self._role = Role.LEADER
        self._term_leader = self._id
        self._leader = self._id
        self._heard_leader_ms = now_ms
        self._join_due_ms = None
        self._heartbeat_due_ms = now_ms + self._timing.heartbeat_interval_ms

    def _tick_leader(self, now_ms: int) -> list[Outgoing]:
        if not self._quorum_active(self._latest, now_ms, self._timing.election_timeout_min_ms):
            # Check-quorum: cut off from the majority, we may not act as the leader any more.
            self._stats.step_downs += 1
            self._leader = None
            self._heard_leader_ms = _NEVER_MS
            self._become_follower(now_ms)
            return []
        self._leader_progress(now_ms)
        return self._broadcast(now_ms)

    def _broadcast(self, now_ms: int) -> list[Outgoing]:
        self._heartbeat_due_ms = now_ms + self._timing.heartbeat_interval_ms
        targets = [peer for peer in self._latest.ids if peer != self._id]
        targets.extend(peer for peer in self._removed_to_tell if peer not in targets)
        self._removed_to_tell.clear()
        heartbeat = self._heartbeat(now_ms)
        return [self._send(peer, heartbeat) for peer in targets]

    def _heartbeat_to(self, peer: str, now_ms: int) -> Outgoing:
        return self._send(peer, self._heartbeat(now_ms))

    def _heartbeat(self, now_ms: int) -> Heartbeat:
        window = self._timing.election_timeout_min_ms
        unreachable = tuple(
            peer
            for peer in self._latest.ids
            if peer != self._id
            and (
                now_ms - self._heard_ms.get(peer, _NEVER_MS) >= window
                # A leaving member takes no new copies: placement skips it as it skips
                # the unreachable, and nobody waits for its answers.
                or peer in self._leaving_members
            )
        )
        committed = None if self._committed == self._latest else self._committed
        return Heartbeat(latest=self._latest, committed=committed, unreachable=unreachable)

    def _quorum_active(
        self, members: MemberList, now_ms: int, window_ms: int, also_active: str | None = None
    ) -> bool:
        """A majority of `members` (us included) heard from within `window_ms`."""
        active = sum(
            1
            for peer in members.ids
            if peer in (self._id, also_active)
            or now_ms - self._heard_ms.get(peer, _NEVER_MS) < window_ms
        )
        return active >= members.majority

    def _leader_progress(self, now_ms: int) -> bool:
        """Commit what a majority acknowledged and make the next change it allows. True if
        the lists changed (then the members must hear of it)."""
        progressed = False
        while self._commit() or self._change_membership(now_ms):
            progressed = True
        return progressed

    def _commit(self) -> bool:
        if self._committed == self._latest:
            return False
        acknowledged = sum(
            1
            for peer in self._latest.ids
            if peer == self._id or self._acked.get(peer) == self._latest.version
        )
        if acknowledged < self._latest.majority:
            return False
        self._committed = self._latest
        return True

    def _change_membership(self, now_ms: int) -> bool:
        """One member in or out, only once the current list is acknowledged in this term, and
        only if a majority of the new list is reachable (so a minority never changes anything).
        Consecutive lists then differ by one member and any two of their majorities overlap."""
        if self._committed != self._latest:
            return False
        self._expire_pending_joins(now_ms)
        change = self._next_change(now_ms)
        if change is None:
            return False
        members, removed, added = change
        self._latest = MemberList(
            epoch=self._latest.epoch + 1, epoch_term=self._term, members=members
        )
        if removed is not None:
            if removed in self._leaving_members:
                self._stats.members_left += 1
            self._leaving_members.pop(removed, None)
            self._heard_ms.pop(removed, None)
            self._acked.pop(removed, None)
            self._removed_to_tell.append(removed)
            self._stats.members_removed += 1
        if added is not None:
            self._heard_ms[added] = now_ms
            del self._pending_joins[added]
            self._stats.members_added += 1
        return True

    def _next_change(self, now_ms: int) -> tuple[tuple[Member, ...], str | None, str | None] | None:
        """(new members, removed id, added id) for the most urgent allowed change, or None."""
        timing = self._timing
        current = self._latest.members
        # A change needs a majority of the new list that answered the last beat or two: a
        # member that died a moment ago must not count towards a list that cannot work
        # without it (with no disk, a dead incarnation never comes back).
        window_ms = 2 * timing.heartbeat_interval_ms

        def silent_ms(peer: str) -> int:
            return now_ms - self._heard_ms.get(peer, _NEVER_MS)

        def without(peer: str) -> tuple[Member, ...]:
            return tuple(m for m in current if m.id != peer)

        removals = [
            # A member that asked to leave and handed its copies off (only then: removing it
            # earlier would leave tasks short of copies).
            m.id
            for m in current
            if (leaving := self._leaving_members.get(m.id)) is not None
            and leaving.handed_off
            and leaving.incarnation == m.incarnation
        ] + [
            # A restarted process asks to join under the id of a member we no longer hear:
            # the old incarnation is gone for good.
            m.id
            for m in current
            if m.id in self._pending_joins
            and self._pending_joins[m.id].incarnation != m.incarnation
            and silent_ms(m.id) >= timing.election_timeout_min_ms
        ] + [
            m.id
            for m in current
            if m.id != self._id and silent_ms(m.id) >= timing.member_timeout_ms
        ]
        for peer in removals:
            assert peer != self._id
            members = without(peer)
            if self._quorum_active(self._list_of(members), now_ms, window_ms):
                return members, peer, None
        if len(current) >= MEMBERS_MAX:
            return None
        listed = set(self._latest.ids)
        for peer in sorted(self._pending_joins):
            if peer in listed:
                continue
            join = self._pending_joins[peer]
            joiner = Member(id=peer, incarnation=join.incarnation)
            members = tuple(sorted((*current, joiner), key=lambda m: m.id))
            fresh = now_ms - join.requested_ms < window_ms
            also_active = peer if fresh else None
            if self._quorum_active(self._list_of(members), now_ms, window_ms, also_active):
                return members, None, peer
        return None

    def _list_of(self, members: tuple[Member, ...]) -> MemberList:
        return MemberList(epoch=self._latest.epoch + 1, epoch_term=self._term, members=members)

    def _expire_pending_joins(self, now_ms: int) -> None:
        timeout = self._timing.member_timeout_ms
        for peer in sorted(self._pending_joins):
            if now_ms - self._pending_joins[peer].requested_ms > timeout:
                del self._pending_joins[peer]

    def _admit_joiner(self, env: Envelope, msg: JoinRequest, now_ms: int) -> list[Outgoing]:
        joiner = msg.joiner
        if not msg.forwarded and joiner != Member(id=env.sender, incarnation=env.incarnation):
            return self._drop("dropped_malformed")
        if joiner.id == self._id:
            return self._drop("dropped_malformed")
        if self._latest.has(joiner.id, joiner.incarnation):
            # Already in: it missed the news. Tell it directly.
            self._heard_ms[joiner.id] = now_ms
            return [self._heartbeat_to(joiner.id, now_ms)]
        if joiner.id not in self._pending_joins and len(self._pending_joins) >= MEMBERS_MAX:
            return self._drop("joins_dropped")
        self._pending_joins[joiner.id] = _PendingJoin(
            incarnation=joiner.incarnation, requested_ms=now_ms
        )
        return self._broadcast(now_ms) if self._leader_progress(now_ms) else []

    def _clear_leader_state(self) -> None:
        self._heard_ms = {}
        self._acked = {}
        self._pending_joins = {}
        self._removed_to_tell = []
        self._leaving_members = {}

    # -- joining --------------------------------------------------------------------------------

    def _forward_join(self, env: Envelope, msg: JoinRequest) -> list[Outgoing]:
        leader = self._leader
        if msg.forwarded or leader is None or leader == self._id:
            return self._drop("joins_dropped")
        if msg.joiner != Member(id=env.sender, incarnation=env.incarnation):
            return self._drop("dropped_malformed")
        self._stats.joins_forwarded += 1
        return [
            self._send(leader, JoinRequest(joiner=msg.joiner, forwarded=True)),
            self._send(env.sender, JoinRedirect(leader=leader)),
        ]

    def _become_joining(self, now_ms: int, *, hint: str | None) -> list[Outgoing]:
        was_joining = self._role is Role.JOINING
        self._role = Role.JOINING
        self._join_hint = hint
        self._pre_votes.clear()
        self._votes.clear()
        self._clear_leader_state()
        if was_joining:
            return []
        self._join_attempts = 0
        return self._send_join(now_ms)

    def _send_join(self, now_ms: int) -> list[Outgoing]:
        target = self._join_target()
        timing = self._timing
        delay = min(
            timing.join_retry_max_ms, timing.join_retry_min_ms << min(self._join_attempts, 16)
        )
        self._join_attempts += 1
        self._join_due_ms = now_ms + self._rng.randint(max(1, delay // 2), delay)
        if target is None:
            return []
        return [self._send(target, JoinRequest(joiner=self._me))]

    def _join_target(self) -> str | None:
        """The leader we were told of, taking turns with the seed and every member we know,
        so a join gets through any live member."""
        others = sorted(
            ({self._seed, *self._more_seeds} | set(self._latest.ids) | set(self._committed.ids))
            - {self._id}
        )
        hint = self._join_hint
        if hint is not None and hint != self._id and (self._join_attempts % 2 == 0 or not others):
            return hint
        if not others:
            return None
        return others[(self._join_attempts // 2) % len(others)]

    # -- two clusters: a restarted founder ------------------------------------------------------

    def _is_foreign(self, env: Envelope) -> bool:
        return env.cluster_id != 0 and self._cluster_id != 0 and env.cluster_id != self._cluster_id

    def _solo_may_join(self, env: Envelope, msg: Heartbeat) -> bool:
        """A founder restarted with itself as seed founds a new cluster of one. If the leader
        of its old cluster, which still lists its id, reaches it, it gives up its own cluster
        and joins the old one (only while nobody else has joined it)."""
        theirs = msg.committed or msg.latest
        return (
            self._role is Role.LEADER
            and self._latest.ids == (self._id,)
            and self._committed == self._latest
            and self._heartbeat_problem(env, msg) is None
            and msg.latest.incarnation_of(self._id) is not None
            and theirs.epoch > self._committed.epoch
        )

    def _abandon_solo_cluster(self, env: Envelope, msg: Heartbeat, now_ms: int) -> list[Outgoing]:
        self._stats.solo_clusters_abandoned += 1
        self._cluster_id = env.cluster_id
        if env.term > self._term:
            self._set_term(env.term)
            self._voted_for = None
        self._latest = msg.latest
        self._committed = msg.committed or msg.latest
        self._leader = None
        self._heard_leader_ms = _NEVER_MS
        if env.term == self._term:
            self._term_leader = env.sender
        return self._become_joining(now_ms, hint=env.sender)

    # -- small things ---------------------------------------------------------------------------

    def _send(self, to: str, message: MembershipMessage) -> Outgoing:
        return Outgoing(to=to, envelope=self.stamp(message))

    def _drop(self, counter: str) -> list[Outgoing]:
        setattr(self._stats, counter, getattr(self._stats, counter) + 1)
        return []

    def _has_leader(self, now_ms: int) -> bool:
        if self._role is Role.LEADER:
            return True
        recent = now_ms - self._heard_leader_ms <= self._timing.election_timeout_max_ms
        return self._leader is not None and recent

    def _member_state(self, peer: str) -> MemberState:
        if peer == self._id:
            return MemberState.ALIVE
        if self._role is Role.LEADER:
            silent_ms = self._now_ms - self._heard_ms.get(peer, _NEVER_MS)
            alive = silent_ms < self._timing.election_timeout_min_ms
            return MemberState.ALIVE if alive else MemberState.UNREACHABLE
        if not self._has_leader(self._now_ms):
            return MemberState.UNKNOWN
        return MemberState.UNREACHABLE if peer in self._unreachable else MemberState.ALIVE

    def _check_invariants(self) -> None:
        """TIGER_STYLE postconditions, after every input."""
        assert self._term >= self._term_floor, (self._term, self._term_floor)
        self._term_floor = self._term
        assert self._committed.epoch >= self._epoch_floor, (self._committed, self._epoch_floor)
        self._epoch_floor = self._committed.epoch
        assert self._committed.version <= self._latest.version, (self._committed, self._latest)
        assert self._latest.problem() is None, self._latest
        if self._role not in (Role.JOINING, Role.LEFT):
            assert self._latest.has(self._id, self._incarnation), (self._role, self._latest)
        if self._role is Role.LEFT:
            assert self._leaving and not self._committed.has(self._id, self._incarnation)
        if self._leaving and self._role is not Role.LEFT:
            # A leaving node stands for no election, so it never leads again.
            assert self._role is not Role.LEADER and self._role is not Role.CANDIDATE
        if self._role in (Role.LEADER, Role.CANDIDATE):
            assert self._voted_for == self._me, (self._role, self._voted_for)
        if self._role is Role.LEADER:
            assert self._term_leader == self._id and self._leader == self._id
            assert self._latest.epoch_term == self._term, (self._latest, self._term)
        if self._leader is not None:
            # At most one leader per term, as far as this node can tell.
            assert self._leader == self._term_leader, (self._leader, self._term_leader)
