"""The virtual clock: a priority queue of things due at a simulated (true) time.

Items due at the same millisecond come out in the order they were scheduled, so a run depends
only on its seed, never on how the heap breaks ties.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Agenda(Generic[Item]):
    def __init__(self, start_ms: int) -> None:
        self.now_ms = start_ms
        self._heap: list[tuple[int, int, Item]] = []
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, time_ms: int, item: Item) -> None:
        """Schedule `item` at `time_ms` (never in the past: the past has happened)."""
        assert time_ms >= self.now_ms, (time_ms, self.now_ms)
        self._sequence += 1
        heapq.heappush(self._heap, (time_ms, self._sequence, item))

    def after(self, delay_ms: int, item: Item) -> None:
        assert delay_ms >= 0, delay_ms
        self.at(self.now_ms + delay_ms, item)

    def next_time_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pop(self) -> Item:
        """The next item; the clock moves to its time."""
        time_ms, _, item = heapq.heappop(self._heap)
        self.now_ms = time_ms
        return item

    def advance_to(self, time_ms: int) -> None:
        """Move the clock to `time_ms` with nothing due before it."""
        assert time_ms >= self.now_ms, (time_ms, self.now_ms)
        next_ms = self.next_time_ms()
        assert next_ms is None or next_ms >= time_ms, (next_ms, time_ms)
        self.now_ms = time_ms
