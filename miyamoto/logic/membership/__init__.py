"""Membership and leader election: who is in the cluster and who leads it (docs/cluster.md)."""

from .machine import Membership
from .timing import ClusterTiming
from .view import ClusterView, MembershipStats, MemberState, MemberView, Role

__all__ = [
    "ClusterTiming",
    "ClusterView",
    "MemberState",
    "MemberView",
    "Membership",
    "MembershipStats",
    "Role",
]
