"""The delivery queue with fake deliveries: a transport limit per destination, order, and the
handover of a worker to the delivery the node starts when it takes an outcome; no timeouts of
its own."""

from __future__ import annotations

import trio
import trio.testing

from miyamoto.io.delivery_queue import DeliveryOutcome, DeliveryQueue
from miyamoto.logic.actions import OutboundRequest, StartDelivery
from miyamoto.logic.events import DeliveryError, DeliveryFailed, DeliveryResponded

TEST_TIMEOUT_S = 10


def start(delivery_id: int, *, port: int = 9, timeout_ms: int = 1_000) -> StartDelivery:
    request = OutboundRequest(
        scheme="http", host="127.0.0.1", port=port, method="POST", target="/w", headers=(), body=b""
    )
    return StartDelivery(
        delivery_id=delivery_id, request=request, timeout_ms=timeout_ms, excerpt_bytes_max=10
    )


class FakeReceiver:
    """Deliveries that last `seconds` each (or until their timeout); records what it was given."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.given: list[StartDelivery] = []
        self.in_flight = 0
        self.in_flight_max = 0

    async def deliver(self, given: StartDelivery) -> DeliveryOutcome:
        self.given.append(given)
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            with trio.move_on_after(given.timeout_ms / 1000):
                await trio.sleep(self.seconds)
                return DeliveryResponded(delivery_id=given.delivery_id, status=200)
            return DeliveryFailed(
                delivery_id=given.delivery_id, error=DeliveryError.TIMEOUT, detail="fake timeout"
            )
        finally:
            self.in_flight -= 1


async def run_queue(
    receiver: FakeReceiver, starts: list[StartDelivery], per_destination_max: int
) -> list[tuple[float, DeliveryOutcome]]:
    """Submit every start at once; (time, outcome) of each report, in the order reported."""
    reports: list[tuple[float, DeliveryOutcome]] = []
    done = trio.Event()

    def report(outcome: DeliveryOutcome) -> None:
        reports.append((trio.current_time(), outcome))
        if len(reports) == len(starts):
            done.set()

    queue = DeliveryQueue(receiver.deliver, report, per_destination_max=per_destination_max)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            for each in starts:
                queue.submit(each)
            await done.wait()
            nursery.cancel_scope.cancel()
    return reports


async def test_at_most_the_cap_per_destination_are_under_way_and_they_go_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    receiver = FakeReceiver(seconds=0.1)
    starts = [start(i) for i in range(10)]
    reports = await run_queue(receiver, starts, per_destination_max=3)
    assert receiver.in_flight_max == 3
    given = [g.delivery_id for g in receiver.given]
    assert set(given[:3]) == {0, 1, 2}  # started at once, in whatever order trio runs them
    assert given[3:] == list(range(3, 10))  # the waiting ones, first come first served
    assert all(isinstance(o, DeliveryResponded) for _, o in reports)
    assert sorted(o.delivery_id for _, o in reports) == list(range(10))


async def test_destinations_do_not_wait_for_each_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    receiver = FakeReceiver(seconds=0.1)
    starts = [start(i, port=9) for i in range(4)] + [start(9, port=10)]
    reports = await run_queue(receiver, starts, per_destination_max=1)
    other = next(t for t, o in reports if o.delivery_id == 9)
    assert other < 0.2  # not behind the four deliveries to port 9


async def test_a_delivery_started_while_an_outcome_is_reported_takes_that_worker_in_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # As the node does: it frees the slot when it takes an outcome and starts the next delivery
    # to the destination in the same step, while the reporting worker still counts.
    receiver = FakeReceiver(seconds=0.7)
    reports: list[DeliveryOutcome] = []
    queue: DeliveryQueue

    def report(outcome: DeliveryOutcome) -> None:
        reports.append(outcome)
        if outcome.delivery_id == 1:
            queue.submit(start(2, timeout_ms=1_000))

    queue = DeliveryQueue(receiver.deliver, report, per_destination_max=1)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            queue.submit(start(1, timeout_ms=1_000))
            while len(reports) < 2:
                await trio.sleep(0.01)
            assert queue.waiting_count == 0
            nursery.cancel_scope.cancel()
    assert all(isinstance(o, DeliveryResponded) for o in reports)  # nothing timed out here
    assert [g.timeout_ms for g in receiver.given] == [1_000, 1_000]  # each its whole timeout
    assert receiver.in_flight_max == 1


async def test_many_deliveries_that_came_and_went_leave_no_bookkeeping_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    receiver = FakeReceiver(seconds=0.001)
    reports: list[DeliveryOutcome] = []
    queue = DeliveryQueue(receiver.deliver, reports.append, per_destination_max=2)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            for i in range(1_000):
                queue.submit(start(i, timeout_ms=60_000))
            while len(reports) < 1_000:
                await trio.sleep(0.01)
            assert queue.waiting_count == 0
            assert not queue._destinations
            nursery.cancel_scope.cancel()
