"""Repair: keep R copies of every pending task while members come and go.

When the member list changes, the lowest live holder of each pending task adds copies on the
members the task's key prefers; copies a repair sent and nobody acknowledged yet are sent again
every `repair_retry_ms` until their holders acknowledge them.

A task placed while a member was unreachable (skipped, so it has fewer copies than wanted) is
indexed as under-replicated by its lowest live holder, which adds its missing copies as soon as
the leader reports a member reachable again: only the indexed tasks are visited.
"""

from __future__ import annotations

from .actions import Action
from .core import NodeCore
from .replica_messages import HoldersChanged, StoreCopy, TaskCopy
from .task import Task, TaskState


class Repair:
    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.retry_at_ms: int | None = None
        """When unacknowledged copies are sent again (None: none are awaited)."""
        self.unconfirmed_copies: dict[tuple[str, str], set[str]] = {}
        """Copies sent by a repair and not yet acknowledged, by (queue, task id)."""
        self.under_replicated: set[tuple[str, str]] = set()
        """Pending tasks held here, this node their lowest live holder, with fewer live copies
        than wanted (min(R, members))."""
        self._unreachable_seen: tuple[str, ...] = ()

    def on_timer(self, now_ms: int, actions: list[Action]) -> None:
        if self.retry_at_ms is not None and self.retry_at_ms <= self.core.mono_ms:
            self.repair(now_ms, actions)

    def forget(self, queue: str, task_id: str) -> None:
        """The copy here finished or was dropped: nothing is left to repair."""
        self.unconfirmed_copies.pop((queue, task_id), None)
        self.under_replicated.discard((queue, task_id))

    def note_copy(self, task: Task) -> None:
        """A copy was stored here: index it if it is short of copies and ours to repair."""
        members = set(self.core.members)
        self._index(task, members, min(self.core.config.replicas, len(members)))

    def _index(self, task: Task, members: set[str], wanted: int) -> None:
        key = (task.queue, task.id)
        live = [(n, k) for n, k in task.holders if n in members]
        if live and len(live) < wanted and min(live, key=lambda h: h[1])[0] == self.core.me:
            self.under_replicated.add(key)
        else:
            self.under_replicated.discard(key)

    def heal(self, now_ms: int, actions: list[Action]) -> None:
        """After every step: when the members the leader reports unreachable change, the
        under-replicated tasks get the copies they miss (on the members now reachable)."""
        if not self.under_replicated:
            return  # (most steps: and asking the membership costs a heartbeat's making)
        unreachable = self.core.membership.unreachable()
        if unreachable == self._unreachable_seen:
            return
        self._unreachable_seen = unreachable
        core = self.core
        members = set(core.members)
        wanted = min(core.config.replicas, len(members))
        for key in sorted(self.under_replicated):
            task = core.tasks.get(*key)
            assert task is not None and not task.state.is_final, key  # (forgotten at its end)
            self._repair_task(task, members, wanted, now_ms, actions)
        if self.unconfirmed_copies and self.retry_at_ms is None:
            self.retry_at_ms = core.mono_ms + core.config.repair_retry_ms

    def check_invariants(self) -> None:
        """Unacknowledged copies are of tasks still pending here, and a retry is armed for
        them."""
        tasks = self.core.tasks
        for (queue, task_id), nodes in self.unconfirmed_copies.items():
            task = tasks.get(queue, task_id)
            assert nodes and task is not None and not task.state.is_final, (queue, task_id)
        assert not self.unconfirmed_copies or self.retry_at_ms is not None
        for queue, task_id in self.under_replicated:
            task = tasks.get(queue, task_id)
            assert task is not None and not task.state.is_final, (queue, task_id)

    def acknowledged(self, sender: str, queue: str, task_id: str) -> None:
        """`sender` acknowledged a copy of the task (stored, or had it already)."""
        unconfirmed = self.unconfirmed_copies.get((queue, task_id))
        if unconfirmed is not None:
            unconfirmed.discard(sender)
            if not unconfirmed:
                del self.unconfirmed_copies[(queue, task_id)]

    def repair(self, now_ms: int, actions: list[Action]) -> None:
        """Every pending task whose lowest live holder is this node gets back to R copies."""
        core = self.core
        self.retry_at_ms = None
        self.under_replicated = set()  # rebuilt by the scan
        members = set(core.members)
        wanted = min(core.config.replicas, len(members))
        for tasks in list(core.tasks.store.by_queue()):
            for task in list(tasks):
                if task.state.is_final or not task.holders:
                    continue
                self._repair_task(task, members, wanted, now_ms, actions)
        if self.unconfirmed_copies:
            self.retry_at_ms = core.mono_ms + core.config.repair_retry_ms

    def _repair_task(
        self, task: Task, members: set[str], wanted: int, now_ms: int, actions: list[Action]
    ) -> None:
        """If this node is the task's lowest live holder: adds the copies it misses, or sends
        again those not acknowledged; indexes it while it is still short of copies."""
        core = self.core
        key = (task.queue, task.id)
        live = [(n, k) for n, k in task.holders if n in members]
        if not live or min(live, key=lambda h: h[1])[0] != core.me:
            self.under_replicated.discard(key)
            return
        if len(live) < wanted:
            self._add_copies(task, live, wanted, now_ms, actions)
        elif key in self.unconfirmed_copies:
            for node in sorted(self.unconfirmed_copies[key]):
                core.tell(node, StoreCopy(ref=0, copy=self.copy_of(task, now_ms)), actions)
        self._index(task, members, wanted)

    def remake_copies(
        self, task: Task, without_copy: set[str], now_ms: int, actions: list[Action]
    ) -> None:
        """Makes the task's other copies again: on the members it prefers, after ours in line.
        A holder that answered it has no copy is no holder."""
        core = self.core
        members = set(core.members)
        if core.me not in members:
            return  # (a node that is no member makes no copies: the members repair)
        live = [(n, k) for n, k in task.holders if n in members and n not in without_copy]
        wanted = min(core.config.replicas, len(members))
        if len(live) < wanted:
            self._add_copies(task, live, wanted, now_ms, actions)
            self._index(task, members, wanted)
        if self.unconfirmed_copies and self.retry_at_ms is None:
            self.retry_at_ms = core.mono_ms + core.config.repair_retry_ms

    def _add_copies(
        self,
        task: Task,
        live: list[tuple[str, int]],
        wanted: int,
        now_ms: int,
        actions: list[Action],
    ) -> None:
        core = self.core
        live_nodes = {n for n, _ in live}
        candidates = [m for m in core.placement(f"{task.queue}/{task.id}") if m not in live_nodes]
        next_index = max(k for _, k in task.holders) + 1
        added = [(node, next_index + i) for i, node in enumerate(candidates[: wanted - len(live)])]
        core.tasks.set_holders(task, core.intern(tuple(live + added)), task.copy_index)
        for node, _ in live:
            if node != core.me:
                message = HoldersChanged(queue=task.queue, task_id=task.id, holders=task.holders)
                core.tell(node, message, actions)
        if added:
            self.unconfirmed_copies[(task.queue, task.id)] = {n for n, _ in added}
        for node, _ in added:
            core.tell(node, StoreCopy(ref=0, copy=self.copy_of(task, now_ms)), actions)

    def copy_of(self, task: Task, now_ms: int) -> TaskCopy:
        """The copy of `task` to store on a new holder: a copy of a task being delivered or
        retried arrives claimed, so that it does not fire beside ours."""
        lease_ms = self.core.config.claim_lease_ms if task.state is TaskState.DELIVERING else 0
        if task.state is TaskState.RETRYING:
            lease_ms = max(0, task.due_ms - now_ms) + self.core.config.claim_lease_ms
        return TaskCopy(
            queue=task.queue,
            id=task.id,
            method=task.method,
            url=task.url,
            headers=task.headers,
            body=task.body,
            eta_ms=task.eta_ms,
            created_ms=task.created_ms,
            holders=task.holders,
            attempts=task.attempts,
            executions=task.executions,
            retry=task.retry,
            lease_ms=lease_ms,
        )
