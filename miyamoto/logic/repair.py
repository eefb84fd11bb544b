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
from .messages import MEMBERS_MAX, MemberList
from .replica_messages import Holders, HoldersChanged, StoreCopy, TaskCopy
from .task import Task, TaskState

LEFT_INCARNATIONS_MAX = MEMBERS_MAX
"""Incarnations remembered of ids no longer members (so that one that comes back as a new
process is known for one); past it the oldest are forgotten (a bound, not a leak)."""


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
        self._by_holders: dict[Holders, set[Task]] = {}
        """Every copy held here that names holders, by its holder list (the lists are few,
        each shared by many tasks): a member change visits the lists it touches, and only
        their tasks, never every task."""
        self._incarnations: dict[str, int] = {}
        """The incarnation of each member in the last member list seen."""
        self._left: dict[str, int] = {}
        """The last incarnation seen of ids that left the member list, oldest first."""

    def on_timer(self, now_ms: int, actions: list[Action]) -> None:
        if self.retry_at_ms is not None and self.retry_at_ms <= self.core.mono_ms:
            self.repair(now_ms, actions)

    def restarted(self, member_list: MemberList) -> set[str]:
        """Members listed as another process than when this node last saw them listed: each
        restarted without its disk, and holds none of the copies it held (a restart from the
        disk keeps the incarnation, and its copies). Remembers the list for next time."""
        seen = {m.id: m.incarnation for m in member_list.members}
        restarted = {
            node
            for node, incarnation in seen.items()
            if node != self.core.me
            and self._incarnations.get(node, self._left.get(node, incarnation)) != incarnation
        }
        for node, incarnation in self._incarnations.items():
            if node not in seen:
                self._left.pop(node, None)
                self._left[node] = incarnation
        for node in seen:
            self._left.pop(node, None)
        while len(self._left) > LEFT_INCARNATIONS_MAX:
            del self._left[next(iter(self._left))]
        self._incarnations = seen
        return restarted

    def forget_holders(self, restarted: set[str]) -> None:
        """The `restarted` members hold no copy any more: no holder list here names them, so
        that the repair that follows counts only the copies that live, and makes the others
        again (on these members too, as new copies)."""
        if not restarted:
            return
        core = self.core
        for task in self.tasks_naming(restarted):
            holders = tuple((n, k) for n, k in task.holders if n not in restarted)
            core.tasks.set_holders(task, core.intern(holders), task.copy_index)

    def verify_copies(self, task: Task, now_ms: int, actions: list[Action]) -> None:
        """The enqueue that placed the task ended without every holder's acknowledgement
        (`Unconfirmed`): a holder named may never have stored its copy. Our copy goes to the
        other holders again until each acknowledges it (one that has it already says so), so
        that a copy lost at enqueue is made again now, not when the task comes due."""
        core = self.core
        members = set(core.members)
        others = {n for n in core.others(task) if n in members}
        if task.state.is_final or core.me not in members or not others:
            return
        self.unconfirmed_copies.setdefault((task.queue, task.id), set()).update(others)
        for node in sorted(others):
            core.tell(node, StoreCopy(ref=0, copy=self.copy_of(task, now_ms)), actions)
        if self.retry_at_ms is None:
            self.retry_at_ms = core.mono_ms + core.config.repair_retry_ms

    def placed(self, task: Task, delta: int) -> None:
        """`LocalTasks.on_placed`: the copy took (+1) or left (-1) its holder list."""
        if not task.holders:
            return
        if delta > 0:
            self._by_holders.setdefault(task.holders, set()).add(task)
            return
        tasks = self._by_holders[task.holders]
        tasks.remove(task)
        if not tasks:
            del self._by_holders[task.holders]

    def tasks_naming(self, nodes: set[str]) -> list[Task]:
        """The pending tasks held here whose holder lists name any of `nodes`, in (queue, id)
        order."""
        found = [
            task
            for holders, tasks in self._by_holders.items()
            if any(n in nodes for n, _ in holders)
            for task in tasks
            if not task.state.is_final
        ]
        return sorted(found, key=_key)

    def replicated(self) -> list[Task]:
        """The copies held here whose task has other holders (any state, any order)."""
        return [
            task for holders, tasks in self._by_holders.items() if len(holders) > 1
            for task in tasks
        ]  # fmt: skip

    def _affected(self, members: set[str], wanted: int) -> list[Task]:
        """The pending tasks a repair may change anything for, in (queue, id) order: those
        whose holder list names a non-member or fewer live holders than wanted, those with
        copies still unacknowledged, and those indexed as under-replicated. (For any other
        task every holder is a live member and there are enough: nothing to do.)"""
        found = {
            task
            for holders, tasks in self._by_holders.items()
            if any(n not in members for n, _ in holders) or len(holders) < wanted
            for task in tasks
        }
        for key in (*self.unconfirmed_copies, *self.under_replicated):
            task = self.core.tasks.get(*key)
            if task is not None:
                found.add(task)
        return sorted((t for t in found if not t.state.is_final), key=_key)

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
        """Every pending task whose lowest live holder is this node gets back to R copies
        (visiting, through the index, only the tasks short of copies or naming non-members)."""
        core = self.core
        self.retry_at_ms = None
        members = set(core.members)
        wanted = min(core.config.replicas, len(members))
        affected = self._affected(members, wanted)
        self.under_replicated = set()  # rebuilt from the affected tasks (it is among them)
        for task in affected:
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
            self._send_unconfirmed(task, members, now_ms, actions)  # (sent by `verify_copies`)
            return
        if len(live) < wanted:
            self._add_copies(task, live, wanted, now_ms, actions)
        else:
            self._send_unconfirmed(task, members, now_ms, actions)
        self._index(task, members, wanted)

    def _send_unconfirmed(
        self, task: Task, members: set[str], now_ms: int, actions: list[Action]
    ) -> None:
        """Sends again the copies of `task` not acknowledged yet, to the holders that are
        members. A holder that is no member now keeps its entry while the task's holders name
        it: if it comes back (cut off for longer than the member timeout), it still has no
        copy."""
        key = (task.queue, task.id)
        unconfirmed = self.unconfirmed_copies.get(key)
        if unconfirmed is None:
            return
        named = {n for n, _ in task.holders}
        unconfirmed &= named
        if not unconfirmed:
            del self.unconfirmed_copies[key]
        for node in sorted(unconfirmed & members):
            self.core.tell(node, StoreCopy(ref=0, copy=self.copy_of(task, now_ms)), actions)

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
            self.unconfirmed_copies.setdefault((task.queue, task.id), set()).update(
                n for n, _ in added
            )
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


def _key(task: Task) -> tuple[str, str]:
    return (task.queue, task.id)
