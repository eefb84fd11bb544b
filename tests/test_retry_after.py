"""Retry-After from a hostile webhook: parsed strictly, capped, and never able to freeze a task."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.delivery import RETRY_AFTER_MS_MAX, retry_after_ms
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.retry import RetryPolicy

from .node_driver import T0_MS, NodeDriver

URL = "http://127.0.0.1:9/hook"
HUGE = "9" * 4301  # int() refuses more than 4,300 digits


def wait_ms(value: str, status: int = 503) -> int | None:
    return retry_after_ms(status, (("Retry-After", value),), T0_MS)


@pytest.mark.parametrize("value", ["²", "٣", "1²", "-5", "1e3", "3.5", "soon", ""])
def test_values_that_are_not_ascii_seconds_or_a_date_are_ignored(value: str) -> None:
    assert wait_ms(value) is None


def test_ascii_seconds_are_read_and_capped() -> None:
    assert wait_ms("30") == 30_000
    assert wait_ms(" 7 ") == 7_000
    assert wait_ms("100000") == RETRY_AFTER_MS_MAX
    assert wait_ms(HUGE) == RETRY_AFTER_MS_MAX
    assert retry_after_ms(503, (("retry-after", "100"),), T0_MS, cap_ms=5_000) == 5_000


def test_http_dates_are_read_and_capped() -> None:
    assert wait_ms("Tue, 14 Nov 2023 22:13:50 GMT") == 30_000  # T0 is 22:13:20 GMT
    assert wait_ms("Sun, 06 Nov 1994 08:49:37 GMT") == 0  # in the past: no wait
    assert wait_ms("Fri, 31 Dec 9999 23:59:59 GMT") == RETRY_AFTER_MS_MAX
    assert wait_ms("Tue, 14 Nov 2023 22:13:50") is None  # no zone: not an HTTP-date


def test_only_429_and_503_ask_to_wait() -> None:
    assert wait_ms("30", status=500) is None
    assert wait_ms("30", status=429) == 30_000


@given(st.text(max_size=80))
def test_no_value_raises(value: str) -> None:
    result = wait_ms(value)
    assert result is None or 0 <= result <= RETRY_AFTER_MS_MAX


@pytest.mark.parametrize("value", ["²", HUGE, "Fri, 31 Dec 9999 23:59:59 GMT", "nonsense"])
def test_a_hostile_retry_after_leaves_the_task_retrying_not_stuck_delivering(value: str) -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(min_backoff_ms=100)))
    task_id = d.enqueue_form(task_url=URL).json()["id"]
    (first,) = d.advance(0)
    d.respond(first, 503, b"busy", retry_after=value)
    task = d.get(f"/q/{task_id}").json()
    assert (task["state"], task["attempts"]) == ("retrying", 1)
    # Tried again within the cap, never later.
    (second,) = d.advance(RETRY_AFTER_MS_MAX)
    assert second.request.target == "/hook"


def test_a_retry_after_of_27_hours_is_capped() -> None:
    d = NodeDriver(NodeConfig(retry=RetryPolicy(min_backoff_ms=100)))
    d.enqueue_form(task_url=URL)
    d.enqueue_form(task_url=URL, task_countdown="1")
    (first,) = d.advance(0)
    d.respond(first, 503, retry_after="100000")
    assert d.advance(RETRY_AFTER_MS_MAX - 1) == []
    assert len(d.advance(1)) == 2  # the hold on the destination ends at the cap too
