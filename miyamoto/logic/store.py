"""Where a node keeps its tasks: by queue and id, with finished tasks expiring after a window.

Finished tasks (succeeded or cancelled) are kept for `retention_ms` so that `GET` can show their
outcome and an enqueue that repeats their client id is recognised as a duplicate; their body is
dropped at once to save memory. Failed tasks (dead letters) are kept until deleted or re-run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from .task import Task, TaskState


class TaskStore:
    def __init__(self, *, retention_ms: int) -> None:
        assert retention_ms >= 0, retention_ms
        self.retention_ms = retention_ms
        self._queues: dict[str, dict[str, Task]] = {}
        self._count = 0
        # Finished tasks in the order they finished; retention is one constant, so this is also
        # the order they expire in.
        self._finished: deque[Task] = deque()

    def __len__(self) -> int:
        return self._count

    def get(self, queue: str, task_id: str) -> Task | None:
        tasks = self._queues.get(queue)
        return None if tasks is None else tasks.get(task_id)

    def add(self, task: Task) -> None:
        tasks = self._queues.setdefault(task.queue, {})
        assert task.id not in tasks, task.id
        tasks[task.id] = task
        self._count += 1

    def remove(self, task: Task) -> None:
        tasks = self._queues[task.queue]
        del tasks[task.id]
        if not tasks:
            del self._queues[task.queue]
        self._count -= 1

    def tasks(self, queue: str) -> Iterator[Task]:
        return iter(self._queues.get(queue, {}).values())

    def queue_names(self) -> Iterable[str]:
        """The queues with a copy here."""
        return self._queues.keys()

    def by_queue(self) -> Iterator[Iterable[Task]]:
        """Each queue's tasks (for scans that visit every task)."""
        return (tasks.values() for tasks in self._queues.values())

    def finished(self, task: Task, now_ms: int) -> None:
        """Record that `task` reached SUCCEEDED or CANCELLED: it expires after the window."""
        assert task.state in (TaskState.SUCCEEDED, TaskState.CANCELLED), task.state
        task.finished_ms = now_ms
        task.body = b""
        task.headers = ()
        self._finished.append(task)

    def restore_finished(self, tasks: Iterable[Task]) -> None:
        """Finished tasks read back from disk, oldest first: they expire as they would have."""
        for task in tasks:
            assert task.finished_ms is not None and task.state.is_final, task.state
            self._finished.append(task)

    def next_expiry_ms(self) -> int | None:
        while self._finished:
            task = self._finished[0]
            if task.finished_ms is not None and self.get(task.queue, task.id) is task:
                return task.finished_ms + self.retention_ms
            self._finished.popleft()  # deleted or re-run since it finished
        return None

    def expire(self, now_ms: int) -> list[Task]:
        """Forget finished tasks whose window has passed; returns them."""
        expired: list[Task] = []
        while (expiry_ms := self.next_expiry_ms()) is not None and expiry_ms <= now_ms:
            task = self._finished.popleft()
            self.remove(task)
            expired.append(task)
        return expired
