"""The task counts in /_metrics come from the node's `TaskOutcome` on each response, not from
the reply's JSON: a change of the reply's formatting cannot make them lie."""

from __future__ import annotations

import json
import random

from miyamoto.io.metrics import NodeMetrics
from miyamoto.io.ops_endpoints import ApiFront
from miyamoto.logic.api_outcome import TaskOutcome
from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.node import Node, NodeConfig

from .node_driver import NodeDriver

URL = "http://receiver:9000/work"
JSON = "application/json"


def test_the_node_says_what_an_enqueue_a_batch_and_a_cancel_did() -> None:
    d = NodeDriver()
    first = d.enqueue_json("emails", url=URL, id="job-1", countdown=60)
    assert first.outcome == TaskOutcome(queue="emails", enqueued=1)
    again = d.enqueue_json("emails", url=URL, id="job-1", countdown=60)
    assert again.outcome == TaskOutcome(queue="emails", duplicates=1)
    batch = [{"url": URL, "id": "job-1"}, {"url": URL}, {"url": "ftp://nope"}]
    mixed = d.request("POST", "/emails", json.dumps(batch).encode(), JSON)
    assert [r["status"] for r in mixed.json()] == ["duplicate", "scheduled", "error"]
    assert mixed.outcome == TaskOutcome(queue="emails", enqueued=1, duplicates=1)
    refused = d.enqueue_json("emails", url="ftp://nope")
    assert (refused.status, refused.outcome) == (400, None)
    cancel = d.request("DELETE", "/emails/job-1")
    assert cancel.outcome == TaskOutcome(queue="emails", cancelled=1)
    deleted_dead_letter = d.request("DELETE", "/emails/never-was")
    assert (deleted_dead_letter.status, deleted_dead_letter.outcome) == (404, None)
    assert d.get("/emails").outcome is None


def front_answering(response: HttpResponse) -> tuple[ApiFront, NodeMetrics]:
    node = Node(NodeConfig(node_id="127.0.0.1:1"), random.Random(1), 0)
    metrics = NodeMetrics(node, clock_ms=lambda: 0, process=False)
    front = ApiFront(
        lambda request: response, view=node.membership.view, metrics=metrics, access_log_on=False
    )
    return front, metrics


def test_the_counts_follow_the_outcome_whatever_the_json_looks_like() -> None:
    compact = b'[{"status":"scheduled","id":"a"},{"status":"duplicate","id":"b"}]'
    outcome = TaskOutcome(queue="emails", enqueued=1, duplicates=1)
    front, metrics = front_answering(HttpResponse(status=200, body=compact, outcome=outcome))
    front(HttpRequest(method="POST", target="/emails", body=b"[]"))
    assert metrics.tasks["enqueued"] == {"emails": 1}
    assert metrics.tasks["duplicates"] == {"emails": 1}


def test_a_reply_that_only_looks_like_an_enqueue_counts_nothing() -> None:
    body = b'{"status": "scheduled", "id": "a"}'  # e.g. a re-run's answer
    front, metrics = front_answering(HttpResponse(status=200, body=body))
    front(HttpRequest(method="POST", target="/emails"))
    assert metrics.tasks["enqueued"] == {}
