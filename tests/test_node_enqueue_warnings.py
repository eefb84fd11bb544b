"""Enqueue replies warn of what the user did not ask for: JSON read under another content type,
and retry settings the queue narrowed."""

from __future__ import annotations

import json

from miyamoto.logic.node import NodeConfig
from miyamoto.logic.retry import RetryPolicy

from .node_driver import NodeDriver

URL = "http://hook.test/run"


def _driver() -> NodeDriver:
    policy = RetryPolicy(retry_limit=10, min_backoff_ms=1_000, max_backoff_ms=60_000)
    return NodeDriver(NodeConfig(retry=policy, delivery_deadline_ms=30_000))


def test_a_task_within_its_queue_gets_no_warnings() -> None:
    reply = _driver().enqueue_json(url=URL, retry_limit=3).json()
    assert reply["status"] == "scheduled"
    assert "warnings" not in reply


def test_retry_settings_beyond_the_queue_are_named_with_both_values() -> None:
    reply = _driver().enqueue_json(url=URL, retry_limit=50, max_backoff=600, deadline=90).json()
    assert reply["status"] == "scheduled"
    assert reply["warnings"] == [
        'retry_limit 50 was narrowed to 10 by queue "q"',
        'max_backoff 600 s was narrowed to 60 s by queue "q"',
        'deadline 90 s was narrowed to 30 s by queue "q"',
    ]


def test_json_sent_as_a_form_is_read_and_the_reply_says_so() -> None:
    body = json.dumps({"url": URL}).encode()
    reply = _driver().request("POST", "/q", body, "application/x-www-form-urlencoded")
    assert reply.json()["status"] == "scheduled"
    (warning,) = reply.json()["warnings"]
    assert "application/x-www-form-urlencoded" in warning


def test_a_batch_reply_warns_per_task() -> None:
    body = json.dumps([{"url": URL}, {"url": URL, "retry_limit": 99}]).encode()
    replies = _driver().request("POST", "/q", body, "application/json").json()
    assert [r["status"] for r in replies] == ["scheduled", "scheduled"]
    assert "warnings" not in replies[0]
    assert replies[1]["warnings"] == ['retry_limit 99 was narrowed to 10 by queue "q"']
