"""The queue limits a run may have: a rate-limited queue, a concurrency-capped queue, bursts of
tasks due at one moment to put them under load, and client ids reused (races, other payloads).

Drawn from the seed on a stream of their own (`draw_limits`), so a seed that draws none of them
runs exactly as it did before they existed. The rate-limited queue is q1 and the capped one q2:
the workload's ordinary tasks land there too (a third each), the bursts come on top.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from miyamoto.logic.queue_config import QueueConfig, QueuesConfig

RATE_QUEUE = "q1"
CAPPED_QUEUE = "q2"
RATES_PER_S = (2.0, 5.0, 10.0)
"""Fast enough that a burst and a third of the workload drain within the liveness bound even
when one node holds most of them (it gets 1/N of the rate)."""
BUCKET_SIZES = (1, 2, 5, 10)
MAX_CONCURRENTS = (1, 2, 3, 5)
BURST_TASKS_MIN, BURST_TASKS_MAX = 15, 30


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    rate_per_s: float | None = None
    """The rate of RATE_QUEUE; None: no rate-limited queue in this run."""
    bucket_size: int = 1
    max_concurrent: int | None = None
    """The cap of CAPPED_QUEUE; None: no capped queue in this run."""
    burst_tasks: int = 0
    """Tasks enqueued into each limited queue with one ETA, on top of the workload."""
    id_reuse: bool = False
    """Some enqueues are repeated on another node at the same moment (a race), and some ids are
    enqueued again with another payload: each id must still be one task, delivered once."""

    def __post_init__(self) -> None:
        assert self.rate_per_s is None or self.rate_per_s > 0
        assert self.bucket_size >= 1 and self.burst_tasks >= 0
        assert self.max_concurrent is None or self.max_concurrent >= 1

    @property
    def any_queue(self) -> bool:
        return self.rate_per_s is not None or self.max_concurrent is not None

    def limited_queues(self) -> tuple[str, ...]:
        """The queues that get bursts."""
        rate = (RATE_QUEUE,) if self.rate_per_s is not None else ()
        capped = (CAPPED_QUEUE,) if self.max_concurrent is not None else ()
        return rate + capped

    def queues_config(self, default: QueueConfig) -> QueuesConfig | None:
        """The nodes' queue settings; None (the node's own default) when no queue is limited."""
        if not self.any_queue:
            return None
        named: list[tuple[str, QueueConfig]] = []
        if self.rate_per_s is not None:
            named.append(
                (RATE_QUEUE, _with(default, rate_per_s=self.rate_per_s, bucket=self.bucket_size))
            )
        if self.max_concurrent is not None:
            named.append((CAPPED_QUEUE, _with(default, max_concurrent=self.max_concurrent)))
        return QueuesConfig(default=default, queues=tuple(named))

    def describe(self) -> str:
        rate = (
            "none"
            if self.rate_per_s is None
            else f"{RATE_QUEUE}@{self.rate_per_s:g}/s,bucket={self.bucket_size}"
        )
        cap = "none" if self.max_concurrent is None else f"{CAPPED_QUEUE}@{self.max_concurrent}"
        burst = f" burst={self.burst_tasks}" if self.burst_tasks else ""
        return f"rate={rate} cap={cap}{burst} id_reuse={'yes' if self.id_reuse else 'no'}"


def _with(
    default: QueueConfig,
    *,
    rate_per_s: float | None = None,
    bucket: int | None = None,
    max_concurrent: int | None = None,
) -> QueueConfig:
    return QueueConfig(
        rate_per_s=rate_per_s,
        bucket_size=default.bucket_size if bucket is None else bucket,
        max_concurrent=max_concurrent,
        retry=default.retry,
        delivery_deadline_ms=default.delivery_deadline_ms,
    )


LIMIT_CHOICES = ("none", "rate", "cap", "both")
"""What `--limits` may fix: which limited queues a run has (the seed still draws their sizes)."""


def draw_limits(
    seed: int,
    scenario: str,
    *,
    always: bool,
    fixed_queues: str | None = None,
    fixed_id_reuse: bool | None = None,
) -> QueueLimits:
    """The run's queue limits: `always` (the rate_limited scenario) has both queues and reused
    ids, else each is drawn with even odds (swarm testing); `fixed_queues` (one of
    LIMIT_CHOICES) and `fixed_id_reuse` override the draw. Every draw is made whatever is fixed,
    so fixing one thing does not change the others."""
    rng = random.Random(f"{seed}:limits:{scenario}")
    has_rate, has_cap, id_reuse = (rng.random() < 0.5 for _ in range(3))
    rate_per_s = rng.choice(RATES_PER_S)
    bucket_size = rng.choice(BUCKET_SIZES)
    max_concurrent = rng.choice(MAX_CONCURRENTS)
    burst_tasks = rng.randint(BURST_TASKS_MIN, BURST_TASKS_MAX)
    if always:
        has_rate = has_cap = id_reuse = True
    if fixed_queues is not None:
        assert fixed_queues in LIMIT_CHOICES, fixed_queues
        has_rate, has_cap = fixed_queues in ("rate", "both"), fixed_queues in ("cap", "both")
    if fixed_id_reuse is not None:
        id_reuse = fixed_id_reuse
    return QueueLimits(
        rate_per_s=rate_per_s if has_rate else None,
        bucket_size=bucket_size,
        max_concurrent=max_concurrent if has_cap else None,
        burst_tasks=burst_tasks if has_rate or has_cap else 0,
        id_reuse=id_reuse,
    )
