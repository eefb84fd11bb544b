"""Per-queue admission: which due task may start now, under its queue's rate, concurrency cap
and pause, and under a destination's request to slow down.

A due task that may not start yet waits in its queue's ready line (first in, first out) and
keeps its state; the timer heap is only for tasks not yet due. In a cluster, each node enforces
its share of a queue's rate and concurrency (the total divided by the member count), so the
cluster as a whole keeps to the configured numbers (docs/queues.md says how far it can overshoot).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from .queue_config import QueueConfig, QueuesConfig
from .task import Task, TaskState
from .token_bucket import TokenBucket

WAITING = (TaskState.SCHEDULED, TaskState.RETRYING)
_PENDING = (*WAITING, TaskState.DELIVERING)
RATE_WINDOW_S = 60
"""Deliveries per minute are counted over this many one-second slots."""


class DeliveryRate:
    """Attempts started in the last minute, in one-second slots (a ring)."""

    def __init__(self) -> None:
        self._slots = [0] * RATE_WINDOW_S
        self._second = 0

    def add(self, now_ms: int) -> None:
        self._advance(now_ms // 1000)
        self._slots[self._second % RATE_WINDOW_S] += 1

    def per_minute(self, now_ms: int) -> int:
        self._advance(now_ms // 1000)
        return sum(self._slots)

    def _advance(self, second: int) -> None:
        if second <= self._second:
            return  # the same second, or the wall clock stepped back: keep counting
        for s in range(self._second + 1, min(second, self._second + RATE_WINDOW_S) + 1):
            self._slots[s % RATE_WINDOW_S] = 0
        self._second = second


def _nothing(name: str) -> None:
    pass


class QueueState:
    def __init__(self, name: str, config: QueueConfig, members: int, now_ms: int) -> None:
        self.name = name
        self.config = config
        self.on_maybe_idle: Callable[[str], None] = _nothing
        """Called when the queue may have become idle (`Queues.room_for` looks there first)."""
        self._paused = False
        self._in_flight = 0
        self.ready: deque[Task] = deque()
        self.rate = DeliveryRate()
        self.bucket: TokenBucket | None = None
        self.concurrency_share: int | None = None
        self.rate_share: float | None = None
        self.members = 0
        self.share(members, now_ms)
        self._pending_etas: list[tuple[int, Task]] = []
        """(ETA, task) of this queue's waiting copies; stale entries dropped lazily."""

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, paused: bool) -> None:
        self._paused = paused
        if not paused:
            self.on_maybe_idle(self.name)

    @property
    def in_flight(self) -> int:
        """Deliveries of this queue's copies in flight on this node."""
        return self._in_flight

    @in_flight.setter
    def in_flight(self, count: int) -> None:
        self._in_flight = count
        if not count:
            self.on_maybe_idle(self.name)

    def share(self, members: int, now_ms: int) -> None:
        """Takes this node's share of the queue's rate and concurrency among `members` nodes."""
        members = max(1, members)
        if members == self.members:
            return
        self.members = members
        config = self.config
        if config.max_concurrent is not None:
            self.concurrency_share = max(1, config.max_concurrent // members)
        if config.rate_per_s is not None:
            self.rate_share = config.rate_per_s / members
            bucket_share = max(1, config.bucket_size // members)
            if self.bucket is None:
                self.bucket = TokenBucket(
                    rate_per_s=self.rate_share, bucket_size=bucket_share, now_ms=now_ms
                )
            else:  # keep the tokens: a new member list is no reason for a fresh burst
                self.bucket.set_rate(self.rate_share, now_ms)
                self.bucket.set_bucket_size(bucket_share, now_ms)

    def reconfigure(self, config: QueueConfig, now_ms: int) -> None:
        """Takes new settings (a reloaded queues file) at once, keeping its waiting line, its
        pause, its deliveries in flight and, while it still has a rate, its tokens."""
        self.config = config
        if config.max_concurrent is None:
            self.concurrency_share = None
        if config.rate_per_s is None:
            self.rate_share = None
            self.bucket = None
        members, self.members = self.members, 0
        self.share(members, now_ms)

    def note_waiting(self, task: Task) -> None:
        heapq.heappush(self._pending_etas, (task.eta_ms, task))

    def oldest_eta_ms(self) -> int | None:
        etas = self._pending_etas
        while etas and etas[0][1].state not in _PENDING:
            heapq.heappop(etas)
        return etas[0][0] if etas else None

    def is_idle(self, pending_copies: int) -> bool:
        """Nothing here but settings and counters that may be forgotten, when this node holds
        `pending_copies` copies of the queue that wait or are being delivered (with none, its
        waiting line holds only entries gone stale)."""
        return not (pending_copies or self._in_flight or self._paused)

    def admits(self, now_ms: int) -> bool:
        """Whether one more delivery may start now; takes a token when it may."""
        if self.paused:
            return False
        if self.concurrency_share is not None and self.in_flight >= self.concurrency_share:
            return False
        return self.bucket is None or self.bucket.try_take(now_ms)

    def wake_ms(self, now_ms: int) -> int | None:
        """When a waiting line held back only by the rate can move again."""
        if not self.ready or self.paused or self.bucket is None:
            return None
        if self.concurrency_share is not None and self.in_flight >= self.concurrency_share:
            return None  # a finishing delivery wakes it, not a timer
        return self.bucket.next_token_ms(now_ms)


def _no_copies(name: str) -> int:
    return 0


DESTINATION_HOLDS_MAX = 10_000
"""Destinations held back at once (their names come from clients' URLs, so they are bounded)."""


class Queues:
    """Every queue this node has seen, created on first use with its configured settings."""

    destination_holds_max = DESTINATION_HOLDS_MAX

    def __init__(self, config: QueuesConfig) -> None:
        self.config = config
        self._queues: dict[str, QueueState] = {}
        self._members = 1
        self.pending_copies: Callable[[str], int] = _no_copies
        """How many copies of a queue this node holds that wait or are being delivered (the
        node's `LocalTasks.pending_copies`)."""
        self._maybe_idle: dict[str, None] = {}
        """Queues that may have become idle since they were last looked at, oldest first: every
        way into idleness (a last pending copy gone, a last delivery finished, a resume, a
        new state) puts the queue here, so `room_for` finds an idle queue without a scan."""
        self.blocked: set[str] = set()
        """Queues with a waiting line."""
        self.destination_hold_ms: dict[tuple[str, str, int], int] = {}
        """(queue, host, port) -> until when that queue's deliveries to host:port wait (it
        answered one of them 429/503 with Retry-After). Per queue: one tenant's receiver asking
        to wait does not hold back every other queue's tasks for the same host."""

    def holds(self, now_ms: int) -> list[tuple[str, str, int, int]]:
        """(queue, host, port, until ms) of every hold still in force, sorted."""
        held = self.destination_hold_ms.items()
        return sorted((q, h, p, until_ms) for (q, h, p), until_ms in held if until_ms > now_ms)

    def lift_holds(self, host: str, port: int) -> list[str]:
        """Ends every queue's hold on host:port; the queues whose hold it ended, sorted."""
        lifted = sorted(q for q, h, p in self.destination_hold_ms if (h, p) == (host, port))
        for queue in lifted:
            del self.destination_hold_ms[(queue, host, port)]
        return lifted

    def hold_destination(
        self, destination: tuple[str, str, int], until_ms: int, now_ms: int
    ) -> None:
        """`destination`'s (queue, host, port) deliveries wait until `until_ms` (it asked, with
        Retry-After). At
        the bound, holds that ended are dropped; if none has, the new one is not kept: the task
        that was told to wait still waits (its retry is put off as far), the others do not."""
        holds = self.destination_hold_ms
        if destination not in holds and len(holds) >= self.destination_holds_max:
            for ended in [d for d, hold_ms in holds.items() if hold_ms <= now_ms]:
                del holds[ended]
            if len(holds) >= self.destination_holds_max:
                return
        holds[destination] = max(holds.get(destination, 0), until_ms)

    def get(self, name: str, now_ms: int) -> QueueState:
        queue = self._queues.get(name)
        if queue is None:
            queue = QueueState(name, self.config.for_queue(name), self._members, now_ms)
            queue.on_maybe_idle = self.note_maybe_idle
            self._queues[name] = queue
            self._maybe_idle[name] = None
        return queue

    def note_maybe_idle(self, name: str) -> None:
        if name in self._queues:
            self._maybe_idle[name] = None

    def room_for(self, name: str, queues_max: int) -> bool:
        """Whether `name` may have a queue state: it has one, or there is room for one once an
        idle queue (nothing waiting, in flight or paused) is forgotten. Amortized O(1): it looks
        only at queues that may have become idle since it last looked at them."""
        if name in self._queues or len(self._queues) < queues_max:
            return True
        candidates = self._maybe_idle
        while candidates:
            candidate = next(iter(candidates))
            del candidates[candidate]
            queue = self._queues.get(candidate)
            if queue is not None and queue.is_idle(self.pending_copies(candidate)):
                del self._queues[candidate]
                self.blocked.discard(candidate)
                return True
        return False

    def check_invariants(self) -> None:
        assert self._maybe_idle.keys() <= self._queues.keys(), "a forgotten queue is a candidate"

    def known(self, name: str) -> QueueState | None:
        return self._queues.get(name)

    def names(self) -> Iterable[str]:
        """The queues with a state here (in use lately, or paused)."""
        return self._queues.keys()

    def reconfigure(self, config: QueuesConfig, now_ms: int) -> None:
        """New settings for every queue (SIGHUP reloads the queues file): queues made from now
        on get them, and every known queue takes its own at once."""
        self.config = config
        for name, queue in self._queues.items():
            queue.reconfigure(config.for_queue(name), now_ms)

    def set_members(self, members: int, now_ms: int) -> None:
        self._members = max(1, members)
        for queue in self._queues.values():
            queue.share(self._members, now_ms)

    def in_flight_counts(self) -> dict[str, int]:
        """Deliveries in flight by queue, as the queues count them (those with any)."""
        return {name: q.in_flight for name, q in self._queues.items() if q.in_flight}

    def waiting(self) -> Iterator[Task]:
        """Every task waiting in a queue's line."""
        for name in sorted(self.blocked):
            yield from self._queues[name].ready

    def next_wake_ms(self, now_ms: int) -> int | None:
        wakes = (self._queues[name].wake_ms(now_ms) for name in self.blocked)
        return min((w for w in wakes if w is not None), default=None)
