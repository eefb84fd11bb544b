"""Carry out `StartDelivery` actions with a few long-lived workers per destination.

At most `per_destination_max` deliveries to one destination (scheme, host, port) are under way
at once, each worker taking the next waiting delivery when it is done with one; the others wait
in a first-in first-out queue. This is what the webhook client's per-destination slots would
give anyway, without a task started and parked on a semaphore for every delivery: with 512
deliveries in flight and 64 connections, that cost about 15 of the 170 us of CPU a delivery took.

A delivery's `timeout_ms` counts from the moment it is submitted, waiting included, exactly as
when every delivery waited for its slot inside its own timeout: one that waits past its timeout
is reported as a timeout at that time, and one that waited part of it is given only the rest.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable

import trio

from ..logic.actions import StartDelivery
from ..logic.events import DeliveryError, DeliveryFailed, DeliveryResponded

DeliveryOutcome = DeliveryResponded | DeliveryFailed

Deliver = Callable[[StartDelivery], Awaitable[DeliveryOutcome]]
"""Carries out one delivery within its `timeout_ms` and reports its outcome; never raises."""

Report = Callable[[DeliveryOutcome], None]
"""Takes an outcome (feeds it to the node) without waiting."""

Destination = tuple[str, str, int]


def timed_out(start: StartDelivery) -> DeliveryFailed:
    """The outcome of a delivery with no complete answer within its timeout."""
    return DeliveryFailed(
        delivery_id=start.delivery_id,
        error=DeliveryError.TIMEOUT,
        detail=f"no complete answer within {start.timeout_ms} ms",
    )


class _Waiting:
    """A delivery waiting for a worker; `start` becomes None once taken or expired."""

    __slots__ = ("deadline_s", "start")

    def __init__(self, start: StartDelivery, deadline_s: float) -> None:
        self.start: StartDelivery | None = start
        self.deadline_s = deadline_s


class _Destination:
    __slots__ = ("waiting", "workers")

    def __init__(self) -> None:
        self.waiting: deque[_Waiting] = deque()
        self.workers = 0


class DeliveryQueue:
    def __init__(self, deliver: Deliver, report: Report, *, per_destination_max: int) -> None:
        assert per_destination_max >= 1, per_destination_max
        self._deliver = deliver
        self._report = report
        self._per_destination_max = per_destination_max
        self._nursery: trio.Nursery | None = None
        self._destinations: dict[Destination, _Destination] = {}
        self._deadlines: list[tuple[float, int, _Waiting]] = []
        """A heap of every waiting delivery's deadline, with entries of deliveries taken since
        (dropped when they reach the top, or all at once when they are the most)."""
        self._taken_in_heap = 0
        self._sequence = itertools.count()
        self._deadline_changed = trio.Event()
        self._armed_deadline_s = math.inf

    @property
    def waiting_count(self) -> int:
        """Deliveries waiting for a worker."""
        return len(self._deadlines) - self._taken_in_heap

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the workers and time out waiting deliveries until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await self._expire_waiting()
            finally:
                self._nursery = None

    def submit(self, start: StartDelivery) -> None:
        """Start `start` now if its destination has a free worker, else queue it."""
        nursery = self._nursery
        assert nursery is not None, "submit() before run() started"
        request = start.request
        key = (request.scheme, request.host, request.port)
        destination = self._destinations.get(key)
        if destination is None:
            destination = self._destinations[key] = _Destination()
        if destination.workers < self._per_destination_max:
            destination.workers += 1
            nursery.start_soon(self._work, key, destination, start)
            return
        waiting = _Waiting(start, trio.current_time() + start.timeout_ms / 1000)
        destination.waiting.append(waiting)
        heapq.heappush(self._deadlines, (waiting.deadline_s, next(self._sequence), waiting))
        if waiting.deadline_s < self._armed_deadline_s:
            self._deadline_changed.set()

    async def _work(
        self, key: Destination, destination: _Destination, start: StartDelivery
    ) -> None:
        try:
            job: tuple[StartDelivery, StartDelivery] | None = (start, start)
            while job is not None:
                send, given = job
                outcome = await self._deliver(send)
                if send is not given and getattr(outcome, "error", None) is DeliveryError.TIMEOUT:
                    outcome = timed_out(given)  # say the timeout the node gave, not what was left
                self._report(outcome)
                job = self._take_next(destination)
        finally:
            destination.workers -= 1
            if not destination.workers and not destination.waiting:
                del self._destinations[key]

    def _take_next(self, destination: _Destination) -> tuple[StartDelivery, StartDelivery] | None:
        """The next waiting delivery as (what to send: the same with only what is left of its
        timeout, the delivery as given); None when none waits."""
        waiting_queue = destination.waiting
        while waiting_queue:
            waiting = waiting_queue.popleft()
            start = waiting.start
            if start is None:
                continue  # expired while it waited
            waiting.start = None
            self._note_taken()
            left_ms = math.ceil((waiting.deadline_s - trio.current_time()) * 1000)
            if left_ms <= 0:
                self._report(timed_out(start))
            elif left_ms < start.timeout_ms:
                # Built directly: dataclasses.replace cost twice as much.
                trimmed = StartDelivery(
                    delivery_id=start.delivery_id,
                    request=start.request,
                    timeout_ms=left_ms,
                    excerpt_bytes_max=start.excerpt_bytes_max,
                )
                return trimmed, start
            else:
                return start, start
        return None

    def _note_taken(self) -> None:
        self._taken_in_heap += 1
        if self._taken_in_heap > 64 and self._taken_in_heap > len(self._deadlines) // 2:
            # Bounded memory: taken entries would otherwise pile up for as long as timeouts are.
            self._deadlines = [entry for entry in self._deadlines if entry[2].start is not None]
            heapq.heapify(self._deadlines)
            self._taken_in_heap = 0

    async def _expire_waiting(self) -> None:
        while True:
            heap = self._deadlines
            while heap and heap[0][2].start is None:
                heapq.heappop(heap)
                self._taken_in_heap -= 1
            self._deadline_changed = trio.Event()
            if not heap:
                self._armed_deadline_s = math.inf
                await self._deadline_changed.wait()
                continue
            deadline_s, _, waiting = heap[0]
            self._armed_deadline_s = deadline_s
            if trio.current_time() < deadline_s:
                with trio.move_on_at(deadline_s):
                    await self._deadline_changed.wait()
                continue
            heapq.heappop(heap)
            start, waiting.start = waiting.start, None
            assert start is not None
            self._report(timed_out(start))
