"""Peer messages: what cluster members say to each other, as plain values.

Every message travels in an `Envelope` that names the sender and stamps it with the sender's
incarnation, cluster, term and epoch, so a receiver can drop what is stale before looking inside.
`codec.py` is the only place that turns envelopes into bytes and back (see docs/cluster.md).

Adding a message type is a local change: define a frozen, slotted, keyword-only dataclass whose
fields use the types the codec knows (int, bool, str, `NodeId`, bytes, enums with str values,
tuples, `X | None`, nested dataclasses of the same kind), add it to its union (`MembershipMessage`
here, `ReplicaMessage` in replica_messages.py) and give it a wire name in `codec.WIRE_NAMES`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Annotated, Final, TypeAlias

from .replica_messages import ReplicaMessage

NODE_ID_CHARS_MAX: Final = 300
MEMBERS_MAX: Final = 100
"""Members in one cluster. Heartbeats carry the whole list, so it stays small."""


class NodeIdFormat:
    """Marks a str field as a node id ("host:port"); the codec refuses anything else."""

    __slots__ = ()


NodeId: TypeAlias = Annotated[str, NodeIdFormat()]

_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_PORT = re.compile(r"[1-9][0-9]{0,4}")


def is_node_id(text: str) -> bool:
    """A "host:port" with a DNS name, IPv4 or [IPv6] host and a port 1..65535 written canonically.

    Canonical (no leading zeros, no sign) because ids are compared as strings everywhere.
    """
    if len(text) > NODE_ID_CHARS_MAX:
        return False
    host, sep, port = text.rpartition(":")
    return (
        sep == ":"
        and _HOST.fullmatch(host) is not None
        and _PORT.fullmatch(port) is not None
        and int(port) <= 65535
    )


# -- the member list ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One process in the cluster: a node id and the incarnation it drew when it started."""

    id: NodeId
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberList:
    """A version of the member list, as the leader of `epoch_term` made it.

    `epoch` counts membership changes; `epoch_term` is the term of the leader that published
    this version (a new leader re-publishes the list it inherited under its own term before it
    changes anything). Versions are ordered by `version` = (epoch_term, epoch), the way Raft
    orders logs by (last term, last index). Members are sorted by id, one incarnation per id.
    """

    epoch: int
    epoch_term: int
    members: tuple[Member, ...]

    @property
    def version(self) -> tuple[int, int]:
        return (self.epoch_term, self.epoch)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)

    @property
    def majority(self) -> int:
        return len(self.members) // 2 + 1

    def incarnation_of(self, node_id: str) -> int | None:
        for member in self.members:
            if member.id == node_id:
                return member.incarnation
        return None

    def has(self, node_id: str, incarnation: int) -> bool:
        return self.incarnation_of(node_id) == incarnation

    def problem(self) -> str | None:
        """What makes this list invalid (it came from the network), or None."""
        if len(self.members) > MEMBERS_MAX:
            return f"more than {MEMBERS_MAX} members"
        ids = self.ids
        if any(a >= b for a, b in itertools.pairwise(ids)):
            return "member ids are not sorted and unique"
        if self.epoch < 0 or self.epoch_term < 0:
            return "negative epoch or epoch term"
        return None


EMPTY_MEMBER_LIST: Final = MemberList(epoch=0, epoch_term=0, members=())
"""What a node knows before it joins anything."""


# -- membership and election messages ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinRequest:
    """`joiner` asks to be a member. A follower forwards it once to its leader (`forwarded`)."""

    joiner: Member
    forwarded: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinRedirect:
    """Answer to a join sent to a follower: ask `leader` next time (the join was forwarded)."""

    leader: NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """The leader's beat: its newest member list, the newest one a majority has acknowledged
    (None: the same), and the members it has not heard from lately."""

    latest: MemberList
    committed: MemberList | None = None
    unreachable: tuple[NodeId, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatAck:
    """A member's answer to a heartbeat: the version of the newest list it holds."""

    epoch_term: int
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVoteRequest:
    """Would you vote for me in `next_term`? Changes nothing at the receiver (pre-vote)."""

    next_term: int
    epoch_term: int
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVoteResponse:
    next_term: int
    granted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteRequest:
    """Vote for me in the envelope's term; my newest member list has this version."""

    epoch_term: int
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteResponse:
    granted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveRequest:
    """`member` is leaving the cluster for good (`POST /_cluster/leave`), sent to its leader
    until it is removed. The leader places no new copies on it; once `handed_off` (every copy
    it holds has its R copies on the other members) the leader removes it (docs/cluster.md)."""

    member: Member
    handed_off: bool


MembershipMessage: TypeAlias = (
    JoinRequest
    | JoinRedirect
    | Heartbeat
    | HeartbeatAck
    | PreVoteRequest
    | PreVoteResponse
    | VoteRequest
    | VoteResponse
    | LeaveRequest
)
MEMBERSHIP_MESSAGE_TYPES: Final = (
    JoinRequest,
    JoinRedirect,
    Heartbeat,
    HeartbeatAck,
    PreVoteRequest,
    PreVoteResponse,
    VoteRequest,
    VoteResponse,
    LeaveRequest,
)
"""For `isinstance(message, MEMBERSHIP_MESSAGE_TYPES)`: route a message to the membership."""

PeerMessage: TypeAlias = MembershipMessage | ReplicaMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One message on the wire with the stamp of its sender.

    `incarnation` is a random 64-bit number the sender drew when its process started (a restart
    is a new incarnation with all memory lost); `cluster_id` is 0 until the sender belongs to a
    cluster; `term` is the sender's current election term and `epoch` the epoch of the newest
    member list it knows a majority acknowledged.
    """

    sender: NodeId
    incarnation: int
    cluster_id: int
    term: int
    epoch: int
    message: PeerMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """Send `envelope` to node `to`. Best effort: the protocols survive loss and duplication."""

    to: str
    envelope: Envelope
