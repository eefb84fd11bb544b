"""What the membership shows the rest of the node (and `GET /_cluster`): plain frozen values."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..messages import MemberList


class Role(enum.Enum):
    JOINING = "joining"
    """Not in the newest member list this node knows: asking a member to let it in."""
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    """Asking whether the others would vote for it, before it raises its term (pre-vote)."""
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEFT = "left"
    """Left the cluster for good (`POST /_cluster/leave`): the leader removed it. It takes part
    in nothing any more and refuses every peer message."""


class MemberState(enum.Enum):
    ALIVE = "alive"
    UNREACHABLE = "unreachable"
    """The leader has not heard from it within an election timeout."""
    UNKNOWN = "unknown"
    """This node has no leader to tell it."""


@dataclass(slots=True, kw_only=True)
class MembershipStats:
    """Counters, for `GET /_cluster` and the simulator. Only grow."""

    received: int = 0
    dropped_stale: int = 0
    """From an older term, for a finished election, or from a replaced incarnation."""
    dropped_foreign: int = 0
    """From a node of another cluster."""
    dropped_not_member: int = 0
    """A vote or an acknowledgement from a node that is not (or no longer) a member."""
    dropped_malformed: int = 0
    """Decoded, but inconsistent (an unsorted member list, a leader missing from its list...)."""
    dropped_out_of_range: int = 0
    """A term or epoch too far ahead of ours to be real (`TERM_STEP_MAX`): never adopted."""
    dropped_in_lease: int = 0
    """A vote request while this node still hears a leader (it would disrupt a working cluster)."""
    dropped_conflicting_leader: int = 0
    """A second leader claimed a term whose leader this node knows. Must stay 0."""
    epoch_regressions_refused: int = 0
    """A leader sent a committed list with a lower epoch than ours. Must stay 0."""
    joins_forwarded: int = 0
    joins_dropped: int = 0
    pre_votes_started: int = 0
    elections_started: int = 0
    elections_won: int = 0
    step_downs: int = 0
    """Leaderships ended by check-quorum (no majority heard within an election timeout)."""
    members_added: int = 0
    members_removed: int = 0
    solo_clusters_abandoned: int = 0
    leaves_requested: int = 0
    """Leave requests this node's leadership took (each member counted once per leadership)."""
    members_left: int = 0
    """Members removed because they asked to leave and had handed their copies off."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberView:
    id: str
    incarnation: int
    state: MemberState


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterView:
    """This node's view of the cluster.

    `members` and `epoch` are the newest member list that a majority acknowledged: every node
    that shows the same epoch shows the same members, and a node's epoch never decreases.
    `latest` is the newest list it knows, acknowledged or not: the one its votes and quorums
    count with (with incarnations, so a test or the simulator can tell whether a majority of it
    is still alive).
    """

    self_id: str
    incarnation: int
    cluster_id: int
    role: Role
    leader: str | None
    """The leader this node heard from within an election timeout (itself when it leads)."""
    term: int
    epoch: int
    latest: MemberList
    members: tuple[MemberView, ...]
    """Sorted by id."""
    has_leader: bool
    in_majority: bool
    """It has a leader and is a member: its side of any partition can change the membership."""
    stats: MembershipStats
    leaving: bool = False
    """This node is leaving the cluster (`POST /_cluster/leave`) and has not left yet."""

    @property
    def member_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)

    @property
    def latest_epoch(self) -> int:
        return self.latest.epoch
