"""The copies other nodes (and this one) ask this node to keep, and what their holders tell it
about them: store, claim, finished, holders changed, cancel, query and re-run.

Each handler changes this node's copy only and returns (or sends) the answer; what the
answers mean for a client's request is the `api`'s and the `coordinator`'s business.
"""

from __future__ import annotations

import json

from .actions import Action
from .core import NodeCore
from .local_tasks import WAITING, is_primary, payload_bytes
from .queue_ops import rerun_copy
from .render import task_json
from .repair import Repair
from .replica_messages import (
    CancelResult,
    Claim,
    Finished,
    Holders,
    QueryResult,
    RerunResult,
    TaskCopy,
)
from .sync_records import SyncRecords
from .task import Task, TaskState


class ReplicaStore:
    def __init__(self, core: NodeCore, syncs: SyncRecords, repair: Repair) -> None:
        self.core = core
        self.syncs = syncs
        self.repair = repair

    def store_copy(self, copy: TaskCopy, now_ms: int) -> tuple[bool, str, Holders]:
        """Keeps `copy` unless this node already has (or remembers) the task.

        Returns whether it stored it, the state of its copy and, when it had one already, that
        copy's holders."""
        core = self.core
        existing = core.tasks.get(copy.queue, copy.id)
        if existing is not None:
            return False, existing.state.value, existing.holders
        limits = core.config.limits
        size = payload_bytes(copy.url, copy.headers, copy.body)
        if not core.tasks.has_room(size, limits.tasks_max, limits.task_bytes_max):
            return False, "full", ()
        me = core.me
        copy_index = next((k for node, k in copy.holders if node == me), 0)
        task = Task(
            id=copy.id,
            queue=copy.queue,
            method=copy.method,
            url=copy.url,
            headers=copy.headers,
            body=copy.body,
            eta_ms=copy.eta_ms,
            created_ms=copy.created_ms,
            retry=copy.retry,
            holders=core.intern(copy.holders),
            copy_index=copy_index,
        )
        task.attempts = copy.attempts
        task.executions = copy.executions
        task.due_ms = core.copy_due_ms(copy.eta_ms, copy.created_ms, copy_index)
        if copy.lease_ms:
            task.due_ms = max(task.due_ms, now_ms + copy.lease_ms)
        core.tasks.add(task)
        self.repair.note_copy(task)
        if is_primary(task):
            core.queues.get(task.queue, now_ms).note_waiting(task)
        soon = task.due_ms <= now_ms + core.config.placement_timeout_ms
        if copy.client_id and soon and len(task.holders) > 1:
            # Due before the enqueue that stored it may settle, and this may be a repeat of an
            # enqueue whose task lives (or was delivered, or cancelled) on the other holders:
            # they tell the coordinator, and it tells us, only after we would have fired.
            self.syncs.ask_when_due(task.queue, task.id)
        return True, task.state.value, ()

    def claimed(self, claim: Claim, now_ms: int) -> None:
        """Another holder is delivering the task, or has it in line: ours waits."""
        task = self.core.tasks.get(claim.queue, claim.task_id)
        if task is None:
            return
        task.attempts = max(task.attempts, claim.attempts)
        task.executions = max(task.executions, claim.executions)
        self.core.tasks.changed(task)
        # Copies stay staggered by their index after the lease, so that if the claimant dies
        # they do not all fire at once.
        # Only an attempt in flight makes our copy refuse a cancel: a task that waits for its
        # retry (or its turn) is cancelled on every copy, the claimant's included.
        task.claimed_until_ms = now_ms + claim.lease_ms if claim.delivering else None
        hold_ms = now_ms + claim.lease_ms + task.copy_index * self.core.config.replica_delay_ms
        if task.state in WAITING and task.due_ms < hold_ms:
            self.core.tasks.reschedule(task, hold_ms, task.state)

    def finished_elsewhere(
        self, sender: str, message: Finished, now_ms: int, actions: list[Action]
    ) -> None:
        core = self.core
        task = core.tasks.get(message.queue, message.task_id)
        if task is None or task.state.is_final:
            return
        task.attempts = max(task.attempts, message.attempts)
        task.executions = max(task.executions, message.executions)
        task.last_status = message.last_status
        task.last_error = message.last_error
        task.last_response_excerpt = message.excerpt
        # If our own attempt is in flight, it keeps its slot (the request is still open at the
        # destination, and the queue's concurrency cap counts it) until its answer comes; the
        # answer then changes nothing.
        core.tasks.finish(task, TaskState(message.state), now_ms)
        # Holders the sender may not know of (added by a repair it missed) hear it from us.
        forward = [n for n in core.others(task) if n != sender]
        core.announce_finished(task, forward, actions)

    def holders_changed(self, queue: str, task_id: str, holders: Holders) -> None:
        task = self.core.tasks.get(queue, task_id)
        if task is not None:
            self.core.set_holders(task, holders)

    def cancel_copy(self, ref: int, queue: str, task_id: str, now_ms: int) -> CancelResult:
        tasks = self.core.tasks
        task = tasks.get(queue, task_id)
        if task is None:
            return CancelResult(ref=ref, state=None, holders=())
        if task.state is TaskState.FAILED:
            tasks.drop(task)  # deleting a dead letter
            return CancelResult(ref=ref, state="deleted", holders=task.holders)
        claimed = task.claimed_until_ms is not None and task.claimed_until_ms > now_ms
        if claimed and task.state in WAITING:
            # Another holder is delivering it (or has it next in line): cancelling only our
            # copy would leave the task half cancelled. Say so, and change nothing.
            return CancelResult(ref=ref, state=TaskState.DELIVERING.value, holders=task.holders)
        if task.state in WAITING:
            tasks.finish(task, TaskState.CANCELLED, now_ms)
        return CancelResult(ref=ref, state=task.state.value, holders=task.holders)

    def query_result(self, ref: int, queue: str, task_id: str) -> QueryResult:
        task = self.core.tasks.get(queue, task_id)
        if task is None:
            return QueryResult(ref=ref, task_json=None)
        settings = self.core.queues.config.for_queue(queue)
        return QueryResult(ref=ref, task_json=json.dumps(task_json(task, settings)))

    def rerun_copy(self, ref: int, queue: str, task_id: str, now_ms: int) -> RerunResult:
        core = self.core
        task = core.tasks.get(queue, task_id)
        index = 0 if task is None else task.copy_index
        due_ms = now_ms + index * core.config.replica_delay_ms
        return rerun_copy(core.tasks, core.queues, ref, queue, task_id, due_ms)
