"""What an operator wants to know the node did, seen from the shell: the runtime's observer.

After every event `NodeWatch.observe` looks at the actions and, read-only, at the node:
- a `StartDelivery` is remembered with its task; when its outcome comes back, the task's new
  state says whether it was delivered, will be retried, or became a dead letter (logged);
- a 429/503 answer that left a hold on its destination is logged, and so is the hold's end;
- after a timer or a peer message (nothing else changes the membership) the cluster view is
  compared with the last one: members joining and leaving, leader changes and elections are
  logged;
- a repair (copies this node sent to bring tasks back to R copies, not yet acknowledged) is
  logged when it starts and when every copy is acknowledged, with its counts.
Counts go to `NodeMetrics` when metrics are on; the logs are written either way. Only cheap
comparisons run per event: an enqueue costs a type check per action.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..logic.actions import Action, StartDelivery
from ..logic.events import (
    ApiRequestReceived,
    DeliveryFailed,
    DeliveryResponded,
    Event,
    TimerExpired,
)
from ..logic.membership import ClusterView, Role
from ..logic.task import Task, TaskState
from .metrics import NodeMetrics

if TYPE_CHECKING:
    from ..logic.node import Node

log = logging.getLogger("miyamoto.node")
cluster_log = logging.getLogger("miyamoto.cluster")

HOLD_STATUSES = (429, 503)
"""The answers whose Retry-After holds back every delivery to their destination."""


@dataclass(slots=True)
class _Flight:
    task: Task
    started_s: float
    destination: tuple[str, str, int]
    """(queue, host, port): holds are per queue and destination."""


@dataclass(frozen=True, slots=True)
class _ClusterSeen:
    members: tuple[str, ...]
    leader: str | None
    term: int
    role: Role


@dataclass(slots=True)
class _Repairing:
    started_ms: int
    tasks_max: int
    """The most tasks awaiting acknowledged copies at once (a repair can grow as it goes)."""


def _seen(view: ClusterView) -> _ClusterSeen:
    return _ClusterSeen(members=view.member_ids, leader=view.leader, term=view.term, role=view.role)


class NodeWatch:
    def __init__(
        self,
        node: Node,
        *,
        metrics: NodeMetrics | None = None,
        clock_s: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._node = node
        self._metrics = metrics
        self._clock_s = clock_s
        self._flights: dict[int, _Flight] = {}
        """Deliveries in flight by id; as bounded as the node's own in-flight table."""
        self._holds: dict[tuple[str, str, int], int] = {}
        """Destination holds logged as set and not yet as lifted: (host, port) -> until ms."""
        self._cluster: _ClusterSeen | None = None
        self._repairing: _Repairing | None = None

    def observe(self, event: Event, actions: list[Action], now_ms: int) -> None:
        for action in actions:
            if type(action) is StartDelivery:
                self._started(action, now_ms)
        if isinstance(event, DeliveryResponded | DeliveryFailed):
            self._finished(event, now_ms)
        elif isinstance(event, TimerExpired) or (
            isinstance(event, ApiRequestReceived) and event.request.target.startswith("/_peer")
        ):
            self.check_cluster()
        if self._holds:
            self._lift_expired_holds(now_ms)
        if self._repairing is not None or self._node.repair.unconfirmed_copies:
            self._check_repair(now_ms)

    # -- deliveries ------------------------------------------------------------------------------

    def _started(self, start: StartDelivery, now_ms: int) -> None:
        task = self._node.tasks.in_flight.get(start.delivery_id)
        if task is None:
            return
        destination = (task.queue, start.request.host, start.request.port)
        self._flights[start.delivery_id] = _Flight(task, self._clock_s(), destination)
        if self._metrics is not None:
            self._metrics.delivery_lateness.observe(max(0, now_ms - task.due_ms) / 1000)

    def _finished(self, outcome: DeliveryResponded | DeliveryFailed, now_ms: int) -> None:
        flight = self._flights.pop(outcome.delivery_id, None)
        if flight is None:
            return
        task = flight.task
        metrics = self._metrics
        if metrics is not None:
            metrics.delivery_duration.observe(self._clock_s() - flight.started_s)
            if isinstance(outcome, DeliveryResponded):
                metrics.count_attempt(f"{outcome.status // 100}xx")
            else:
                metrics.count_attempt(outcome.error.value)
            kind = _KINDS.get(task.state)
            if kind is not None:
                metrics.count_tasks(kind, task.queue)
        if task.state is TaskState.FAILED:
            last = (
                f"last status {task.last_status}"
                if task.last_status is not None
                else f"last error {task.last_error}"
            )
            log.info(
                "dead letter: queue %s, task %s, after %d attempts, %s",
                task.queue,
                task.id,
                task.attempts,
                last,
            )
        if isinstance(outcome, DeliveryResponded) and outcome.status in HOLD_STATUSES:
            self._note_hold(flight.destination, outcome.status, now_ms)

    # -- destination holds -----------------------------------------------------------------------

    def _note_hold(self, destination: tuple[str, str, int], status: int, now_ms: int) -> None:
        until_ms = self._node.queues.destination_hold_ms.get(destination)
        if until_ms is None or until_ms <= now_ms or self._holds.get(destination) == until_ms:
            return
        self._holds[destination] = until_ms
        _, host, port = destination
        log.info(
            "destination hold set: %s:%d answered %d with Retry-After; its deliveries wait %.1f s",
            host,
            port,
            status,
            (until_ms - now_ms) / 1000,
        )

    def _lift_expired_holds(self, now_ms: int) -> None:
        node_holds = self._node.queues.destination_hold_ms
        for destination in list(self._holds):
            current_ms = node_holds.get(destination)
            if current_ms is not None and current_ms > now_ms:
                self._holds[destination] = current_ms  # extended: keep watching
                continue
            del self._holds[destination]
            _, host, port = destination
            log.info("destination hold lifted: %s:%d", host, port)

    # -- repairs -----------------------------------------------------------------------------------

    def _check_repair(self, now_ms: int) -> None:
        repair = self._node.repair
        awaited = repair.unconfirmed_copies
        repairing = self._repairing
        if repairing is None:
            copies = sum(len(nodes) for nodes in awaited.values())
            self._repairing = _Repairing(started_ms=now_ms, tasks_max=len(awaited))
            log.info(
                "repair started: %d copies of %d tasks sent to bring them back to %d copies",
                copies,
                len(awaited),
                self._node.config.replicas,
            )
        elif awaited:
            repairing.tasks_max = max(repairing.tasks_max, len(awaited))
        else:
            self._repairing = None
            log.info(
                "repair done: every copy acknowledged (%d tasks at most awaited them) in %.1f s; "
                "%d tasks still short of copies (they wait for a member to come back)",
                repairing.tasks_max,
                (now_ms - repairing.started_ms) / 1000,
                len(repair.under_replicated),
            )

    # -- the cluster -----------------------------------------------------------------------------

    def check_cluster(self) -> None:
        """Log what changed in the cluster view since the last check."""
        now = _seen(self._node.membership.view())
        before = self._cluster
        self._cluster = now
        if before == now:
            return
        if before is None:
            before = _ClusterSeen(members=(), leader=None, term=0, role=Role.JOINING)
        me = self._node.config.node_id
        for member in sorted(set(now.members) - set(before.members)):
            if member == me:
                cluster_log.info("this node is a member now (%d members)", len(now.members))
            else:
                cluster_log.info("member joined: %s (%d members)", member, len(now.members))
        for member in sorted(set(before.members) - set(now.members)):
            cluster_log.info("member left: %s (%d members)", member, len(now.members))
        if now.role is not before.role:
            if now.role is Role.CANDIDATE:
                cluster_log.info("election: this node stands for leader in term %d", now.term)
            elif now.role is Role.LEADER:
                cluster_log.info("election won: this node leads term %d", now.term)
            elif before.role is Role.LEADER:
                cluster_log.info("this node no longer leads (term %d)", now.term)
        if now.leader != before.leader:
            if now.leader is None:
                cluster_log.info("no leader heard (term %d): an election will follow", now.term)
            else:
                cluster_log.info("leader is %s (term %d)", now.leader, now.term)


_KINDS = {
    TaskState.SUCCEEDED: "delivered",
    TaskState.RETRYING: "retried",
    TaskState.FAILED: "failed",
}
"""The count an attempt's outcome goes to, by the task's state after the node handled it; any
other state (another holder finished the task meanwhile, it was purged) counts nothing."""
