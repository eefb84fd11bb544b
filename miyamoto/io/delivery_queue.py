"""Carry out `StartDelivery` actions with a few long-lived workers per destination.

How many deliveries are under way, in all and to one destination, is the node's decision
(logic/delivery_slots.py): it never has more than `connections_per_destination_max` in flight to
one (host, port), and a task waiting for a slot is never handed to the shell. This queue makes
no such decision; it only saves starting a trio task per delivery (with 512 deliveries in flight
that cost about 15 of the 170 us of CPU a delivery took): a worker that has reported an outcome
takes the next delivery submitted for its destination, if any, before it ends.

`per_destination_max` is a transport limit set to the node's cap. The node frees a slot when it
takes an outcome and may start the next delivery to that destination at once, while the worker
that reported is still counted: that delivery waits for the worker (a handover within the same
step), the only wait there is. Nothing here times out or fails a delivery: its `timeout_ms` is
the webhook client's, counted from when it is sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import trio

from ..logic.actions import StartDelivery
from ..logic.events import DeliveryFailed, DeliveryResponded

DeliveryOutcome = DeliveryResponded | DeliveryFailed

Deliver = Callable[[StartDelivery], Awaitable[DeliveryOutcome]]
"""Carries out one delivery within its `timeout_ms` and reports its outcome; never raises."""

Report = Callable[[DeliveryOutcome], None]
"""Takes an outcome (feeds it to the node) without waiting."""

Destination = tuple[str, str, int]


class _Destination:
    __slots__ = ("waiting", "workers")

    def __init__(self) -> None:
        self.waiting: deque[StartDelivery] = deque()
        self.workers = 0


class DeliveryQueue:
    def __init__(self, deliver: Deliver, report: Report, *, per_destination_max: int) -> None:
        assert per_destination_max >= 1, per_destination_max
        self._deliver = deliver
        self._report = report
        self._per_destination_max = per_destination_max
        self._nursery: trio.Nursery | None = None
        self._destinations: dict[Destination, _Destination] = {}
        self.waiting_count = 0
        """Deliveries submitted past the transport limit, waiting for a worker to hand over."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the workers until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def submit(self, start: StartDelivery) -> None:
        """Start `start` now, on a new worker or (past the limit) on the next one free."""
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
        destination.waiting.append(start)
        self.waiting_count += 1

    async def _work(
        self, key: Destination, destination: _Destination, start: StartDelivery
    ) -> None:
        try:
            job: StartDelivery | None = start
            while job is not None:
                self._report(await self._deliver(job))
                job = None
                if destination.waiting:
                    job = destination.waiting.popleft()
                    self.waiting_count -= 1
        finally:
            destination.workers -= 1
            if not destination.workers and not destination.waiting:
                del self._destinations[key]
