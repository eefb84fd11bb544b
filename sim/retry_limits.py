"""The retry_limits scenario's queues: finite retry budgets, and the check that a task is given
up on (a dead letter, state "failed") exactly when its queue's policy says.

Each queue of the workload (q0, q1, q2) gets a finite policy: a retry limit, an age limit, or
both (App Engine: with both, retries stop once both are passed). Receivers fail often, so many
tasks run out of budget. From a task's attempts in true time (the scenario has no clock skew,
so the nodes' clocks read true time) the checker replays the policy: after a failed attempt
`i` (0-based), heard at `ended_ms`, the task may be retried iff
`policy.may_retry(i, first attempt's start, ended_ms)`. An attempt after the policy said stop
is a violation; so is a task the policy gave up on that no node shows as failed, and one it did
not give up on that was never delivered (the ordinary `lost`).
"""

from __future__ import annotations

from collections.abc import Mapping

from miyamoto.logic.queue_config import QueueConfig, QueuesConfig
from miyamoto.logic.retry import RetryPolicy

from .history import DeliveryRecord

RETRY_POLICIES: Mapping[str, RetryPolicy] = {
    "q0": RetryPolicy(retry_limit=2, min_backoff_ms=200, max_backoff_ms=1_000, max_doublings=2),
    "q1": RetryPolicy(
        retry_limit=-1,
        age_limit_ms=3_000,
        min_backoff_ms=300,
        max_backoff_ms=1_000,
        max_doublings=2,
    ),
    "q2": RetryPolicy(
        retry_limit=1,
        age_limit_ms=2_000,
        min_backoff_ms=500,
        max_backoff_ms=2_000,
        max_doublings=1,
    ),
}
"""q0: three attempts; q1: retries for 3 s after the first attempt; q2: both must be spent."""


def queues_config(default: QueueConfig) -> QueuesConfig:
    named = tuple(
        (name, QueueConfig(retry=policy, delivery_deadline_ms=default.delivery_deadline_ms))
        for name, policy in RETRY_POLICIES.items()
    )
    return QueuesConfig(default=default, queues=named)


def answered_ok(delivery: DeliveryRecord) -> bool:
    """Whether the node that started the attempt heard a 2xx (its own idea of success)."""
    status = delivery.answered_status
    return status is not None and 200 <= status < 300


def replay(policy: RetryPolicy, attempts: list[DeliveryRecord]) -> tuple[bool, str | None]:
    """(whether the policy gave the task up after these attempts, what broke it or None).
    `attempts` are the task's delivery attempts in the order they started."""
    if not attempts:
        return False, None
    first_ms = attempts[0].time_ms
    for i, attempt in enumerate(attempts):
        if answered_ok(attempt):
            return False, None
        assert attempt.ended_ms is not None
        if not policy.may_retry(i, first_ms, attempt.ended_ms):
            if i + 1 < len(attempts):
                extra = attempts[i + 1]
                return True, (
                    f"attempt {i + 2} started at {extra.time_ms / 1000:.3f}s on {extra.node}, "
                    f"but after attempt {i + 1} failed at {attempt.ended_ms / 1000:.3f}s "
                    f"({attempt.ended_ms - first_ms} ms after the first) the policy "
                    f"(retry_limit={policy.retry_limit}, age_limit_ms={policy.age_limit_ms}) "
                    "had given it up"
                )
            return True, None
    return False, None
