"""Hostile webhook answers, fed to a real Node in any order: nothing raises, no task freezes.

Hypothesis draws statuses, header lists (Retry-After in every shape: non-ASCII digits, huge
numbers, dates, junk), bodies and transport failures, answers the node's deliveries with them in
a drawn order with drawn pauses, and checks after every step that each task is `delivering`
exactly while one of its deliveries is unanswered. At the end every task, answered 200 from then
on, must finish: a task stuck in `delivering` or `retrying` forever is a frozen task.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from miyamoto.logic.actions import StartDelivery
from miyamoto.logic.delivery import RETRY_AFTER_MS_MAX
from miyamoto.logic.events import DeliveryError
from miyamoto.logic.membership import ClusterTiming
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.retry import RetryPolicy

from .node_driver import NodeDriver

EXAMPLES = int(os.environ.get("MIYAMOTO_FUZZ_EXAMPLES", "60"))
"""60 in CI (a few seconds); `MIYAMOTO_FUZZ_EXAMPLES=2000` for a longer run."""

retry_after_values = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789\u00b2\u00b3\u0663\u06f5\u07c2", min_size=1, max_size=20),
    st.integers(min_value=0, max_value=10**30).map(str),
    st.just("9" * 4301),
    st.sampled_from(
        ["Fri, 31 Dec 9999 23:59:59 GMT", "Sun, 06 Nov 1994 08:49:37 GMT", "Tue, 14 Nov 2023"]
    ),
)
header_names = st.sampled_from(["Retry-After", "retry-after", "Content-Type", "X-Junk", "Location"])
headers = st.lists(st.tuples(header_names, retry_after_values), max_size=4).map(tuple)
answers = st.one_of(
    st.tuples(
        st.sampled_from([200, 204, 301, 400, 404, 429, 500, 503, 599]) | st.integers(100, 599),
        headers,
        st.binary(max_size=64),
    ),
    st.sampled_from(list(DeliveryError)),
)

SLOW_HEARTBEATS = ClusterTiming(
    heartbeat_interval_ms=60_000,
    election_timeout_min_ms=120_000,
    election_timeout_max_ms=120_000,
    member_timeout_ms=240_000,
)
"""A lone node's heartbeat timer would otherwise fire 3,000 times in each long pause."""

PAUSES_MS = st.one_of(st.integers(0, 2_000), st.sampled_from([RETRY_AFTER_MS_MAX, 700_000]))
"""Mostly within the backoffs; sometimes past the longest Retry-After wait."""

URLS = ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b", "http://[::1]:9/c"]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.data())
def test_any_webhook_answers_in_any_order_leave_no_task_frozen(data: st.DataObject) -> None:
    retry = RetryPolicy(retry_limit=3, min_backoff_ms=10, max_backoff_ms=1_000)
    # Finished tasks stay visible for the whole run (the pauses add up to hours).
    d = NodeDriver(
        NodeConfig(retry=retry, retention_ms=30 * 24 * 3600 * 1000, timing=SLOW_HEARTBEATS)
    )
    ids = [
        (queue, d.enqueue_form(queue, task_url=url).json()["id"])
        for queue, url in zip(["q1", "q2", "q1"], URLS, strict=True)
    ]
    outstanding: list[StartDelivery] = []
    for _ in range(data.draw(st.integers(1, 25), label="steps")):
        outstanding += d.advance(data.draw(PAUSES_MS, label="pause ms"))
        if not outstanding:
            continue
        index = data.draw(st.integers(0, len(outstanding) - 1), label="which delivery")
        delivery = outstanding.pop(index)
        answer = data.draw(answers, label="answer")
        if isinstance(answer, DeliveryError):
            d.fail(delivery, answer)
        else:
            status, answer_headers, body = answer
            d.respond_with_headers(delivery, status, answer_headers, body)
        _check_delivering_matches_outstanding(d, ids, outstanding)
    # From now on every receiver answers 200: every task must end.
    for _ in range(retry.retry_limit + 2):  # each round ends one attempt of every task
        for delivery in outstanding:
            d.respond_with_headers(delivery, 200, (), b"")
        outstanding = d.advance(RETRY_AFTER_MS_MAX + 1)
    states = {d.get(f"/{queue}/{task_id}").json()["state"] for queue, task_id in ids}
    assert states <= {"succeeded", "failed"}, states


def _check_delivering_matches_outstanding(
    d: NodeDriver, ids: list[tuple[str, str]], outstanding: list[StartDelivery]
) -> None:
    in_flight = {header_value(delivery, "X-Task-Id") for delivery in outstanding}
    for queue, task_id in ids:
        state = d.get(f"/{queue}/{task_id}").json()["state"]
        assert (state == "delivering") == (task_id in in_flight), (task_id, state)


def header_value(delivery: StartDelivery, name: str) -> str:
    return next(v for k, v in delivery.request.headers if k == name)
