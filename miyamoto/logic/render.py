"""Tasks as the JSON a user reads from `GET /{queue}/{id}`."""

from __future__ import annotations

import dataclasses
from typing import Any

from .membership import ClusterView
from .queue_config import QueueConfig, effective_deadline_ms, effective_retry
from .task import Task, TaskState


def seconds(ms: int | None) -> float | None:
    """Unix ms as Unix seconds for JSON (floats print their shortest exact form)."""
    return None if ms is None else ms / 1000


def task_json(task: Task, queue: QueueConfig) -> dict[str, Any]:
    """`queue` is the task's queue's settings: the reply shows the retry policy in force, the
    task's own settings as narrowed by its queue, so a user sees what will really happen."""
    waiting = task.state in (TaskState.SCHEDULED, TaskState.RETRYING)
    excerpt = task.last_response_excerpt
    return {
        "id": task.id,
        "queue": task.queue,
        "state": task.state.value,
        "method": task.method,
        "url": task.url,
        "eta": seconds(task.eta_ms),
        "next_attempt": seconds(task.due_ms) if waiting else None,
        "created": seconds(task.created_ms),
        "attempts": task.attempts,
        "executions": task.executions,
        "first_attempt": seconds(task.first_attempt_ms),
        "last_attempt": seconds(task.last_attempt_ms),
        "last_status": task.last_status,
        "last_error": task.last_error,
        "last_response": None if excerpt is None else excerpt.decode("utf-8", "replace"),
        "finished": seconds(task.finished_ms),
        "holders": [{"node": node, "copy": index} for node, index in task.holders],
        "retry": retry_json(task, queue),
    }


def retry_json(task: Task, queue: QueueConfig) -> dict[str, Any]:
    """The effective retry policy, in the units the enqueue API takes (times in seconds)."""
    policy = effective_retry(queue, task.retry)
    return {
        "retry_limit": policy.retry_limit,
        "age_limit": policy.age_limit_ms / 1000,
        "min_backoff": policy.min_backoff_ms / 1000,
        "max_backoff": policy.max_backoff_ms / 1000,
        "max_doublings": policy.max_doublings,
        "deadline": effective_deadline_ms(queue, task.retry) / 1000,
    }


def cluster_json(view: ClusterView, copies_held: int, under_replicated: int) -> dict[str, Any]:
    """`GET /_cluster`: this node's view of the cluster. `under_replicated`: pending tasks this
    node repairs that have fewer copies than wanted (waiting for a member to take them)."""
    return {
        "node": view.self_id,
        "role": view.role.value,
        "leader": view.leader,
        "term": view.term,
        "epoch": view.epoch,
        "members": [{"node": m.id, "state": m.state.value} for m in view.members],
        "in_majority": view.in_majority,
        "copies_held": copies_held,
        "under_replicated": under_replicated,
        "stats": dataclasses.asdict(view.stats),
    }
