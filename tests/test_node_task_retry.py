"""GET of a task shows the retry policy really in force: its own settings narrowed by its queue."""

from __future__ import annotations

from miyamoto.logic.node import NodeConfig
from miyamoto.logic.retry import RetryPolicy

from .node_driver import NodeDriver

URL = "http://hook.test/run"
QUEUE_POLICY = RetryPolicy(
    retry_limit=10, age_limit_ms=0, min_backoff_ms=1_000, max_backoff_ms=60_000, max_doublings=4
)


def _driver() -> NodeDriver:
    return NodeDriver(NodeConfig(retry=QUEUE_POLICY, delivery_deadline_ms=30_000))


def test_a_task_without_settings_shows_its_queues_policy_in_seconds() -> None:
    d = _driver()
    task_id = d.enqueue_json(url=URL).json()["id"]
    assert d.get(f"/q/{task_id}").json()["retry"] == {
        "retry_limit": 10,
        "age_limit": 0,
        "min_backoff": 1,
        "max_backoff": 60,
        "max_doublings": 4,
        "deadline": 30,
    }


def test_a_task_asking_for_more_than_its_queue_allows_shows_the_narrowed_policy() -> None:
    d = _driver()
    asked = {"retry_limit": 50, "min_backoff": 0.5, "max_backoff": 600, "deadline": 90}
    task_id = d.enqueue_json(url=URL, **asked).json()["id"]
    retry = d.get(f"/q/{task_id}").json()["retry"]
    assert (retry["retry_limit"], retry["min_backoff"]) == (10, 1)
    assert (retry["max_backoff"], retry["deadline"]) == (60, 30)


def test_settings_within_the_queue_are_shown_as_asked() -> None:
    d = _driver()
    asked = {"retry_limit": 2, "min_backoff": 2.5, "max_backoff": 5, "max_doublings": 1}
    task_id = d.enqueue_json(url=URL, deadline=1.5, **asked).json()["id"]
    retry = d.get(f"/q/{task_id}").json()["retry"]
    assert {k: retry[k] for k in asked} == asked
    assert retry["deadline"] == 1.5


def test_a_listed_task_shows_its_retry_policy_too() -> None:
    d = _driver()
    d.enqueue_json(url=URL, retry_limit=3, countdown=60)
    (listed,) = d.get("/q?state=scheduled").json()["tasks"]
    assert listed["retry"]["retry_limit"] == 3
