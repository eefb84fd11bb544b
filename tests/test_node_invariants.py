"""`Node.check_invariants()`: it holds after every step (the drivers check it after each one),
and it catches each kind of broken bookkeeping it states."""

from __future__ import annotations

import pytest

from miyamoto.logic.task import TaskState

from .node_driver import NodeDriver

URL = "http://localhost:9099/worker"


def scheduled(d: NodeDriver, countdown: str = "10") -> str:
    task_id: str = d.enqueue_form(task_url=URL, task_countdown=countdown).json()["id"]
    return task_id


def test_a_copy_marked_delivering_without_a_slot_in_flight_is_caught() -> None:
    d = NodeDriver()
    task = d.node.tasks.get("q", scheduled(d))
    assert task is not None
    d.node.check_invariants()
    d.node.tasks.set_state(task, TaskState.DELIVERING)
    with pytest.raises(AssertionError):
        d.node.check_invariants()


def test_a_slot_in_flight_whose_copy_went_back_to_waiting_is_caught() -> None:
    d = NodeDriver()
    task = d.node.tasks.get("q", scheduled(d, countdown="0"))
    assert task is not None and task.state is TaskState.DELIVERING
    d.node.tasks.set_state(task, TaskState.SCHEDULED)
    with pytest.raises(AssertionError):
        d.node.check_invariants()


def test_a_queue_counting_a_delivery_that_is_not_in_flight_is_caught() -> None:
    d = NodeDriver()
    scheduled(d, countdown="0")
    queue = d.node.queues.known("q")
    assert queue is not None and queue.in_flight == 1
    queue.in_flight += 1
    with pytest.raises(AssertionError):
        d.node.check_invariants()


def test_a_purged_delivery_keeps_its_slot_until_its_answer_and_the_invariants_hold() -> None:
    d = NodeDriver()
    scheduled(d, countdown="0")
    (delivery,) = d.advance(0)
    assert d.request("POST", "/q/_purge").status == 200  # the driver checks after each step
    assert len(d.node.tasks.in_flight) == 1
    d.respond(delivery, 200)
    assert not d.node.tasks.in_flight


def test_a_sync_record_that_came_due_without_having_to_sync_is_caught() -> None:
    d = NodeDriver()
    d.node.syncs.ask_when_due("q", "late-copy")  # a first copy still to arrive must ask
    d.node.check_invariants()
    record = d.node.syncs._records[("q", "late-copy")]
    record.came_due = True
    with pytest.raises(AssertionError):
        d.node.check_invariants()


def test_a_copy_that_ends_takes_its_sync_record_with_it() -> None:
    d = NodeDriver()
    task_id = scheduled(d)
    d.node.syncs.ask_when_due("q", task_id)
    assert len(d.node.syncs) == 1
    assert d.request("DELETE", f"/q/{task_id}").json()["status"] == "cancelled"
    assert len(d.node.syncs) == 0
