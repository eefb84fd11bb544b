"""Copies that ask the members before they fire: which copies must ask, the questions in
flight, and carrying out what the answers decide (the rules of a question: `copy_sync`).

A replicated copy asks when it comes due past the first in line, when its holders may not know
it, and when this node was out of standing (it may have been removed and the task repaired
elsewhere); firing then could deliver the task twice. Questions are QueryTask messages with
negative refs, so their answers cannot be mistaken for a client's `GET`.
"""

from __future__ import annotations

import json
from typing import assert_never

from .actions import Action
from .copy_sync import Question, Verdict
from .core import NodeCore
from .holders import joined
from .local_tasks import WAITING
from .repair import Repair
from .replica_messages import Holders, HoldersChanged, QueryResult, QueryTask
from .ring import placement
from .task import Task, TaskState


class SyncRecords:
    def __init__(self, core: NodeCore, repair: Repair) -> None:
        self.core = core
        self.repair = repair
        self.out_of_standing = False
        """Set when this node found itself out of standing (cut off or paused past the member
        timeout): every replicated copy it holds is checked with the members once it is back."""
        self._unsynced: set[tuple[str, str]] = set()
        """Copies that may not fire before their sync settles."""
        self._held: dict[tuple[str, str], Task] = {}
        """Unsynced copies that came due: out of the timer heap until their sync settles."""
        self._asking: set[tuple[str, str]] = set()
        """Unsynced copies whose sync is in flight."""
        self._ask_first: set[tuple[str, str]] = set()
        """First copies (index 0) that must ask the members before they fire, as every later
        copy does: the task's other holders may not know them (an enqueue that ended without
        every holder's answer, a copy sent under an older member list)."""
        self._asked: set[tuple[str, str]] = set()
        """Copies whose members answered that they may fire: they do when next due."""
        self._syncs: dict[int, Question] = {}
        """Sync of a held copy with the other members, by (negative) QueryTask ref."""
        self._next_sync_ref = -1

    def deadlines_ms(self) -> list[int]:
        return [sync.deadline_ms for sync in self._syncs.values()]

    def on_timer(self, now_ms: int, actions: list[Action]) -> None:
        for ref, sync in list(self._syncs.items()):
            if sync.deadline_ms <= now_ms:
                self._settle_sync(ref, now_ms, actions)

    def note_standing(self, was_member: bool) -> None:
        """After every step: a node back in standing checks every replicated copy it holds."""
        core = self.core
        if core.standing:
            if self.out_of_standing:
                self.out_of_standing = False
                self._unsynced.update(
                    (t.queue, t.id)
                    for tasks in core.tasks.store.by_queue()
                    for t in tasks
                    if t.state in WAITING and len(t.holders) > 1
                )
        elif was_member:
            self.out_of_standing = True

    def ask_pending(self, now_ms: int, actions: list[Action]) -> None:
        """After every step: ask about the copies that wait for a sync and are not asked yet."""
        if len(self._asking) < len(self._unsynced) and self.core.standing:
            self._sync_unsynced(now_ms, actions)

    def must_hold(self, task: Task, *, due: bool) -> bool:
        """Whether a replicated copy must wait for a sync (its question to the members):
        - a copy that comes `due` and has never been attempted here, unless it is the first
          copy that the other holders know of: the task may have finished on a holder whose
          finished notice was lost, or live on holders that do not know this copy;
        - any copy while this node is out of standing, or was since its last sync: it may
          have been removed and the task repaired elsewhere.
        Firing then could deliver the task twice. A copy already in its queue's line (not
        `due`) asked when it came due."""
        if len(task.holders) <= 1:
            return False
        key = (task.queue, task.id)
        if due and task.state is TaskState.SCHEDULED and key not in self._unsynced:
            if key in self._asked:
                self._asked.discard(key)
            elif task.copy_index > 0 or key in self._ask_first or not self._where_preferred(task):
                self._ask_first.discard(key)
                self._unsynced.add(key)
        if self.core.standing and key not in self._unsynced:
            return False
        self._unsynced.add(key)
        self._held[key] = task
        return True

    def _where_preferred(self, task: Task) -> bool:
        """Whether the task's copies include every member its key prefers now. If not, they
        were placed under another member list (members joined since) or by a coordinator that
        skipped members it took for unreachable; an enqueue of the same id through another
        coordinator then places fresh copies on the preferred members, which do not know
        ours and would fire too."""
        core = self.core
        wanted = min(core.config.replicas, len(core.members))
        preferred = placement(f"{task.queue}/{task.id}", core.members)[:wanted]
        nodes = {node for node, _ in task.holders}
        return all(member in nodes for member in preferred)

    def ask_before_firing(self, queue: str, task_id: str) -> None:
        """The first copy of the task here (or the one still to arrive) asks before it fires."""
        core = self.core
        task = core.tasks.get(queue, task_id)
        if task is not None and (task.state is not TaskState.SCHEDULED or task.copy_index > 0):
            return  # attempted here already, or a later copy (those always ask)
        # No copy here (yet): its StoreCopy was lost or is late. A late one, or the fresh copy
        # a retry of the enqueue stores here, must ask too: another holder may have the task,
        # or have delivered it already.
        if len(self._ask_first) >= core.config.limits.tasks_max:
            # Entries of tasks that finished before they came due; rare, so swept rarely.
            self._ask_first = {
                key for key in self._ask_first
                if (t := core.tasks.get(*key)) is not None and t.state is TaskState.SCHEDULED
            }  # fmt: skip
        self._ask_first.add((queue, task_id))

    def _sync_unsynced(self, now_ms: int, actions: list[Action]) -> None:
        """In standing: ask the members about each unsynced copy before it may fire. Members
        the leader reports unreachable are not waited for (a dead holder is what a later copy
        asks about most often)."""
        core = self.core
        unreachable = core.membership.unreachable()
        others = [m for m in core.members if m != core.me and m not in unreachable]
        for queue, task_id in sorted(self._unsynced - self._asking):
            task = core.tasks.get(queue, task_id)
            if task is None or task.state not in WAITING:
                self._unsynced.discard((queue, task_id))
                self._held.pop((queue, task_id), None)
                continue
            ref = self._next_sync_ref
            self._next_sync_ref -= 1
            self._syncs[ref] = Question(
                task=task,
                deadline_ms=now_ms + core.config.peer_answer_timeout_ms,
                waiting=set(others),
            )
            self._asking.add((queue, task_id))
            for member in others:
                core.tell(member, QueryTask(ref=ref, queue=queue, task_id=task_id), actions)
            if not others:
                self._settle_sync(ref, now_ms, actions)

    def take_answer(
        self, sender: str, result: QueryResult, now_ms: int, actions: list[Action]
    ) -> None:
        """A member's answer to one of our questions."""
        sync = self._syncs.get(result.ref)
        if sync is None or sender not in sync.waiting:
            return
        view = None if result.task_json is None else json.loads(result.task_json)
        sync.take(sender, view, self.core.me)
        if sync.decided():
            self._settle_sync(result.ref, now_ms, actions)

    def _settle_sync(self, ref: int, now_ms: int, actions: list[Action]) -> None:
        core = self.core
        sync = self._syncs.pop(ref)
        task = sync.task
        key = (task.queue, task.id)
        self._asking.discard(key)
        if sync.must_ask_again():
            return  # it stays unsynced and is asked again
        self._unsynced.discard(key)
        due = self._held.pop(key, None) is not None
        if core.tasks.get(task.queue, task.id) is not task or task.state not in WAITING:
            return  # a finished notice or a cancel reached us meanwhile
        preferred = not sync.foreign_holders or self._where_preferred(task)
        verdict = sync.verdict(due=due, preferred=preferred)
        match verdict:
            case Verdict.FINISH:
                core.tasks.finish(task, TaskState(sync.finals[0]), now_ms)
            case Verdict.WAIT_TAKEN:
                turn_ms = task.copy_index * core.config.replica_delay_ms
                self._ask_again(task, now_ms + core.config.claim_lease_ms + turn_ms)
            case Verdict.WAIT_AHEAD:
                self._ask_again(task, now_ms + sync.ahead * core.config.replica_delay_ms)
            case Verdict.JOIN_FOREIGN:
                self._join(task, sync.foreign_holders, due, now_ms, actions)
            case Verdict.JOIN:
                self._join(task, sync.their_holders, due, now_ms, actions)
            case Verdict.FIRE | Verdict.FIRE_AND_REPAIR:
                self._asked.add(key)
                core.tasks.reschedule(task, max(task.due_ms, now_ms), task.state)
                if verdict is Verdict.FIRE_AND_REPAIR:
                    self.repair.remake_copies(task, sync.without_copy, now_ms, actions)
            case Verdict.KEEP:
                pass
            case _:
                assert_never(verdict)

    def _join(
        self, task: Task, others: Holders, due: bool, now_ms: int, actions: list[Action]
    ) -> None:
        """Adds our copy to the holder list `others`, after them, and tells them."""
        core = self.core
        holders = joined(others, core.me)
        core.set_holders(task, holders)
        for node, _ in holders:
            if node != core.me:
                message = HoldersChanged(queue=task.queue, task_id=task.id, holders=holders)
                core.tell(node, message, actions)
        if due:
            core.tasks.reschedule(task, max(task.due_ms, now_ms), task.state)

    def _ask_again(self, task: Task, at_ms: int) -> None:
        self._ask_first.add((task.queue, task.id))
        self.core.tasks.reschedule(task, max(task.due_ms, at_ms), task.state)
