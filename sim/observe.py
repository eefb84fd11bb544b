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


def copy_created_ms(node: Node, queue: str, task_id: str) -> int | None:
    """When (node's clock) the enqueue that made `node`'s copy of the task placed it; None
    when `node` neither holds nor remembers the task."""
    task = node.tasks.get(queue, task_id)
    return None if task is None else task.created_ms


def copy_due_ms(node: Node, queue: str, task_id: str) -> int | None:
    """When (node's clock) `node`'s copy of the task is due by its place among the holders:
    copy k waits k replica delays after the ETA (or after the enqueue, the ETA past then)."""
    task = node.tasks.get(queue, task_id)
    if task is None:
        return None
    start_ms = max(task.eta_ms, task.created_ms)
    return start_ms + task.copy_index * node.config.replica_delay_ms


def copy_holders(node: Node, queue: str, task_id: str) -> tuple[str, ...]:
    """The holders `node`'s copy of the task knows of."""
    task = node.tasks.get(queue, task_id)
    return () if task is None else tuple(holder for holder, _ in task.holders)


def task_states(node: Node) -> dict[str, str]:
    """Task id -> state of every task `node` holds or remembers."""
    return {task.id: task.state.value for tasks in node.tasks.store.by_queue() for task in tasks}


def copies_held(node: Node) -> list[tuple[str, str, int]]:
    """(queue, id, created_ms) of every task `node` holds or remembers."""
    return [
        (task.queue, task.id, task.created_ms)
        for tasks in node.tasks.store.by_queue()
        for task in tasks
    ]


def holders_of(node: Node, task_id: str) -> tuple[str, ...]:
    """The holders `node`'s copy of task `task_id` (in whatever queue) names; () if none."""
    for tasks in node.tasks.store.by_queue():
        for task in tasks:
            if task.id == task_id:
                return tuple(holder for holder, _ in task.holders)
    return ()
