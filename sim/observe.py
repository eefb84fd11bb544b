"""Reading a node's state for the checkers: the only place that looks inside a `Node`.

The checkers need to know which tasks a node still holds (to tell a task lost with all its
holders from a task the cluster lost) and how it sees the cluster (for election safety and
convergence). Keeping those reads here means a change inside the node changes one file.
"""

from __future__ import annotations

from miyamoto.logic.membership import Role
from miyamoto.logic.node import Node

from .checkers import ClusterView


def pending_task_ids(node: Node) -> set[str]:
    """Ids of the tasks `node` holds that are not finished (so it may still deliver them)."""
    return {
        task.id
        for tasks in node.tasks.store.by_queue()
        for task in tasks
        if not task.state.is_final
    }


def known_task_ids(node: Node) -> set[str]:
    """Ids of every task `node` holds or remembers (finished ones until their retention ends)."""
    return {task.id for tasks in node.tasks.store.by_queue() for task in tasks}


def member_count(node: Node) -> int:
    """The length of the member list `node` works with (0 before it knows one): the N its
    queues divide their rate, burst and concurrency by."""
    return len(node.members)


def cluster_view(node: Node) -> ClusterView:
    """How `node` sees the cluster right now."""
    view = node.membership.view()
    return ClusterView(
        node=view.self_id,
        incarnation=view.incarnation,
        cluster_id=view.cluster_id,
        leads=view.role is Role.LEADER,
        leader=view.leader,
        term=view.term,
        epoch=view.epoch,
        members=view.member_ids,
    )


def committed_members(node: Node) -> tuple[int, tuple[tuple[str, int], ...]]:
    """The epoch and the (id, incarnation) of each member of the newest member list `node`
    knows a majority acknowledged."""
    view = node.membership.view()
    return view.epoch, tuple((m.id, m.incarnation) for m in view.members)


def latest_members(node: Node) -> tuple[tuple[str, int], ...]:
    """The (id, incarnation) of each member of the newest member list `node` knows, acknowledged
    or not: the list its votes and quorums count with."""
    return tuple((m.id, m.incarnation) for m in node.membership.view().latest.members)


def incarnation(node: Node) -> int:
    """Which process `node` is: a restarted node is a new incarnation."""
    return node.membership.view().incarnation
