"""Queues that behave: rates, concurrency caps, retry policy, dead letters, pause and purge."""

from __future__ import annotations

from dataclasses import replace

from miyamoto.logic.config import NodeConfig
from miyamoto.logic.limits import Limits
from miyamoto.logic.queue_config import QueueConfig, QueuesConfig
from miyamoto.logic.retry import RetryPolicy

from .cluster_driver import Cluster
from .node_driver import T0_MS, NodeDriver, header

URL = "http://receiver:9000/work"


def queues(**settings: QueueConfig) -> QueuesConfig:
    return QueuesConfig(default=QueueConfig(), queues=tuple(sorted(settings.items())))


def test_a_rate_of_10_per_second_with_bucket_1_spreads_50_due_tasks_over_5_seconds() -> None:
    d = NodeDriver(NodeConfig(queues=queues(q=QueueConfig(rate_per_s=10, bucket_size=1))))
    for _ in range(50):
        d.enqueue_form(task_url=URL, task_countdown="1")
    started: list[int] = []
    while len(started) < 50:
        for delivery in d.advance(10):
            started.append(d.now_ms)
            d.respond(delivery, 200)
    assert started[-1] - started[0] >= 4_500
    for i in range(len(started)):
        window = [t for t in started if started[i] <= t < started[i] + 1000]
        assert len(window) <= 10 + 1  # rate x 1 s + the bucket


def test_max_concurrent_2_keeps_at_most_two_deliveries_in_flight() -> None:
    d = NodeDriver(NodeConfig(queues=queues(q=QueueConfig(max_concurrent=2))))
    for _ in range(6):
        d.enqueue_form(task_url=URL)
    in_flight = d.advance(0)
    assert len(in_flight) == 2
    done = 0
    while done < 6:
        d.advance(3_000)  # a slow receiver
        finished = in_flight.pop(0)
        d.respond(finished, 200)
        done += 1
        in_flight += d.advance(0)
        assert len(in_flight) <= 2
    assert len(d.deliveries) == 6


def test_500_500_200_means_three_attempts_with_growing_gaps_and_counting_headers() -> None:
    policy = RetryPolicy(min_backoff_ms=1_000, max_backoff_ms=60_000)
    d = NodeDriver(NodeConfig(retry=policy))
    d.enqueue_form(task_url=URL)
    times, counts = [], []
    for status in (500, 500, 200):
        started = d.advance(0)
        while not started:
            started = d.advance(100)
        (delivery,) = started
        times.append(d.now_ms)
        counts.append(header(delivery, "x-task-retry-count"))
        d.respond(delivery, status)
    assert counts == ["0", "1", "2"]
    assert times[1] - times[0] < times[2] - times[1]


def test_a_spent_retry_limit_lists_the_task_as_failed_and_a_rerun_delivers_it() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(retry_limit=1, min_backoff_ms=100)))
    task_id = d.enqueue_form(task_url=URL, task_id="job-1").json()["id"]
    for _ in range(2):
        (delivery,) = d.advance(100)
        d.respond(delivery, 500, b"boom")
    listing = d.get("/q?state=failed").json()
    assert [t["id"] for t in listing["tasks"]] == [task_id]
    assert listing["counts"]["failed"] == 1
    assert listing["tasks"][0]["last_response"] == "boom"
    rerun = d.request("POST", f"/q/{task_id}/rerun")
    assert (rerun.status, rerun.json()["status"]) == (200, "scheduled")
    (again,) = d.advance(0)
    assert header(again, "x-task-id") == task_id
    d.respond(again, 200)
    assert d.get(f"/q/{task_id}").json()["state"] == "succeeded"
    assert d.request("POST", f"/q/{task_id}/rerun").status == 409


def test_a_dead_letter_can_be_deleted() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(retry_limit=0)))
    task_id = d.enqueue_form(task_url=URL).json()["id"]
    (delivery,) = d.advance(0)
    d.respond(delivery, 500)
    reply = d.request("DELETE", f"/q/{task_id}")
    assert (reply.status, reply.json()["status"]) == (200, "deleted")
    assert d.get(f"/q/{task_id}").status == 404
    assert d.get("/q").json()["counts"]["failed"] == 0


def test_retry_after_holds_back_every_task_for_that_destination() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(min_backoff_ms=100)))
    d.enqueue_form(task_url=URL)
    (first,) = d.advance(0)
    d.respond(first, 429, retry_after="20")
    d.enqueue_form(task_url=URL)  # same destination, due now
    d.enqueue_form(task_url="http://elsewhere:9000/x")
    started = d.advance(19_999)
    assert [s.request.host for s in started] == ["elsewhere"]
    assert len(d.advance(1)) == 2


def test_paused_queue_delivers_nothing_until_resumed_and_purge_empties_it() -> None:
    d = NodeDriver()
    assert d.request("POST", "/q/_pause").json()["status"] == "paused"
    d.enqueue_form(task_url=URL)
    d.enqueue_form(task_url=URL, task_countdown="5")
    assert d.advance(10_000) == []
    assert d.get("/q").json()["paused_on"] == [d.node.config.node_id]
    assert d.request("POST", "/q/_resume").json()["status"] == "resumed"
    assert len(d.advance(0)) == 2
    d.enqueue_form(task_url=URL, task_countdown="60")
    purged = d.request("POST", "/q/_purge").json()
    assert purged["status"] == "purged"
    assert purged["copies_deleted"] == 3
    assert d.advance(120_000) == []
    assert sum(d.get("/q").json()["counts"].values()) == 0


def test_queue_info_shows_counts_oldest_eta_attempts_and_rate() -> None:
    d = NodeDriver(NodeConfig(queues=queues(q=QueueConfig(rate_per_s=2, bucket_size=1))))
    for countdown in (3, 1, 2):
        d.enqueue_form(task_url=URL, task_countdown=str(countdown))
    info = d.get("/q").json()
    assert info["counts"]["scheduled"] == 3
    assert info["oldest_eta"] == (T0_MS + 1_000) / 1000
    assert info["rate_per_s"] == 2
    for delivery in d.advance(1_000):
        d.respond(delivery, 200)
    assert d.get("/q").json()["attempts_last_minute"] == 1


def test_a_task_cannot_retry_more_than_its_queue_allows() -> None:
    policy = RetryPolicy(retry_limit=1, min_backoff_ms=10)
    d = NodeDriver(NodeConfig(queues=queues(q=QueueConfig(retry=policy))))
    task_id = d.enqueue_form(task_url=URL, task_retry_limit="5").json()["id"]
    for _ in range(2):
        (delivery,) = d.advance(10)
        d.respond(delivery, 500)
    assert d.advance(60_000) == []
    assert d.get(f"/q/{task_id}").json()["state"] == "failed"


def test_bad_listing_queries_are_refused() -> None:
    d = NodeDriver()
    assert d.get("/q?state=nonsense").status == 400
    assert "1000" in d.get("/q?state=failed&limit=5000").json()["error"]
    assert d.get("/q?colour=red").status == 400


def test_a_cluster_splits_a_queue_rate_between_its_members() -> None:
    config = NodeConfig(queues=queues(q=QueueConfig(rate_per_s=9, bucket_size=3)))
    cluster = Cluster(["a:1", "b:1", "c:1"], config)
    info = cluster.call("a:1", "GET", "/q").json()
    assert info["rate_per_s"] == 9
    shares = [node.queues.get("q", cluster.now_ms).rate_share for node in cluster.nodes.values()]
    assert shares == [3, 3, 3]


def test_a_task_waiting_for_a_slot_holds_its_other_copies_back() -> None:
    # Found by the benchmark: copies fired while their first copy waited behind a backlog.
    limits = replace(Limits(), deliveries_in_flight_max=1)
    cluster = Cluster(["a:1", "b:1"], NodeConfig(limits=limits, claim_lease_ms=3_000))
    for _ in range(2):
        cluster.call("a:1", "POST", "/q", {"url": URL})
    first = cluster.deliveries[0]
    cluster.advance(20_000)  # the receiver is slow: the other task waits for the slot
    waiting = [d for d in cluster.deliveries if d.node == first.node]
    assert len(cluster.deliveries) == len(waiting)


def test_active_queue_names_are_bounded_and_idle_ones_forgotten() -> None:
    d = NodeDriver(NodeConfig(limits=replace(Limits(), active_queues_max=2)))
    assert d.enqueue_form("a", task_url=URL, task_countdown="60").status == 200
    assert d.enqueue_form("b", task_url=URL, task_countdown="60").status == 200
    full = d.enqueue_form("c", task_url=URL)
    assert full.status == 507
    assert "2 active queues" in full.json()["error"]
    d.request("POST", "/b/_purge")
    assert d.enqueue_form("c", task_url=URL, task_countdown="60").status == 200
