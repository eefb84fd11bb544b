"""Whether a node can take an enqueue now (`GET /_ready`), decided from its view of the cluster
and, with a data directory, whether its store takes writes.

A node takes an enqueue only as a member that hears a leader: a joining node answers 503, and a
member cut off from its leader may have been removed already (its copies would not count). A
node whose last commit failed (disk full, I/O error) would answer every enqueue 507 until one
succeeds. Load balancers use this to send clients only to nodes that will accept their tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .membership import ClusterView, Role


@dataclass(frozen=True, slots=True, kw_only=True)
class Readiness:
    ready: bool
    reason: str
    """Why not, in words for an operator; "ready" when ready."""


def readiness(view: ClusterView, *, store_problem: str | None = None) -> Readiness:
    """`store_problem`: why the node's last write to its store failed (None: it succeeded, or
    the node keeps no store)."""
    if view.role is Role.LEFT:
        return Readiness(
            ready=False, reason="left the cluster (POST /_cluster/leave): it takes no tasks"
        )
    if view.leaving:
        return Readiness(
            ready=False,
            reason="leaving the cluster (POST /_cluster/leave): handing its copies to the others",
        )
    if view.self_id not in view.member_ids:
        return Readiness(
            ready=False, reason="not a cluster member yet: joining through its seed node"
        )
    if not view.has_leader:
        return Readiness(
            ready=False,
            reason="no leader: an election is under way or a majority of the members "
            "cannot be reached",
        )
    if not view.in_majority:
        return Readiness(
            ready=False, reason="not in the newest member list: it may have been removed"
        )
    if store_problem is not None:
        return Readiness(
            ready=False, reason=f"the task store does not take writes: {store_problem}"
        )
    return Readiness(ready=True, reason="ready")
