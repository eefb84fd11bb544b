"""A node's Prometheus metrics, exposed by `GET /_metrics` with the official prometheus_client.

Two kinds, so the hot path pays almost nothing:
- counts of things the shell sees happen (tasks enqueued, delivered, failed..., HTTP requests)
  are plain ints in dicts, bumped by `NodeWatch` and `ApiFront`, and turned into metric families
  only when scraped; the two histograms are prometheus_client's own (one `observe` a delivery);
- the node's state (tasks held by queue and state, deliveries in flight, destination holds, the
  cluster view, the peer links' counters) is read when scraped, by `_NodeCollector`.

Counts are this node's: the node that answered an enqueue counts it, the node that delivered a
task counts the delivery. Sum over the members for the cluster (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from .. import __version__
from ..logic.membership import Role
from ..logic.readiness import readiness
from ..logic.task import TaskState
from .peer_links import LinkStats

if TYPE_CHECKING:
    from ..logic.node import Node

QUEUE_LABELS_MAX = 1000
"""Distinct queue names given their own label value; the rest are counted under `_other`, so a
client inventing queue names cannot grow the node's memory or a scrape without bound."""
OTHER_QUEUE = "_other"
"""Starts with `_`, which a queue name may not: it never collides with a real queue."""

TASK_COUNTS = {
    "enqueued": "Tasks this node accepted for a queue (new ids; duplicates are counted apart).",
    "duplicates": "Enqueues answered as duplicates: the task id was already known.",
    "delivered": "Tasks this node delivered successfully (the webhook answered 2xx).",
    "retried": "Delivery attempts that failed and were scheduled to be tried again.",
    "failed": "Tasks that ran out of retries on this node: dead letters.",
    "cancelled": "Tasks cancelled through this node (DELETE of a waiting task; a repeated "
    "DELETE, answered cancelled again, counts again).",
}
"""`miyamoto_tasks_{kind}_total{queue}`: what each kind counts."""

DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LATENESS_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0)

PeerStats = Callable[[], dict[str, LinkStats]]
"""The peer links' counters by destination (`PeerLinks.stats`)."""


class NodeMetrics:
    """One node's registry and counters (a registry per node: tests run several in a process)."""

    def __init__(
        self,
        node: Node,
        *,
        peer_stats: PeerStats | None = None,
        clock_ms: Callable[[], int],
        process: bool = True,
        store_problem: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.node = node
        self.store_problem = store_problem
        """Why the last write to the store failed (None: it succeeded, or there is none)."""
        self.peer_stats = peer_stats
        self.clock_ms = clock_ms
        self._queue_labels: set[str] = set()
        self.tasks: dict[str, dict[str, int]] = {kind: {} for kind in TASK_COUNTS}
        """kind -> queue label -> count."""
        self.attempts: dict[str, int] = {}
        """Delivery attempts by outcome: `2xx`...`5xx`, or the failure (`timeout`, `refused`...)."""
        self.http_requests: dict[tuple[str, int], int] = {}
        """(route, status) -> count; both bounded: routes are templates, statuses 3 digits."""
        self.delivery_duration = Histogram(
            "miyamoto_delivery_duration_seconds",
            "From sending a webhook request to its answer (or failure), per attempt.",
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.delivery_lateness = Histogram(
            "miyamoto_delivery_lateness_seconds",
            "How long after it was due each delivery attempt started (queue limits, holds "
            "and a busy node make it grow).",
            buckets=LATENESS_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_NodeCollector(self))
        if process:  # CPU, memory, open files: /proc reads at scrape time only
            ProcessCollector(registry=self.registry)

    def queue_label(self, queue: str) -> str:
        if queue in self._queue_labels:
            return queue
        if len(self._queue_labels) < QUEUE_LABELS_MAX:
            self._queue_labels.add(queue)
            return queue
        return OTHER_QUEUE

    def count_tasks(self, kind: str, queue: str, n: int = 1) -> None:
        counts = self.tasks[kind]
        label = self.queue_label(queue)
        counts[label] = counts.get(label, 0) + n

    def count_attempt(self, outcome: str) -> None:
        self.attempts[outcome] = self.attempts.get(outcome, 0) + 1

    def count_http(self, route: str, status: int) -> None:
        key = (route, status)
        self.http_requests[key] = self.http_requests.get(key, 0) + 1

    def render(self) -> tuple[bytes, str]:
        """The exposition (body, content type) of everything in the registry."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _NodeCollector:
    """Reads the counters and the node's state at scrape time."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return ()  # nothing to check at registration: collect() names every family it yields

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        yield from self._counts(metrics)
        node = metrics.node
        yield from self._tasks_held(metrics, node)
        yield _gauge(
            "miyamoto_deliveries_in_flight",
            "Webhook requests this node is waiting on now.",
            len(node.tasks.in_flight),
        )
        now_ms = metrics.clock_ms()
        holds = sum(1 for until_ms in node.queues.destination_hold_ms.values() if until_ms > now_ms)
        yield _gauge(
            "miyamoto_destination_holds",
            "(queue, host:port) pairs whose deliveries wait because the destination answered "
            "429 or 503 with Retry-After.",
            holds,
        )
        yield from self._cluster(node)
        yield from self._peers(metrics, node)

    def _counts(self, metrics: NodeMetrics) -> Iterator[Metric]:
        for kind, help_text in TASK_COUNTS.items():
            family = CounterMetricFamily(f"miyamoto_tasks_{kind}", help_text, labels=["queue"])
            for queue, count in sorted(metrics.tasks[kind].items()):
                family.add_metric([queue], count)
            yield family
        attempts = CounterMetricFamily(
            "miyamoto_delivery_attempts",
            "Delivery attempts by outcome: the answer's status class, or why there was none.",
            labels=["outcome"],
        )
        for outcome, count in sorted(metrics.attempts.items()):
            attempts.add_metric([outcome], count)
        yield attempts
        http = CounterMetricFamily(
            "miyamoto_http_requests",
            "API requests answered, by route (method and path template) and status.",
            labels=["route", "status"],
        )
        for (route, status), count in sorted(metrics.http_requests.items()):
            http.add_metric([route, str(status)], count)
        yield http

    def _tasks_held(self, metrics: NodeMetrics, node: Node) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "miyamoto_tasks_held",
            "Task copies this node holds, by queue and state (a task has up to R copies).",
            labels=["queue", "state"],
        )
        totals: dict[tuple[str, str], int] = {}
        for tasks in node.tasks.store.by_queue():
            first = next(iter(tasks), None)
            if first is None:
                continue
            label = metrics.queue_label(first.queue)
            for state, count in node.tasks.counts(first.queue).items():
                key = (label, state.value)
                totals[key] = totals.get(key, 0) + count
        for (queue, state_name), count in sorted(totals.items()):
            held.add_metric([queue, state_name], count)
        yield held
        dead = sum(c for (_, s), c in totals.items() if s == TaskState.FAILED.value)
        yield _gauge(
            "miyamoto_dead_letters", "Failed tasks (dead letters) this node holds a copy of.", dead
        )
        yield _gauge(
            "miyamoto_under_replicated_tasks",
            "Pending tasks this node heals that have fewer than R copies (as GET /_cluster says).",
            len(node.repair.under_replicated),
        )

    def _cluster(self, node: Node) -> Iterator[Metric]:
        view = node.membership.view()
        info = GaugeMetricFamily(
            "miyamoto_node_info",
            "This node: its id and version (always 1).",
            labels=["node", "version"],
        )
        info.add_metric([view.self_id, __version__], 1)
        yield info
        yield _gauge("miyamoto_cluster_term", "The election term this node is in.", view.term)
        yield _gauge(
            "miyamoto_cluster_epoch", "The version of the member list this node shows.", view.epoch
        )
        yield _gauge("miyamoto_cluster_members", "Members in this node's view.", len(view.members))
        yield _gauge(
            "miyamoto_cluster_is_leader",
            "1 when this node leads the cluster.",
            int(view.role is Role.LEADER and view.has_leader),
        )
        yield _gauge(
            "miyamoto_cluster_has_leader", "1 when this node hears a leader.", int(view.has_leader)
        )
        yield _gauge(
            "miyamoto_ready", "1 when this node takes enqueues (as GET /_ready says).",
            int(readiness(view, store_problem=self._metrics.store_problem()).ready),
        )
        stats = view.stats
        yield _counter(
            "miyamoto_elections_started", "Elections this node started.", stats.elections_started
        )
        yield _counter("miyamoto_elections_won", "Elections this node won.", stats.elections_won)

    def _peers(self, metrics: NodeMetrics, node: Node) -> Iterator[Metric]:
        links = metrics.peer_stats() if metrics.peer_stats is not None else {}
        yield _counter(
            "miyamoto_peer_messages_sent",
            "Messages to other nodes that their node acknowledged.",
            sum(link.sent for link in links.values()),
        )
        stats = node.membership.view().stats
        yield _counter(
            "miyamoto_peer_messages_received",
            "Messages from other nodes that reached this node's membership check.",
            stats.received,
        )
        dropped = CounterMetricFamily(
            "miyamoto_peer_messages_dropped",
            "Messages to or from other nodes that were dropped, by reason.",
            labels=["reason"],
        )
        reasons = {
            "queue_full": sum(link.dropped_queue_full for link in links.values()),
            "send_failed": sum(link.dropped_send_failed for link in links.values()),
            "stale": stats.dropped_stale,
            "foreign_cluster": stats.dropped_foreign,
            "not_member": stats.dropped_not_member,
            "malformed": stats.dropped_malformed,
            "in_lease": stats.dropped_in_lease,
            "conflicting_leader": stats.dropped_conflicting_leader,
        }
        for reason, count in reasons.items():
            dropped.add_metric([reason], count)
        yield dropped
        yield _gauge(
            "miyamoto_peer_messages_queued",
            "Messages waiting to be sent to other nodes.",
            sum(link.queued for link in links.values()),
        )


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)
