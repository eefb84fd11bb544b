"""Fair-share delivery slots (logic/delivery_slots.py): the rule, its bookkeeping, and what a node
does with it: one slow receiver cannot take the slots other receivers need, and a task waiting
for a slot is not an attempt."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miyamoto.logic.actions import StartDelivery
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.delivery_slots import DeliverySlots
from miyamoto.logic.limits import Limits
from miyamoto.logic.queue_config import QueueConfig, QueuesConfig
from miyamoto.logic.task import Task

from .node_driver import NodeDriver, header

SLOW = "http://slow.example:9000/work"
FAST = "http://fast.example:9000/work"


def host(delivery: StartDelivery) -> str:
    return delivery.request.host


def by_host(deliveries: list[StartDelivery]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for delivery in deliveries:
        counts[host(delivery)] = counts.get(host(delivery), 0) + 1
    return counts


# -- the rule --------------------------------------------------------------------------------


def fill(slots: DeliverySlots, destination: tuple[str, int], count: int, first_id: int) -> int:
    """Starts `count` deliveries to `destination`; the next free delivery id."""
    for delivery_id in range(first_id, first_id + count):
        slots.started(delivery_id, destination)
    return first_id + count


def test_a_lone_destination_may_use_every_slot_up_to_its_cap() -> None:
    assert DeliverySlots(slots=512, per_destination_max=64).share(("a", 80)) == 64
    assert DeliverySlots(slots=2, per_destination_max=64).share(("a", 80)) == 2


def test_beside_others_a_destination_gets_its_fair_share() -> None:
    slots = DeliverySlots(slots=512, per_destination_max=1000)
    next_id = fill(slots, ("a", 80), 1, 1)
    assert slots.share(("a", 80)) == 512  # alone
    assert slots.share(("b", 80)) == 256  # asking counts b as active
    fill(slots, ("b", 80), 1, next_id)
    assert slots.share(("a", 80)) == slots.share(("b", 80)) == 256
    assert slots.share(("c", 80)) == 512 // 3


def test_many_destinations_each_keep_the_floor() -> None:
    slots = DeliverySlots(slots=16, per_destination_max=64)
    next_id = 1
    for port in range(10):
        next_id = fill(slots, ("a", port), 1, next_id)
    assert slots.share(("a", 0)) == 4  # 16 // 11 is 1: the floor
    next_id = fill(slots, ("a", 0), 3, next_id)
    assert not slots.may_start(("a", 0))
    assert slots.may_start(("a", 1))


def test_a_destination_may_not_start_when_the_node_is_full() -> None:
    slots = DeliverySlots(slots=4, per_destination_max=64)
    fill(slots, ("a", 80), 2, 1)
    fill(slots, ("b", 80), 2, 3)
    assert slots.free == 0
    assert not slots.may_start(("c", 80))


def test_the_invariants_catch_a_delivery_the_slots_do_not_know() -> None:
    slots = DeliverySlots(slots=4, per_destination_max=4)
    slots.started(1, ("a", 80))
    slots.check_invariants({1: None}.keys())
    with pytest.raises(AssertionError):
        slots.check_invariants({1: None, 2: None}.keys())
    slots.ended(1)
    with pytest.raises(AssertionError):
        slots.check_invariants({1: None}.keys())
    slots.check_invariants({}.keys())


@settings(deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 40), st.integers(1, 10))
def test_no_destination_starts_past_its_share_and_the_books_balance(
    rng: random.Random, total: int, cap: int
) -> None:
    slots = DeliverySlots(slots=total, per_destination_max=cap)
    in_flight: dict[int, None] = {}
    tasks = [
        Task(
            id=f"t{i}",
            queue="q",
            method="POST",
            url=SLOW,
            headers=(),
            body=b"",
            eta_ms=0,
            created_ms=0,
        )
        for i in range(20)
    ]
    for delivery_id in range(1, 200):
        destination = ("h", rng.randrange(6))
        move = rng.random()
        if move < 0.5 and slots.may_start(destination):
            share = slots.share(destination)
            slots.started(delivery_id, destination)
            assert slots.in_flight[destination] <= share <= cap
            in_flight[delivery_id] = None
        elif move < 0.8 and in_flight:
            done = rng.choice(sorted(in_flight))
            del in_flight[done]
            slots.ended(done)
        elif move < 0.9:
            task = rng.choice(tasks)  # a task's destination is fixed: its index's
            if slots.may_wait(("h", int(task.id[1:]) % 6)):
                slots.wait(task, ("h", int(task.id[1:]) % 6))
        elif slots.lines:
            where = rng.choice(sorted(slots.lines))
            slots.pop_head(where, rng.choice(sorted(slots.lines[where])))
        slots.check_invariants(in_flight.keys())
        assert slots.in_flight_total <= total


# -- a node ------------------------------------------------------------------------------------


def test_a_slow_destination_takes_at_most_its_cap_and_the_fast_one_starts_at_once() -> None:
    d = NodeDriver()  # 512 slots, 64 per destination
    for _ in range(300):
        d.enqueue_form(task_url=SLOW)
    for _ in range(20):
        d.enqueue_form(task_url=FAST)
    started = d.advance(0)
    assert by_host(started) == {"slow.example": 64, "fast.example": 20}
    # The slow ones that wait for a slot are no attempt: scheduled, never tried.
    assert d.get("/q").json()["counts"]["scheduled"] == 300 - 64
    listing = d.get("/q?state=scheduled").json()["tasks"]
    assert listing and all(t["attempts"] == 0 for t in listing)


def test_a_task_waiting_for_its_destination_starts_when_a_slot_frees_untried() -> None:
    d = NodeDriver(NodeConfig(limits=replace(Limits(), connections_per_destination_max=2)))
    for _ in range(3):
        d.enqueue_form(task_url=SLOW)
    first, second = d.advance(0)
    assert d.advance(60_000) == []  # waiting for a slot sets no timer and times nothing out
    d.respond(first, 200)
    (third,) = d.advance(0)
    assert header(third, "x-task-retry-count") == "0"
    d.respond(second, 200)
    d.respond(third, 200)
    assert d.get("/q").json()["counts"]["succeeded"] == 3


def test_a_freed_slot_goes_to_a_destination_below_its_share_not_to_one_over_it() -> None:
    d = NodeDriver(NodeConfig(limits=replace(Limits(), deliveries_in_flight_max=8)))
    for _ in range(12):
        d.enqueue_form(task_url=SLOW)
    slow = d.advance(0)
    assert len(slow) == 8  # alone: every slot; the other 4 wait for a slot
    for _ in range(3):
        d.enqueue_form(task_url=FAST)
    assert d.advance(0) == []  # the node is full: the fast ones wait, and count as active
    for index in range(3):  # slow has 8 in flight, over its share of 8 // 2
        d.respond(slow[index], 200)
        assert by_host(d.advance(0)) == {"fast.example": 1}
    d.respond(slow[3], 500)  # slow has 4 in flight: its share; nothing of it starts
    assert d.advance(0) == []
    d.respond(slow[4], 200)
    assert by_host(d.advance(0)) == {"slow.example": 1}


def test_a_paused_queue_waiting_for_a_destination_does_not_hold_back_another_queue() -> None:
    d = NodeDriver(NodeConfig(limits=replace(Limits(), connections_per_destination_max=1)))
    d.enqueue_form("a", task_url=SLOW)
    d.enqueue_form("a", task_url=SLOW)
    d.enqueue_form("b", task_url=SLOW)
    (first,) = d.advance(0)
    assert d.request("POST", "/a/_pause").json()["status"] == "paused"
    d.respond(first, 200)
    (second,) = d.advance(0)
    assert header(second, "x-task-queue") == "b"


def test_a_rate_limited_queue_in_a_destination_line_is_woken_by_its_next_token() -> None:
    config = NodeConfig(
        limits=replace(Limits(), connections_per_destination_max=1),
        queues=QueuesConfig(
            default=QueueConfig(), queues=(("q", QueueConfig(rate_per_s=1, bucket_size=1)),)
        ),
    )
    d = NodeDriver(config)
    d.enqueue_form(task_url=SLOW)
    d.enqueue_form(task_url=SLOW)
    (first,) = d.advance(0)  # the one token: the second waits for the destination
    d.respond(first, 200)  # the destination is free, the queue has no token yet
    assert d.advance(0) == []
    assert len(d.advance(1000)) == 1  # no other event: the token's time wakes the node
