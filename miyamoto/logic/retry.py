"""Retry policy with App Engine's meaning of its knobs.

The interval before retry n (n = 0 for the first retry) doubles `max_doublings` times starting
from `min_backoff`, then grows linearly by the last doubled interval, and never exceeds
`max_backoff`. With min 10 s, max 300 s, 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300, ...
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    retry_limit: int = 10
    """Retries after the first attempt; 0 means a task is tried once. -1 means no limit."""
    age_limit_ms: int = 0
    """A task older than this (since its first attempt) is not retried; 0 means no limit."""
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 600_000
    max_doublings: int = 16

    def __post_init__(self) -> None:
        assert self.retry_limit >= -1, self.retry_limit
        assert self.age_limit_ms >= 0, self.age_limit_ms
        assert 0 <= self.min_backoff_ms <= self.max_backoff_ms, (
            self.min_backoff_ms,
            self.max_backoff_ms,
        )
        assert self.max_doublings >= 0, self.max_doublings

    def backoff_ms(self, retry_number: int) -> int:
        """How long to wait before retry `retry_number` (0-based)."""
        assert retry_number >= 0, retry_number
        doublings = min(retry_number, self.max_doublings)
        interval = self.min_backoff_ms << doublings
        if retry_number > self.max_doublings:
            interval *= retry_number - self.max_doublings + 1
        return min(interval, self.max_backoff_ms)

    def may_retry(self, retries_done: int, first_attempt_ms: int, now_ms: int) -> bool:
        """Whether a task that has already been retried `retries_done` times may be retried.

        As in App Engine: with both a retry limit and an age limit, retries stop only once
        both are passed; with one of them, once it is passed; with neither, never.
        """
        count_spent = self.retry_limit != -1 and retries_done >= self.retry_limit
        age_spent = bool(self.age_limit_ms) and now_ms - first_attempt_ms >= self.age_limit_ms
        if self.retry_limit != -1 and self.age_limit_ms:
            return not (count_spent and age_spent)
        return not (count_spent or age_spent)
