"""`GET /{queue}?state=...` in pages: `limit` and `cursor` in, `next_cursor` out (null at the
end); each task once, in (ETA, id) order, whichever member answers each page."""

from __future__ import annotations

import random
from typing import Any

from miyamoto.logic.listing import cursor_text, member_page, merged_page
from miyamoto.logic.listing_index import ListingIndex, listing_key
from miyamoto.logic.local_tasks import LocalTasks
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.task import Task, TaskState

from .cluster_driver import Cluster
from .node_driver import NodeDriver

URL = "http://localhost:9099/worker"
NODES = ["a:1", "b:1", "c:1"]


def _walk(cluster: Cluster, limit: int) -> list[dict[str, Any]]:
    """Every page of the scheduled tasks, asking each node in turn."""
    listed: list[dict[str, Any]] = []
    cursor = None
    for page in range(10_000):
        target = f"/q?state=scheduled&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        answer = cluster.call(NODES[page % len(NODES)], "GET", target)
        assert answer.status == 200, answer.json()
        body = answer.json()
        assert len(body["tasks"]) <= limit
        listed.extend(body["tasks"])
        cursor = body["next_cursor"]
        if cursor is None:
            return listed
    raise AssertionError("the pages never ended")


def test_2500_tasks_walked_page_by_page_across_members_are_each_listed_once_in_order() -> None:
    cluster = Cluster(NODES, NodeConfig(replicas=2))
    rng = random.Random(3)
    enqueued: set[str] = set()
    for batch in range(25):  # batches of 100: the invariant check is quadratic in a batch
        # Few distinct ETAs: many tasks share one, so the id must order them.
        tasks = [{"url": URL, "countdown": rng.randrange(1, 40) * 60} for _ in range(100)]
        answer = cluster.call(NODES[batch % 3], "POST", "/q", tasks)
        assert all(t["status"] == "scheduled" for t in answer.json()), answer.json()[:3]
        enqueued.update(t["id"] for t in answer.json())
    listed = _walk(cluster, limit=100)
    ids = [t["id"] for t in listed]
    assert len(ids) == len(set(ids)) == 2500
    assert set(ids) == enqueued
    assert [(t["eta"], t["id"]) for t in listed] == sorted((t["eta"], t["id"]) for t in listed)


def test_the_last_page_has_no_cursor_and_a_short_queue_fits_one_page() -> None:
    d = NodeDriver()
    for _ in range(3):
        assert d.enqueue_form(task_url=URL, task_countdown="60").status == 200
    body = d.get("/q?state=scheduled").json()
    assert len(body["tasks"]) == 3 and body["next_cursor"] is None
    first = d.get("/q?state=scheduled&limit=2").json()
    assert len(first["tasks"]) == 2 and first["next_cursor"] is not None
    rest = d.get(f"/q?state=scheduled&limit=2&cursor={first['next_cursor']}").json()
    assert len(rest["tasks"]) == 1 and rest["next_cursor"] is None
    assert {t["id"] for t in first["tasks"] + rest["tasks"]} == {t["id"] for t in body["tasks"]}


def test_a_bad_limit_or_cursor_gets_400_saying_what_is_allowed() -> None:
    d = NodeDriver()
    for target, expected in [
        ("/q?state=failed&limit=0", "limit must be a whole number from 1 to 1000"),
        ("/q?state=failed&limit=1001", "from 1 to 1000 (default 100)"),
        ("/q?state=failed&limit=" + "9" * 5000, "limit must be a whole number"),
        ("/q?state=failed&cursor=%25%25", "cursor must be the next_cursor of an earlier answer"),
        ("/q?state=failed&cursor=" + cursor_text((5, "a")) + "x", "up to "),
        ("/q?state=failed&cursor=" + "A" * 5000, "characters"),
        ("/q?state=failed&page=2", "use state, limit and cursor"),
    ]:
        answer = d.get(target)
        assert answer.status == 400, target
        assert answer.json()["status"] == "error"
        assert expected in answer.json()["error"], (target, answer.json())


def _task(n: int, state: TaskState, eta_ms: int | None = None) -> Task:
    eta_ms = 1000 * (n // 3) if eta_ms is None else eta_ms
    task = Task(id=f"t{n:05d}", queue="q", method="POST", url=URL, headers=(), body=b"",
                eta_ms=eta_ms, created_ms=0)  # fmt: skip
    task.state = state
    return task


def test_a_page_of_a_rare_state_stops_after_its_scan_budget_and_the_cursor_goes_on() -> None:
    tasks = LocalTasks(retention_ms=0)
    for n in range(100):
        tasks.add(_task(n, TaskState.FAILED if n in (7, 60, 99) else TaskState.SCHEDULED))
    found: list[str] = []
    after = None
    pages = 0
    while True:
        page, complete_to = member_page(tasks, "q", TaskState.FAILED, after, 10, scan_max=20)
        pages += 1
        found += [t.id for t in page]
        if complete_to is None:
            break
        after = complete_to
    assert found == ["t00007", "t00060", "t00099"]
    assert pages == 5  # 100 copies looked at 20 a page


def test_merging_keeps_only_what_every_member_has_covered() -> None:
    def item(eta_s: int, task_id: str) -> dict[str, Any]:
        return {"eta": eta_s, "id": task_id}

    # Member one listed up to (3 s, "c") and has more; member two reached its end.
    one = ([item(1, "a"), item(3, "c")], (3000, "c"))
    two = ([item(2, "b"), item(4, "d"), item(5, "e")], None)
    listed, cursor = merged_page([one, two], limit=10)
    assert [t["id"] for t in listed] == ["a", "b", "c"]  # "d" may have a predecessor on one
    assert cursor == cursor_text((3000, "c"))
    listed, cursor = merged_page([one, two], limit=2)
    assert [t["id"] for t in listed] == ["a", "b"] and cursor == cursor_text((2000, "b"))
    listed, cursor = merged_page([two], limit=10)
    assert [t["id"] for t in listed] == ["b", "d", "e"] and cursor is None


def test_the_index_lists_exactly_the_live_tasks_in_order_after_any_key() -> None:
    # Adds (at the end and in the middle) and removals, across block splits and emptied blocks.
    rng = random.Random(5)
    index = ListingIndex()
    live: list[Task] = []
    for step in range(6000):
        if live and rng.random() < 0.4:
            index.remove(live.pop(rng.randrange(len(live))))
        else:
            eta_ms = rng.choice([rng.randrange(100), 10**6 + step])
            live.append(_task(step, TaskState.SCHEDULED, eta_ms=eta_ms))
            index.add(live[-1])
        if step % 499 == 0:
            ordered = sorted(live, key=listing_key)
            assert list(index.after("q", None)) == ordered
            key = listing_key(rng.choice(live))
            assert list(index.after("q", key)) == [t for t in ordered if listing_key(t) > key]
    assert len(index) == len(live)
