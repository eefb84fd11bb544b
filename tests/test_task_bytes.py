"""The byte budget beside the task count (`Limits.task_bytes_max`, `--max-task-bytes`): an
enqueue that would pass it gets 507 naming the limit; what a task holds is freed when it
finishes, is purged, deleted or expires, exactly as the count is; a peer's copy over the budget
is refused like one over the count."""

from __future__ import annotations

from dataclasses import replace

import pytest

from miyamoto.logic.limits import Limits
from miyamoto.logic.local_tasks import RECOUNT_EVERY, task_bytes
from miyamoto.logic.node import NodeConfig

from .cluster_driver import Cluster
from .node_driver import NodeDriver

URL = "http://localhost:9099/worker"
BUDGET_BYTES = 10_000
BODY = "x" * 3000
DAY_S = 24 * 3600


def _driver(**config: object) -> NodeDriver:
    limits = replace(Limits(), task_bytes_max=BUDGET_BYTES)
    return NodeDriver(NodeConfig(limits=limits, **config))  # type: ignore[arg-type]


def _enqueue(d: NodeDriver, countdown_s: int = DAY_S) -> tuple[int, dict[str, object]]:
    reply = d.enqueue_form(task_url=URL, task_countdown=str(countdown_s), payload=BODY)
    return reply.status, reply.json()


def test_the_enqueue_that_would_pass_the_byte_budget_gets_507_naming_it() -> None:
    d = _driver()
    for _ in range(3):  # ~3,000 bytes each (body, its content type, the URL)
        status, answer = _enqueue(d)
        assert status == 200, answer
    status, answer = _enqueue(d)
    assert status == 507
    assert answer["status"] == "error"
    assert f"{BUDGET_BYTES} bytes" in str(answer["error"])
    assert len(d.node.tasks) == 3  # nothing of the refused task is kept


def test_a_cancelled_task_frees_its_bytes_so_the_next_enqueue_fits() -> None:
    d = _driver()
    ids = [str(_enqueue(d)[1]["id"]) for _ in range(3)]
    assert _enqueue(d)[0] == 507
    assert d.request("DELETE", f"/q/{ids[0]}").status == 200
    assert _enqueue(d)[0] == 200


def test_a_purge_frees_every_byte_of_the_queue() -> None:
    d = _driver()
    for _ in range(3):
        _enqueue(d)
    assert d.node.tasks.payload_bytes > 9000
    assert d.request("POST", "/q/_purge").status == 200
    assert d.node.tasks.payload_bytes == 0
    assert _enqueue(d)[0] == 200


def test_a_task_that_succeeds_frees_its_body_at_once_and_the_rest_when_it_expires() -> None:
    d = _driver(retention_ms=60_000)
    for _ in range(3):
        _enqueue(d, countdown_s=0)
    assert _enqueue(d, countdown_s=0)[0] == 507
    deliveries = d.advance(0)
    assert len(deliveries) == 3
    for delivery in deliveries:
        d.respond(delivery, 200)
    # The succeeded tasks are kept for the retention window (GET shows them) without bodies.
    assert 0 < d.node.tasks.payload_bytes < 3 * len(URL) + 1
    status, answer = _enqueue(d)
    assert status == 200
    d.advance(61_000)
    assert len(d.node.tasks) == 1  # the succeeded ones expired: only the new task is left
    task = d.node.tasks.get("q", str(answer["id"]))
    assert task is not None and d.node.tasks.payload_bytes == task_bytes(task) > 3000


def test_a_dead_letter_keeps_its_body_and_bytes_until_deleted() -> None:
    d = _driver()
    task_id = d.enqueue_json(url=URL, params={"p": BODY}, retry_limit=0).json()["id"]
    (delivery,) = d.advance(0)
    d.respond(delivery, 500)
    held = d.node.tasks.payload_bytes
    assert held > 3000  # a dead letter can be re-run: its body stays
    assert d.request("DELETE", f"/q/{task_id}").status == 200
    assert d.node.tasks.payload_bytes == 0


def test_a_peer_over_its_byte_budget_refuses_the_copy_and_the_enqueue_gets_507() -> None:
    cluster = Cluster(["a:1", "b:1"], NodeConfig(replicas=2))
    small = replace(Limits(), task_bytes_max=BUDGET_BYTES)
    cluster.nodes["b:1"].core.config = replace(cluster.nodes["b:1"].config, limits=small)
    body = {"url": URL, "params": {"p": "y" * 20_000}}
    answer = cluster.call("a:1", "POST", "/q", body)
    assert answer.status == 507
    assert "stored 1 of 2 copies: a holder is full" in answer.json()["error"]
    assert cluster.nodes["b:1"].tasks.payload_bytes == 0
    # A task within b's budget is stored on both.
    assert cluster.call("a:1", "POST", "/q", {"url": URL}).json()["replicas"] == 2


def test_the_invariant_check_finds_a_byte_total_that_drifted_from_the_copies() -> None:
    d = _driver()
    _enqueue(d)
    d.node.tasks.payload_bytes += 1  # as a missed release would leave it
    with pytest.raises(AssertionError):
        for _ in range(RECOUNT_EVERY):
            d.node.check_invariants()
