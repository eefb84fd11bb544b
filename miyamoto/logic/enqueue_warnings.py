"""The `warnings` of an enqueue reply: retry settings a task asked for that its queue narrowed.

A task may ask for more than its queue allows; it is accepted with the queue's bounds
(queue_config.effective_retry), and the reply says so, so the user is not surprised later."""

from __future__ import annotations

from .queue_config import QueueConfig, effective_deadline_ms, effective_retry
from .task import RetryOverrides


def narrowing_warnings(
    queue_name: str, queue: QueueConfig, overrides: RetryOverrides | None
) -> tuple[str, ...]:
    if overrides is None:
        return ()
    policy = effective_retry(queue, overrides)
    deadline_ms = effective_deadline_ms(queue, overrides)
    # (field, asked, in force, in seconds): the units the enqueue API takes.
    checks = (
        ("retry_limit", overrides.retry_limit, policy.retry_limit, False),
        ("age_limit", overrides.age_limit_ms, policy.age_limit_ms, True),
        ("min_backoff", overrides.min_backoff_ms, policy.min_backoff_ms, True),
        ("max_backoff", overrides.max_backoff_ms, policy.max_backoff_ms, True),
        ("max_doublings", overrides.max_doublings, policy.max_doublings, False),
        ("deadline", overrides.deadline_ms, deadline_ms, True),
    )
    return tuple(
        f"{name} {_shown(asked, in_s)} was narrowed to {_shown(used, in_s)} "
        f"by queue {_quoted(queue_name)}"
        for name, asked, used, in_s in checks
        if asked is not None and asked != used
    )


def _shown(value: int, in_seconds: bool) -> str:
    return f"{value / 1000:g} s" if in_seconds else str(value)


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
