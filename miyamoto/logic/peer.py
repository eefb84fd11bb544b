"""Every message one node sends another: the membership layer's and the replicas'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .replica_messages import ReplicaMessage

MembershipMessage: TypeAlias = ReplicaMessage  # replaced by the election messages when they land
PeerMessage: TypeAlias = ReplicaMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    to: str
    message: PeerMessage
