"""The scenarios, in the order `python -m bench` runs them; each is a function of the context
that starts what it measures, measures, stops it all, and returns table rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..context import BenchContext
from ..table import Row
from .batch import batch_enqueue
from .cluster import cluster
from .delivery import delivery
from .dispatch import dispatch_time
from .durable import durable
from .durable_store import durable_memory, durable_restart, durable_timer
from .enqueue import enqueue_keepalive, enqueue_new_connection
from .memory import memory
from .metrics_cost import metrics_cost
from .rq_peer import rq_peer
from .security import security
from .slow_receiver import slow_receiver
from .sustained import sustained
from .timer import timer_precision


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[BenchContext], list[Row]]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="enqueue-keepalive",
        run=enqueue_keepalive,
        summary="enqueue, 50 kept-alive connections, node vs bare server",
    ),
    Scenario(
        name="enqueue-new-connection",
        run=enqueue_new_connection,
        summary="enqueue, a new connection per request (as curl), node vs bare server",
    ),
    Scenario(
        name="metrics",
        run=metrics_cost,
        summary="enqueue with metrics on vs --no-metrics (same run, alternating rounds)",
    ),
    Scenario(
        name="delivery",
        run=delivery,
        summary="tasks due at one ETA delivered to a fast receiver, node vs bare client loop",
    ),
    Scenario(
        name="slow-receiver",
        run=slow_receiver,
        summary="delivery to a fast receiver beside one that never answers, vs alone",
    ),
    Scenario(
        name="sustained",
        run=sustained,
        summary="enqueue and delivery at once, tasks due immediately, end to end",
    ),
    Scenario(
        name="batch", run=batch_enqueue, summary="enqueue by JSON array of 1000 tasks, tasks/s"
    ),
    Scenario(
        name="durable",
        run=durable,
        summary="--data-dir vs --in-memory enqueue, durable batch, restart with pending tasks",
    ),
    Scenario(
        name="durable-restart",
        run=durable_restart,
        summary="restart on a data directory with 1,000,000 pending tasks; bytes on disk per task",
    ),
    Scenario(
        name="durable-memory",
        run=durable_memory,
        summary="RSS per pending task, --in-memory vs --data-dir",
    ),
    Scenario(
        name="durable-timer",
        run=durable_timer,
        summary="timer lateness at 1,000 tasks/s, --in-memory vs --data-dir",
    ),
    Scenario(
        name="timer",
        run=timer_precision,
        summary="lateness p50/p99/max of tasks with ETAs spread at 1,000 tasks/s",
    ),
    Scenario(
        name="memory",
        run=memory,
        summary="RSS per pending task with 1,000,000 scheduled, and the time to load them",
    ),
    Scenario(
        name="dispatch",
        run=dispatch_time,
        summary="longest Node.handle with 2,000,000 tasks held vs 10,000 (in-process), goal 5 ms",
    ),
    Scenario(
        name="cluster",
        run=cluster,
        summary="3 nodes R=2 vs 1 node, enqueue and delivery (when the node has --seed)",
    ),
    Scenario(
        name="security",
        run=security,
        summary="enqueue with deliveries, API tokens and signed deliveries on vs off",
    ),
    Scenario(
        name="rq",
        run=rq_peer,
        summary="peer row: RQ's enqueue rate (when redis-server and rq are installed)",
    ),
)
