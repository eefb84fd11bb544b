"""What one member does for the queue API: its share of `GET /{queue}`, pause, resume and purge,
and re-running a dead letter. The node fans each request out to every member and merges the
answers (pending_queue.py)."""

from __future__ import annotations

import json

from .listing import LISTING_LIMIT_DEFAULT as LISTING_LIMIT_DEFAULT
from .listing import listing_query as listing_query
from .listing import member_page
from .local_tasks import LocalTasks, is_primary
from .queues import Queues
from .render import task_json
from .replica_messages import (
    QueueCommand,
    QueueCommandDone,
    QueueCommandKind,
    QueueStats,
    QueueStatsQuery,
    RerunResult,
)
from .task import TaskState


def queue_stats(
    tasks: LocalTasks, queues: Queues, query: QueueStatsQuery, now_ms: int
) -> QueueStats:
    counts = tasks.primary_counts(query.queue)
    queue = queues.known(query.queue)
    listed: list[str] = []
    complete_to = None
    if query.state is not None:
        wanted = TaskState(query.state)
        page, complete_to = member_page(tasks, query.queue, wanted, query.after, query.limit)
        settings = queues.config.for_queue(query.queue)
        listed = [json.dumps(task_json(t, settings)) for t in page]
    rate = None if queue is None or queue.rate_share is None else queue.rate_share
    return QueueStats(
        ref=query.ref,
        counts=tuple(sorted((state.value, n) for state, n in counts.items())),
        oldest_eta_ms=None if queue is None else queue.oldest_eta_ms(),
        attempts_last_minute=0 if queue is None else queue.rate.per_minute(now_ms),
        paused=False if queue is None else queue.paused,
        rate_millis_per_s=None if rate is None else round(rate * 1000),
        tasks=tuple(listed),
        complete_to=complete_to,
    )


def queue_command(
    tasks: LocalTasks, queues: Queues, command: QueueCommand, now_ms: int
) -> QueueCommandDone:
    queue = queues.get(command.queue, now_ms)
    affected = 0
    match command.command:
        case QueueCommandKind.PAUSE:
            queue.paused = True
            tasks.pause_changed(command.queue, True)
        case QueueCommandKind.RESUME:
            queue.paused = False
            tasks.pause_changed(command.queue, False)
        case QueueCommandKind.PURGE:
            for task in list(tasks.store.tasks(command.queue)):
                tasks.drop(task)
                affected += 1
            queue.ready.clear()
    return QueueCommandDone(ref=command.ref, affected=affected)


def rerun_copy(
    tasks: LocalTasks, queues: Queues, ref: int, queue: str, task_id: str, due_ms: int
) -> RerunResult:
    """A failed copy starts over: scheduled at `due_ms` with a fresh retry budget, so its retry
    count starts from 0 again (its execution count goes on)."""
    task = tasks.get(queue, task_id)
    if task is None:
        return RerunResult(ref=ref, state=None)
    before = task.state
    if before is TaskState.FAILED:
        task.attempts = 0
        task.first_attempt_ms = None
        task.finished_ms = None
        tasks.reschedule(task, due_ms, TaskState.SCHEDULED)
        if is_primary(task):
            queues.get(queue, due_ms).note_waiting(task)
    return RerunResult(ref=ref, state=before.value)
