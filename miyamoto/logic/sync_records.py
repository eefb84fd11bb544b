"""Copies that ask the members before they fire: which copies must ask, the questions in
flight, and carrying out what the answers decide (the rules of a question: `copy_sync`).

A replicated copy asks when it comes due past the first in line, when its holders may not know
it, and when this node was out of standing (it may have been removed and the task repaired
elsewhere); firing then could deliver the task twice. Questions are QueryTask messages with
negative refs, so their answers cannot be mistaken for a client's `GET`.

What this node remembers about one copy's sync is one `CopySync` record, kept only while
there is something to remember (most copies have none). Its flags:

    ask_when_due --(comes due)--> must_sync --(send question)--> question in flight
         ^                           |   ^                            |
         |                           |   +------(nobody answered)-----+
         +---(wait, then ask again)--+--(answers decide)--> cleared_to_fire --(fires)--> none
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass(slots=True, kw_only=True)
class CopySync:
    """What this node remembers about the sync of its copy of one task (or of the copy still to
    arrive: a StoreCopy lost or late)."""

    ask_when_due: bool = False
    """A first copy (index 0) that must ask the members before it fires, as every later copy
    does: the task's other holders may not know it (an enqueue that ended without every
    holder's answer, a copy sent under an older member list)."""
    must_sync: bool = False
    """It may not fire before a question to the members settles."""
    came_due: bool = False
    """It came due while it had to sync: out of the timer heap until the question settles."""
    question_ref: int | None = None
    """The (negative) ref of its question in flight, if one is."""
    cleared_to_fire: bool = False
    """Its members answered that it may fire: it does when next due, without asking."""

    def is_empty(self) -> bool:
        return not (self.ask_when_due or self.must_sync or self.cleared_to_fire)


class SyncRecords:
    def __init__(self, core: NodeCore, repair: Repair) -> None:
        self.core = core
        self.repair = repair
        self.out_of_standing = False
        """Set when this node found itself out of standing (cut off or paused past the member
        timeout): every replicated copy it holds is checked with the members once it is back."""
        self._records: dict[tuple[str, str], CopySync] = {}
        """The copies with something to remember, by (queue, task id)."""
        self._must_sync_count = 0
        self._ask_when_due_count = 0
        self._questions: dict[int, Question] = {}
        """Questions in flight, by (negative) QueryTask ref."""
        self._next_question_ref = -1

    def __len__(self) -> int:
        """Copies with a sync record (a bound: at most the copies held, plus first copies still
        to arrive, which are swept at `tasks_max`)."""
        return len(self._records)

    # -- the record table: every change of a flag goes through here, to keep the counts ---------

    def _record(self, key: tuple[str, str]) -> CopySync:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = CopySync()
        return record

    def _tidy(self, key: tuple[str, str], record: CopySync) -> None:
        if record.is_empty():
            del self._records[key]

    def _set_must_sync(self, key: tuple[str, str], record: CopySync) -> None:
        if not record.must_sync:
            record.must_sync = True
            self._must_sync_count += 1

    def _clear_must_sync(self, key: tuple[str, str], record: CopySync) -> None:
        if record.must_sync:
            record.must_sync = False
            record.came_due = False
            self._must_sync_count -= 1
        self._tidy(key, record)

    def _set_ask_when_due(self, key: tuple[str, str], value: bool) -> None:
        record = self._records.get(key) if not value else self._record(key)
        if record is None or record.ask_when_due == value:
            return
        record.ask_when_due = value
        self._ask_when_due_count += 1 if value else -1
        self._tidy(key, record)

    def check_invariants(self) -> None:
        """What must hold after every step (cheap: the table holds only copies that sync)."""
        must_sync = ask_when_due = asking = 0
        tasks = self.core.tasks
        for key, record in self._records.items():
            assert record.must_sync or record.ask_when_due or record.cleared_to_fire, key
            # Created with the copy (or for a first copy still to arrive), dropped with it.
            task = tasks.get(*key)
            if task is None:
                assert not (record.must_sync or record.cleared_to_fire), key
            else:
                assert not task.state.is_final, (key, task.state)
            if record.must_sync:
                must_sync += 1
                if record.question_ref is not None:
                    asking += 1
                    question = self._questions[record.question_ref].task
                    assert (question.queue, question.id) == key, key
            else:
                assert not record.came_due and record.question_ref is None, key
            ask_when_due += record.ask_when_due
        assert must_sync == self._must_sync_count, (must_sync, self._must_sync_count)
        assert ask_when_due == self._ask_when_due_count
        assert asking == len(self._questions), (asking, len(self._questions))

    # -- around every step -----------------------------------------------------------------------

    def deadlines_ms(self) -> list[int]:
        return [question.deadline_ms for question in self._questions.values()]

    def on_timer(self, now_ms: int, actions: list[Action]) -> None:
        for ref, question in list(self._questions.items()):
            if question.deadline_ms <= self.core.mono_ms and ref in self._questions:
                self._settle(ref, now_ms, actions)

    def forget(self, queue: str, task_id: str) -> None:
        """The copy finished or was dropped: its record goes, and its question with it (the
        answers would change nothing now)."""
        record = self._records.pop((queue, task_id), None)
        if record is None:
            return
        self._must_sync_count -= record.must_sync
        self._ask_when_due_count -= record.ask_when_due
        if record.question_ref is not None:
            del self._questions[record.question_ref]

    def note_standing(self, was_member: bool) -> None:
        """After every step: a node back in standing checks every replicated copy it holds
        (found through the repair's index, not by a walk over every task)."""
        core = self.core
        if core.standing:
            if self.out_of_standing:
                self.out_of_standing = False
                for t in self.repair.replicated():
                    if t.state in WAITING:
                        key = (t.queue, t.id)
                        self._set_must_sync(key, self._record(key))
        elif was_member:
            self.out_of_standing = True

    def ask_pending(self, now_ms: int, actions: list[Action]) -> None:
        """After every step: ask about the copies that must sync and are not asked yet."""
        if len(self._questions) < self._must_sync_count and self.core.standing:
            self._send_questions(now_ms, actions)

    # -- when a copy may fire ----------------------------------------------------------------------

    def must_wait_for_question(self, task: Task, *, due: bool) -> bool:
        """Whether a replicated copy must wait for its question to the members to settle:
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
        record = self._records.get(key)
        must_sync = record is not None and record.must_sync
        if due and record is not None and record.cleared_to_fire and not must_sync:
            # Cleared once: it fires now, whatever its state (a retrying copy kept the flag
            # until it ended).
            record.cleared_to_fire = False
            self._tidy(key, record)
        elif (
            due
            and task.state is TaskState.SCHEDULED
            and not must_sync
            and (
                task.copy_index > 0
                or (record is not None and record.ask_when_due)
                or not self._where_preferred(task)
            )
        ):
            self._set_ask_when_due(key, False)
            record = self._record(key)
            self._set_must_sync(key, record)
            must_sync = True
        if self.core.standing and not must_sync:
            return False
        record = self._record(key)
        self._set_must_sync(key, record)
        record.came_due = True
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

    def ask_when_due(self, queue: str, task_id: str) -> None:
        """The first copy of the task here (or the one still to arrive) asks before it fires."""
        core = self.core
        task = core.tasks.get(queue, task_id)
        if task is not None and (task.state is not TaskState.SCHEDULED or task.copy_index > 0):
            return  # attempted here already, or a later copy (those always ask)
        # No copy here (yet): its StoreCopy was lost or is late. A late one, or the fresh copy
        # a retry of the enqueue stores here, must ask too: another holder may have the task,
        # or have delivered it already.
        if self._ask_when_due_count >= core.config.limits.tasks_max:
            # Entries of tasks that finished before they came due; rare, so swept rarely.
            for key, record in list(self._records.items()):
                t = core.tasks.get(*key)
                if record.ask_when_due and (t is None or t.state is not TaskState.SCHEDULED):
                    self._set_ask_when_due(key, False)
        self._set_ask_when_due((queue, task_id), True)

    # -- questions ---------------------------------------------------------------------------------

    def _send_questions(self, now_ms: int, actions: list[Action]) -> None:
        """In standing: ask the members about each copy that must sync before it may fire.
        Members the leader reports unreachable are not waited for (a dead holder is what a
        later copy asks about most often)."""
        core = self.core
        unreachable = core.membership.unreachable()
        others = [m for m in core.members if m != core.me and m not in unreachable]
        unasked = [k for k, r in self._records.items() if r.must_sync and r.question_ref is None]
        for key in sorted(unasked):
            queue, task_id = key
            record = self._records[key]
            task = core.tasks.get(queue, task_id)
            if task is None or task.state not in WAITING:
                self._clear_must_sync(key, record)
                continue
            ref = self._next_question_ref
            self._next_question_ref -= 1
            self._questions[ref] = Question(
                task=task,
                deadline_ms=core.mono_ms + core.config.peer_answer_timeout_ms,
                waiting=set(others),
            )
            record.question_ref = ref
            for member in others:
                core.tell(member, QueryTask(ref=ref, queue=queue, task_id=task_id), actions)
            if not others:
                self._settle(ref, now_ms, actions)

    def take_answer(
        self, sender: str, result: QueryResult, now_ms: int, actions: list[Action]
    ) -> None:
        """A member's answer to one of our questions."""
        question = self._questions.get(result.ref)
        if question is None or sender not in question.waiting:
            return
        view = None if result.task_json is None else json.loads(result.task_json)
        question.take(sender, view, self.core.me)
        if question.decided():
            self._settle(result.ref, now_ms, actions)

    def _settle(self, ref: int, now_ms: int, actions: list[Action]) -> None:
        core = self.core
        question = self._questions.pop(ref)
        task = question.task
        key = (task.queue, task.id)
        record = self._records[key]
        record.question_ref = None
        if question.must_ask_again():
            return  # it still must sync, and is asked again
        due = record.came_due
        self._clear_must_sync(key, record)
        if core.tasks.get(task.queue, task.id) is not task or task.state not in WAITING:
            return  # a finished notice or a cancel reached us meanwhile
        preferred = not question.foreign_holders or self._where_preferred(task)
        verdict = question.verdict(due=due, preferred=preferred)
        match verdict:
            case Verdict.FINISH:
                core.tasks.finish(task, TaskState(question.finals[0]), now_ms)
            case Verdict.WAIT_TAKEN:
                turn_ms = task.copy_index * core.config.replica_delay_ms
                self._wait_and_ask_again(task, now_ms + core.config.claim_lease_ms + turn_ms)
            case Verdict.WAIT_AHEAD:
                self._wait_and_ask_again(
                    task, now_ms + question.ahead * core.config.replica_delay_ms
                )
            case Verdict.JOIN_FOREIGN:
                self._join(task, question.foreign_holders, due, now_ms, actions)
            case Verdict.JOIN:
                self._join(task, question.their_holders, due, now_ms, actions)
            case Verdict.FIRE | Verdict.FIRE_AND_REPAIR:
                self._record(key).cleared_to_fire = True
                core.tasks.reschedule(task, max(task.due_ms, now_ms), task.state)
                if verdict is Verdict.FIRE_AND_REPAIR:
                    self.repair.remake_copies(task, question.without_copy, now_ms, actions)
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

    def _wait_and_ask_again(self, task: Task, at_ms: int) -> None:
        self._set_ask_when_due((task.queue, task.id), True)
        self.core.tasks.reschedule(task, max(task.due_ms, at_ms), task.state)
