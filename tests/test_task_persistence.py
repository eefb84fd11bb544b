"""Durable tasks, the pure half: the node says which copies changed in each step, a copy
survives its encoding to a row unchanged, and a node restored from the rows carries on where
the last one stopped (docs/durability.md). The shell's half: test_durable_commit_gate.py,
test_io_durable_tasks.py."""

from __future__ import annotations

import json

import pytest

from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import DeliveryError
from miyamoto.logic.persistence import (
    TASK_COLUMNS,
    RecordError,
    decode_task,
    encode_task,
)
from miyamoto.logic.task import Task

from .node_driver import NodeDriver, header


def durable_node(now_ms: int | None = None) -> NodeDriver:
    driver = NodeDriver() if now_ms is None else NodeDriver(now_ms=now_ms)
    driver.node.keep_changes()
    return driver


def changed_keys(driver: NodeDriver) -> set[tuple[str, str]]:
    changes = driver.node.take_changes()
    return set() if changes is None else changes.keys


def rows(driver: NodeDriver) -> list[tuple[object, ...]]:
    return [encode_task(t) for tasks in driver.node.tasks.store.by_queue() for t in tasks]


def test_a_node_in_memory_remembers_no_changes() -> None:
    driver = NodeDriver()
    assert driver.enqueue_json(url="http://h.example/w", id="a").status == 200
    assert driver.request("POST", "/q/_pause").status == 200
    assert driver.node.take_changes() is None


def test_every_change_of_a_copy_is_reported_once_and_reads_change_nothing() -> None:
    driver = durable_node()
    assert driver.enqueue_json(url="http://h.example/w", id="a").status == 200
    assert changed_keys(driver) == {("q", "a")}  # stored, and its delivery started (due now)
    assert driver.get("/q/a").status == 200
    assert driver.node.take_changes() is None
    (delivery,) = driver.advance(0)
    driver.fail(delivery, DeliveryError.REFUSED)
    assert changed_keys(driver) == {("q", "a")}  # retrying, its last error
    (delivery,) = driver.advance(60_000)
    driver.respond(delivery, 200)
    assert changed_keys(driver) == {("q", "a")}  # succeeded
    driver.advance(NodeConfig().retention_ms + 60_000)
    assert changed_keys(driver) == {("q", "a")}  # expired: the shell deletes the row
    assert driver.node.tasks.get("q", "a") is None


def test_pausing_and_resuming_a_queue_is_a_change() -> None:
    driver = durable_node()
    assert driver.request("POST", "/q/_pause").status == 200
    changes = driver.node.take_changes()
    assert changes is not None and changes.paused == {"q": True}
    assert driver.request("POST", "/q/_resume").status == 200
    changes = driver.node.take_changes()
    assert changes is not None and changes.paused == {"q": False}


def test_a_restored_node_carries_on_with_the_same_tasks_attempts_and_dead_letters() -> None:
    before = NodeDriver()
    url = "http://h.example/w"
    before.enqueue_json(url=url, id="dead", retry_limit=0)
    before.enqueue_json(url=url, id="done")
    before.enqueue_json(url=url, id="retrying", params={"x": "1"})
    before.enqueue_json(url=url, id="later", countdown=600)
    bodies = {}
    for delivery in before.advance(0):
        task_id = header(delivery, "x-task-id")
        bodies[task_id] = delivery.request.body
        before.respond(delivery, 200 if task_id == "done" else 503, b"busy")
    assert before.request("POST", "/paused/_pause").status == 200
    stored = rows(before)
    shown = {t: json.loads(before.get(f"/q/{t}").body) for t in ("dead", "done", "retrying")}

    after = durable_node(now_ms=before.now_ms)
    after.node.restore([decode_task(r) for r in stored], ["paused"], after.now_ms)
    assert after.node.take_changes() is None  # what was restored is on disk already
    for task_id, task in shown.items():
        assert json.loads(after.get(f"/q/{task_id}").body) == task
    failed = json.loads(after.get("/q?state=failed").body)
    assert [t["id"] for t in failed["tasks"]] == ["dead"]
    assert json.loads(after.get("/paused").body)["paused_on"] == [after.node.config.node_id]
    # The retry comes at its time, as the second attempt; the countdown one at its ETA.
    deliveries = after.advance(60_000)
    assert [header(d, "x-task-id") for d in deliveries] == ["retrying"]
    assert header(deliveries[0], "x-task-retry-count") == "1"
    assert deliveries[0].request.body == bodies["retrying"]
    assert [header(d, "x-task-id") for d in after.advance(600_000)] == ["later"]


def test_a_copy_being_delivered_is_stored_as_scheduled_to_be_attempted_again() -> None:
    driver = NodeDriver()
    driver.enqueue_json(url="http://h.example/w", id="a")
    (delivery,) = driver.advance(0)
    (row,) = rows(driver)
    restored = decode_task(row)
    assert restored.state.value == "scheduled" and restored.attempts == 0
    after = NodeDriver(now_ms=driver.now_ms)
    after.node.restore([restored], [], after.now_ms)
    (again,) = after.advance(0)
    assert again.request.body == delivery.request.body


def test_a_restored_copy_with_other_holders_asks_them_before_it_fires() -> None:
    driver = NodeDriver()
    driver.enqueue_json(url="http://h.example/w", id="a")
    task = decode_task(rows(driver)[0])
    task.holders = ((driver.node.config.node_id, 0), ("127.0.0.1:9999", 1))
    after = NodeDriver(now_ms=driver.now_ms)
    after.node.restore([task], [], after.now_ms)
    assert after.node.syncs._records["q", "a"].ask_when_due


def row_of(**changes: object) -> tuple[object, ...]:
    task = Task(id="a", queue="q", method="POST", url="http://h.example/w", headers=(),
                body=b"", eta_ms=1, created_ms=1)  # fmt: skip
    values = dict(zip(TASK_COLUMNS, encode_task(task), strict=True))
    values.update(changes)
    return tuple(values.values())


@pytest.mark.parametrize(
    ("column", "value", "complaint"),
    [
        ("state", "lost", "state: not a task state: 'lost'"),
        ("state", "delivering", "state: a copy is never stored as delivering"),
        ("attempts", -1, "attempts: expected an integer 0 or more"),
        ("body", "text", "body: expected a blob, found str"),
        ("headers", "[1]", "headers: not a list of [name, value] pairs"),
        ("holders", '[["nobody", 0]]', "holders: not a node id: 'nobody'"),
        ("retry", '{"retry_limit": "x"}', "retry.retry_limit: expected an integer"),
        ("state", "failed", "finished_ms: missing for a failed task"),
    ],
)
def test_every_damaged_task_column_is_named(column: str, value: object, complaint: str) -> None:
    with pytest.raises(RecordError) as raised:
        decode_task(row_of(**{column: value}))
    assert complaint in str(raised.value)
