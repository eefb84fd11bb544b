"""The copies this node holds: where they are kept, when they fire, and their state counts.

This is bookkeeping only. What a state change means for other nodes (claims, finished
notices) is decided by the node.
"""

from __future__ import annotations

from .schedule import TimerHeap
from .store import TaskStore
from .task import Task, TaskState

WAITING = (TaskState.SCHEDULED, TaskState.RETRYING)


class LocalTasks:
    def __init__(self, *, retention_ms: int) -> None:
        self.store = TaskStore(retention_ms=retention_ms)
        self.timers = TimerHeap()
        self.in_flight: dict[int, Task] = {}
        """delivery id -> the task being delivered."""
        self._next_delivery_id = 1
        self._counts: dict[str, dict[TaskState, int]] = {}

    def __len__(self) -> int:
        return len(self.store)

    def get(self, queue: str, task_id: str) -> Task | None:
        return self.store.get(queue, task_id)

    def add(self, task: Task) -> None:
        self.store.add(task)
        self._count(task, +1)
        if task.state in WAITING:
            self.timers.push(task)

    def set_state(self, task: Task, state: TaskState) -> None:
        self._count(task, -1)
        task.state = state
        self._count(task, +1)

    def reschedule(self, task: Task, due_ms: int, state: TaskState) -> None:
        assert state in WAITING, state
        task.due_ms = due_ms
        self.set_state(task, state)
        self.timers.push(task)

    def finish(self, task: Task, state: TaskState, now_ms: int) -> None:
        """Moves `task` to a final state. Succeeded and cancelled ones expire after retention;
        failed ones (dead letters) are kept until deleted or re-run."""
        assert state.is_final and not task.state.is_final, (task.state, state)
        self.set_state(task, state)
        if state is TaskState.FAILED:
            task.finished_ms = now_ms
        else:
            self.store.finished(task, now_ms)

    def discard(self, task: Task) -> None:
        """Forgets `task` at once (a stale copy that lives on elsewhere)."""
        assert task.state in WAITING, task.state
        self._count(task, -1)
        self.store.remove(task)
        task.state = TaskState.CANCELLED  # its timer entry is stale from now on

    def start(self, task: Task, now_ms: int) -> int:
        """Marks `task` as being delivered; returns the new delivery id."""
        delivery_id = self._next_delivery_id
        self._next_delivery_id += 1
        self.set_state(task, TaskState.DELIVERING)
        if task.first_attempt_ms is None:
            task.first_attempt_ms = now_ms
        task.last_attempt_ms = now_ms
        self.in_flight[delivery_id] = task
        return delivery_id

    def expire(self, now_ms: int) -> None:
        for task in self.store.expire(now_ms):
            self._count(task, -1)

    def counts(self, queue: str) -> dict[TaskState, int]:
        return dict(self._counts.get(queue, {}))

    def _count(self, task: Task, delta: int) -> None:
        counts = self._counts.setdefault(task.queue, {})
        count = counts.get(task.state, 0) + delta
        assert count >= 0, (task.queue, task.state)
        if count:
            counts[task.state] = count
        else:
            del counts[task.state]
            if not counts:  # forget queues that hold nothing, or names would pile up forever
                del self._counts[task.queue]
