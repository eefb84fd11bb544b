"""The copies this node holds: where they are kept, when they fire, and their state counts.

This is bookkeeping only. What a state change means for other nodes (claims, finished
notices) is decided by the node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .http import Headers
from .listing_index import ListingIndex
from .schedule import TimerHeap
from .store import TaskStore
from .task import Task, TaskState

WAITING = (TaskState.SCHEDULED, TaskState.RETRYING)
PENDING = (*WAITING, TaskState.DELIVERING)

RECOUNT_TASKS_MAX = 256
RECOUNT_EVERY = 16
"""`check_invariants` recounts the bytes and the listing index from the copies on every
RECOUNT_EVERY-th call while this node holds at most RECOUNT_TASKS_MAX copies (the node tests and
the simulator's runs); otherwise it checks only what is O(1). Both totals change incrementally,
so a drift stays and the next recount finds it; recounting on every call doubled the
simulator's time."""

STALE_TIMERS_SLACK = 1024
"""Stale timer entries tolerated beyond one per waiting copy before a drop compacts the heap.
Compacting is O(entries); it leaves no stale entry, so the next one waits for at least as many
new stale entries as there are live ones (amortized O(1) a drop)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskChanges:
    """What changed since the last `LocalTasks.take_changes`: the shell writes it to disk."""

    keys: set[tuple[str, str]]
    """(queue, id) of every copy added, changed or dropped: the shell stores the copy held now
    under that key, or deletes the key if none is held."""
    paused: dict[str, bool]
    """Queues paused (True) or resumed (False)."""


class LocalTasks:
    def __init__(self, *, retention_ms: int) -> None:
        self.store = TaskStore(retention_ms=retention_ms)
        self.timers = TimerHeap()
        self.in_flight: dict[int, Task] = {}
        """delivery id -> the task being delivered."""
        self._next_delivery_id = 1
        self._counts: dict[str, dict[TaskState, int]] = {}
        """Copies held here, by queue and state."""
        self._primary_counts: dict[str, dict[TaskState, int]] = {}
        """Tasks whose first live copy is the one held here, by queue and state: summed over the
        members, these count each task once."""
        self._state_totals: dict[TaskState, int] = dict.fromkeys(TaskState, 0)
        """Copies held here, by state (all queues)."""
        self.payload_bytes = 0
        """What the copies held here carry (`payload_bytes`), summed: bounded by
        `Limits.task_bytes_max` beside the count. A finished copy drops its body and headers,
        and its bytes with them."""
        self.listing = ListingIndex()
        """Primary copies by queue in listing order, for `GET /{queue}?state=` pages."""
        self.on_copy_ended: Callable[[Task], None] = _nothing
        self.on_queue_settled: Callable[[str], None] = _no_queue
        """Called when a queue's last pending copy here stops pending (its queue state may
        now be forgotten)."""
        self.on_placed: Callable[[Task, int], None] = _nothing_placed
        """Called with +1 when a copy is added or takes a new holder list, and with -1 when it
        leaves its holder list, is dropped or expires (the repair's index by holder list)."""
        self.keeps_changes = False
        """Whether changes are marked for `take_changes` (a durable node's shell takes them
        after every step; a node in memory would only pile them up)."""
        self._changed: set[tuple[str, str]] = set()
        """Keys of copies changed since `take_changes` (marked here, at the choke points every
        change of a copy goes through: one set insertion each)."""
        self._paused_changed: dict[str, bool] = {}
        """Called when a copy finishes or is dropped: what the node remembers about a live
        copy (its sync, unacknowledged repair copies) goes with it."""
        self._checks = 0
        """Calls of `check_invariants` (every RECOUNT_EVERY-th recounts)."""

    def __len__(self) -> int:
        return len(self.store)

    def get(self, queue: str, task_id: str) -> Task | None:
        return self.store.get(queue, task_id)

    def has_room(self, payload_bytes_: int, tasks_max: int, task_bytes_max: int) -> bool:
        """Whether one more copy carrying `payload_bytes_` fits under both limits."""
        return len(self.store) < tasks_max and self.payload_bytes + payload_bytes_ <= task_bytes_max

    def add(self, task: Task) -> None:
        self.store.add(task)
        self.on_placed(task, +1)
        self._mark(task)
        self._count(task, +1)
        self.payload_bytes += task_bytes(task)
        if is_primary(task):
            self.listing.add(task)
        if task.state in WAITING:
            self.timers.push(task)

    def set_state(self, task: Task, state: TaskState) -> None:
        self._count(task, -1)
        task.state = state
        self._count(task, +1)
        self._mark(task)

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
            self.payload_bytes -= task_bytes(task)
            self.store.finished(task, now_ms)  # drops the body and headers
            self.payload_bytes += task_bytes(task)
        self.on_copy_ended(task)

    def drop(self, task: Task) -> None:
        """Forgets `task` at once, whatever its state (a stale copy that lives on elsewhere, a
        purge, a deleted dead letter). A delivery in flight finds it gone and changes nothing
        (its request was built already)."""
        self._count(task, -1)
        self._forget(task)
        self.on_placed(task, -1)
        self._mark(task)
        task.state = TaskState.CANCELLED  # its timer entry and any waiting line entry go stale
        self.on_copy_ended(task)
        # Its stale timer entry may wait for days to reach the top: free the body now, and the
        # entries themselves once stale ones outnumber the live.
        task.body = b""
        task.headers = ()
        waiting = self._state_totals[TaskState.SCHEDULED] + self._state_totals[TaskState.RETRYING]
        if len(self.timers) > 2 * waiting + STALE_TIMERS_SLACK:
            self.timers.compact()

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
            self._forget(task, removed=True)
            self.on_placed(task, -1)
            self._mark(task)

    def _forget(self, task: Task, *, removed: bool = False) -> None:
        """Takes `task` out of the store (unless it is `removed` already), the byte total and
        the listing index."""
        if not removed:
            self.store.remove(task)
        self.payload_bytes -= task_bytes(task)
        if is_primary(task):
            self.listing.remove(task)

    def set_holders(self, task: Task, holders: tuple[tuple[str, int], ...], index: int) -> None:
        """Changes where the copies of `task` live (whether ours is the primary may change)."""
        self._count(task, -1)
        self.on_placed(task, -1)
        if is_primary(task):
            self.listing.remove(task)
        task.holders = holders
        task.copy_index = index
        self._count(task, +1)
        self.on_placed(task, +1)
        if is_primary(task):
            self.listing.add(task)
        self._mark(task)

    def changed(self, task: Task) -> None:
        """Marks a change made to `task` outside the methods above (counts from a claim)."""
        self._mark(task)

    def _mark(self, task: Task) -> None:
        if self.keeps_changes:
            self._changed.add((task.queue, task.id))

    def pause_changed(self, queue: str, paused: bool) -> None:
        if self.keeps_changes:
            self._paused_changed[queue] = paused

    def take_changes(self) -> TaskChanges | None:
        """What changed since the last call, or None if nothing did."""
        if not self._changed and not self._paused_changed:
            return None
        changes = TaskChanges(keys=self._changed, paused=self._paused_changed)
        self._changed = set()
        self._paused_changed = {}
        return changes

    def restore(self, tasks: Iterable[Task]) -> None:
        """Takes back the copies read from disk at start, as they were stored (not a change).
        Finished ones expire in the order they finished, as if this process had run on."""
        finished: list[Task] = []
        for task in tasks:
            self.add(task)
            if task.state in (TaskState.SUCCEEDED, TaskState.CANCELLED):
                finished.append(task)
        finished.sort(key=lambda t: t.finished_ms or 0)
        self.store.restore_finished(finished)
        self._changed.clear()

    def counts(self, queue: str) -> dict[TaskState, int]:
        return dict(self._counts.get(queue, {}))

    def primary_counts(self, queue: str) -> dict[TaskState, int]:
        return dict(self._primary_counts.get(queue, {}))

    def pending_copies(self, queue: str) -> int:
        """Copies of `queue` held here that wait or are being delivered (O(1))."""
        counts = self._counts.get(queue)
        return 0 if counts is None else sum(counts.get(state, 0) for state in PENDING)

    def count_in_state(self, state: TaskState) -> int:
        """Copies held here in `state`, over all queues (O(1))."""
        return self._state_totals[state]

    def check_invariants(self) -> None:
        """The counts by state add up to the copies held (O(1): the per-queue counts change
        with the totals, in `_count`); the byte total is the sum of the copies' bytes and the
        listing index holds exactly the primary copies (recounted now and then for small
        tables, see RECOUNT_EVERY)."""
        assert sum(self._state_totals.values()) == len(self.store), self._state_totals
        assert self.payload_bytes >= 0, self.payload_bytes
        assert self.payload_bytes == 0 or len(self.store) > 0, self.payload_bytes
        assert len(self.listing) <= len(self.store), (len(self.listing), len(self.store))
        self._checks += 1
        if len(self.store) <= RECOUNT_TASKS_MAX and self._checks % RECOUNT_EVERY == 0:
            copies = [task for tasks in self.store.by_queue() for task in tasks]
            counted = sum(task_bytes(task) for task in copies)
            assert counted == self.payload_bytes, (counted, self.payload_bytes)
            primaries = sum(1 for task in copies if is_primary(task))
            assert primaries == len(self.listing), (primaries, len(self.listing))

    def _count(self, task: Task, delta: int) -> None:
        self._state_totals[task.state] += delta
        _add(self._counts, task, delta)
        if is_primary(task):
            _add(self._primary_counts, task, delta)
        if delta < 0 and task.state in PENDING and not self.pending_copies(task.queue):
            self.on_queue_settled(task.queue)


def _nothing(task: Task) -> None:
    pass


def _no_queue(queue: str) -> None:
    pass


def payload_bytes(url: str, headers: Headers, body: bytes) -> int:
    """What a copy carries that its client chose the size of: the body, header names and
    values and the URL (characters; they are ASCII on the wire). The rest of a copy is of
    fixed size, bounded by `tasks_max`."""
    return len(body) + len(url) + sum(len(name) + len(value) for name, value in headers)


def task_bytes(task: Task) -> int:
    return payload_bytes(task.url, task.headers, task.body)


def _nothing_placed(task: Task, delta: int) -> None:
    pass


def is_primary(task: Task) -> bool:
    """Whether this copy is the task's first listed one (its holder answers for the task)."""
    return not task.holders or task.copy_index == min(k for _, k in task.holders)


def _add(table: dict[str, dict[TaskState, int]], task: Task, delta: int) -> None:
    counts = table.setdefault(task.queue, {})
    count = counts.get(task.state, 0) + delta
    assert count >= 0, (task.queue, task.state)
    if count:
        counts[task.state] = count
    else:
        del counts[task.state]
        if not counts:  # forget queues that hold nothing, or names would pile up forever
            del table[task.queue]
