"""Delivery slots: how many deliveries a node has under way, in all and per destination, and the
due tasks waiting for a slot.

A destination is a webhook's (host, port). With `slots` the node's deliveries in flight at most
(`deliveries_in_flight_max`), `cap` the most one destination may have
(`connections_per_destination_max`), and `active` the destinations with a delivery in flight or
a task waiting in a line here, the destination asked about included:

    share(D) = min(cap, max(floor, slots // active))      floor = min(4, cap, slots)

A delivery to D may start while the node has fewer than `slots` in flight and D fewer than
share(D). Alone, a destination may use all it is allowed (work-conserving up to its cap); beside
others, its fair share. The floor lets every destination have a few when there are more than
slots // floor of them; the node's total is then what holds them back. Deliveries in flight are
never taken back: when destinations come, those over their new share start nothing more, and
each slot that frees goes to a destination below its share (lines are served in the order they
were made, and a destination at its share is passed over).

A due task that may not start because of its destination or a full node waits here, in a line
per (destination, queue), first in first out; it is not an attempt, costs no retry and is not
sent to the shell. It counts its destination as active, so a destination with work waiting gets
its share of the slots that free. One line per queue: a queue that holds its tasks back (paused,
at its rate or concurrency) holds back only its own. At most `slots` destinations have lines (so
a pass over them is bounded); past that, due tasks wait in their queue's line. Lines are cleaned
lazily: an entry whose task is no longer waiting and due is dropped when it reaches the head (as
the queues' own lines and the timer heap are).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, KeysView

from .task import Task

Destination = tuple[str, int]
"""(host, port) of a webhook URL."""

FLOOR_SLOTS = 4
"""Deliveries a destination may have in flight however many are active (at most its cap)."""


class DeliverySlots:
    def __init__(self, *, slots: int, per_destination_max: int) -> None:
        assert slots >= 1 and per_destination_max >= 1, (slots, per_destination_max)
        self.slots = slots
        self.per_destination_max = per_destination_max
        self.floor = min(FLOOR_SLOTS, per_destination_max, slots)
        self.in_flight: dict[Destination, int] = {}
        """Deliveries in flight by destination (destinations with any)."""
        self._destination_of: dict[int, Destination] = {}
        """delivery id -> its destination, until its outcome is in."""
        self.lines: dict[Destination, dict[str, deque[Task]]] = {}
        """destination -> queue -> tasks waiting for a slot (no empty line is kept)."""
        self._lined: set[int] = set()
        """id() of every task in a line: a task is in at most one (its destination and queue
        are fixed), however often it comes due while there."""
        self._active: set[Destination] = set()
        """Destinations with a delivery in flight or a line: `in_flight` | `lines`."""

    @property
    def in_flight_total(self) -> int:
        return len(self._destination_of)

    @property
    def free(self) -> int:
        """Deliveries the node may still start (whatever their destination)."""
        return self.slots - len(self._destination_of)

    @property
    def waiting_count(self) -> int:
        """Line entries (stale ones included until they reach a head)."""
        return len(self._lined)

    def share(self, destination: Destination) -> int:
        """The most deliveries `destination` may have in flight now (the rule above)."""
        active = len(self._active) + (destination not in self._active)
        return min(self.per_destination_max, max(self.floor, self.slots // active))

    def at_share(self, destination: Destination) -> bool:
        """Whether `destination` has as many in flight as its share allows (or more: shares
        shrink when destinations come, and nothing in flight is taken back)."""
        return self.in_flight.get(destination, 0) >= self.share(destination)

    def may_start(self, destination: Destination) -> bool:
        return self.free > 0 and not self.at_share(destination)

    def started(self, delivery_id: int, destination: Destination) -> None:
        assert self.may_start(destination), (destination, self.in_flight.get(destination))
        assert delivery_id not in self._destination_of, delivery_id
        self._destination_of[delivery_id] = destination
        self.in_flight[destination] = self.in_flight.get(destination, 0) + 1
        self._active.add(destination)

    def ended(self, delivery_id: int) -> None:
        """The outcome of `delivery_id` is in (a delivery not in flight is ignored)."""
        destination = self._destination_of.pop(delivery_id, None)
        if destination is None:
            return
        count = self.in_flight[destination] - 1
        if count:
            self.in_flight[destination] = count
        else:
            del self.in_flight[destination]
            if destination not in self.lines:
                self._active.discard(destination)

    def may_wait(self, destination: Destination) -> bool:
        """Whether a task for `destination` may wait in a line here (at most `slots`
        destinations have lines)."""
        return destination in self.lines or len(self.lines) < self.slots

    def wait(self, task: Task, destination: Destination) -> None:
        """`task` waits for a slot of `destination`, behind those of its queue there."""
        assert self.may_wait(destination), destination
        if id(task) in self._lined:
            return  # still in its line from an earlier time it came due
        self._lined.add(id(task))
        by_queue = self.lines.get(destination)
        if by_queue is None:
            by_queue = self.lines[destination] = {}
            self._active.add(destination)
        line = by_queue.get(task.queue)
        if line is None:
            line = by_queue[task.queue] = deque()
        line.append(task)

    def has_line(self, destination: Destination, queue: str) -> bool:
        by_queue = self.lines.get(destination)
        return by_queue is not None and queue in by_queue

    def head(self, destination: Destination, queue: str) -> Task:
        return self.lines[destination][queue][0]

    def pop_head(self, destination: Destination, queue: str) -> None:
        """Takes the head of the (destination, queue) line out (dropping emptied lines)."""
        by_queue = self.lines[destination]
        line = by_queue[queue]
        self._lined.discard(id(line.popleft()))
        if line:
            return
        del by_queue[queue]
        if by_queue:
            return
        del self.lines[destination]
        if destination not in self.in_flight:
            self._active.discard(destination)

    def waiting(self) -> Iterator[Task]:
        """Every task in a line (stale entries included)."""
        for by_queue in self.lines.values():
            for line in by_queue.values():
                yield from line

    def check_invariants(self, delivery_ids: KeysView[int]) -> None:
        """`delivery_ids`: the deliveries the node has in flight. Walks the destinations in
        flight and the lines (not the tasks in them), mostly in C: it runs after every event."""
        assert len(self._destination_of) <= self.slots, len(self._destination_of)
        assert delivery_ids == self._destination_of.keys(), "a delivery without a slot, or back"
        counts = self.in_flight.values()
        assert sum(counts) == len(self._destination_of), self.in_flight
        assert not counts or 1 <= min(counts) <= max(counts) <= self.per_destination_max, counts
        assert self._active == self.in_flight.keys() | self.lines.keys(), "active"
        if not self.lines:
            assert not self._lined, len(self._lined)
            return
        assert len(self.lines) <= self.slots, len(self.lines)
        entries = 0
        for destination, by_queue in self.lines.items():
            assert by_queue, destination
            for queue, line in by_queue.items():
                assert line, (destination, queue)
                entries += len(line)
        assert entries == len(self._lined), (entries, len(self._lined))
