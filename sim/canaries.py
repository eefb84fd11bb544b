"""Deliberately broken nodes: a checker that never fails is worthless, so tests run the
simulator against each of these and require the named anomaly to be caught.

Each canary is a subclass of the real `Node` (or of its `Membership`), never a flag in the
product code. Most change only what goes in and out of `handle()`, so they keep working while
the node's insides change; the ones that must reach inside say which method they bend.
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass, replace

from miyamoto.logic.actions import Action, SendApiResponse, SendPeerMessage, StartDelivery
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.core import NodeCore
from miyamoto.logic.events import Event, PeerMessageReceived
from miyamoto.logic.http import json_response
from miyamoto.logic.membership import Membership
from miyamoto.logic.messages import Envelope, Outgoing, VoteRequest, VoteResponse
from miyamoto.logic.node import MembershipLayer, Node
from miyamoto.logic.pending import Placement
from miyamoto.logic.queue_config import QueuesConfig
from miyamoto.logic.queues import Queues, QueueState
from miyamoto.logic.repair import Repair
from miyamoto.logic.replica_messages import (
    CancelResult,
    CancelTask,
    Finished,
    Holders,
    StoreAck,
    StoreCopy,
    TaskCopy,
)
from miyamoto.logic.task import Task, TaskSpec, TaskState

from .checkers import Anomaly


class ReplicasIgnoreCancel(Node):
    """A holder asked by another node to cancel its copy says "cancelled" and keeps it."""

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        if isinstance(event, PeerMessageReceived) and isinstance(
            event.envelope.message, CancelTask
        ):
            request = event.envelope.message
            task = self.tasks.get(request.queue, request.task_id)
            if task is not None and not task.state.is_final:
                answer = CancelResult(
                    ref=request.ref, state=TaskState.CANCELLED.value, holders=task.holders
                )
                to = event.envelope.sender
                return [SendPeerMessage(to=to, envelope=self.membership.stamp(answer))]
        return super().handle(event, now_ms, mono_ms=mono_ms)


class DeliversEarly(Node):
    """Every copy it stores fires 3 s before it is due. (Bends `_store_copy`.)"""

    EARLY_MS = 3_000

    def _store_copy(self, copy: TaskCopy, now_ms: int) -> tuple[bool, str, Holders]:
        result = super()._store_copy(copy, now_ms)
        task = self.tasks.get(copy.queue, copy.id)
        if result[0] and task is not None and task.state is TaskState.SCHEDULED:
            self.tasks.reschedule(task, task.due_ms - self.EARLY_MS, task.state)
        return result


class ForgetsTasks(Node):
    """Acknowledges every eighth task's copy from another node without keeping it."""

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        if isinstance(event, PeerMessageReceived) and isinstance(event.envelope.message, StoreCopy):
            request = event.envelope.message
            if doomed(request.copy.id):
                ack = StoreAck(
                    ref=request.ref, queue=request.copy.queue, task_id=request.copy.id,
                    stored=True, state=TaskState.SCHEDULED.value,
                )  # fmt: skip
                to = event.envelope.sender
                return [SendPeerMessage(to=to, envelope=self.membership.stamp(ack))]
        return super().handle(event, now_ms, mono_ms=mono_ms)


def doomed(task_id: str) -> bool:
    """One task in eight, the same on every node (crc32, not `hash()`, which varies)."""
    return zlib.crc32(task_id.encode()) % 8 == 0


class DeliversTwice(Node):
    """Sends every webhook request twice."""

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        actions = super().handle(event, now_ms, mono_ms=mono_ms)
        doubled = [a for a in actions if isinstance(a, StartDelivery)]
        return actions + doubled


class InventsTasks(Node):
    """Now and then delivers a task no client ever enqueued."""

    _invented = 0

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        actions = super().handle(event, now_ms, mono_ms=mono_ms)
        for action in list(actions):
            if isinstance(action, StartDelivery) and self.rng.random() < 0.1:
                self._invented += 1
                request = action.request
                headers = tuple(
                    (k, f"invented-{self._invented}" if k.lower() == "x-task-id" else v)
                    for k, v in request.headers
                )
                actions.append(
                    replace(
                        action,
                        delivery_id=10**9 + self._invented,  # an id the node never gave out
                        request=replace(request, headers=headers, body=b"invented=yes"),
                    )
                )
        return actions


class AcksBeforeStoring(Node):
    """Answers "scheduled" as soon as it has sent the copies, without waiting for the holders
    to store them. (Bends `_place`.)"""

    def _place(
        self, spec: TaskSpec, request_id: int, index: int, now_ms: int, actions: list[Action]
    ) -> Placement:
        placement = super()._place(spec, request_id, index, now_ms, actions)
        if placement.waiting:
            placement.stored += len(placement.waiting)
            placement.waiting.clear()
        return placement


class DoubleVoter(Membership):
    """Grants every vote it is asked for, even after voting for another candidate (or itself)
    in the same term: two votes in one term. (Bends `Membership._on_vote_request`.)"""

    def _on_vote_request(self, env: Envelope, msg: VoteRequest, now_ms: int) -> list[Outgoing]:
        super()._on_vote_request(env, msg, now_ms)  # whatever it decided, it says yes
        return [self._send(env.sender, VoteResponse(granted=True))]


class VotesTwice(Node):
    """A node whose membership grants two votes in one term. Its election timeouts are all
    alike, so that candidates often collide and a second vote can make a second leader."""

    def __init__(
        self,
        config: NodeConfig,
        rng: random.Random,
        now_ms: int = 0,
        *,
        membership: MembershipLayer | None = None,
    ) -> None:
        timing = config.timing
        timing = replace(timing, election_timeout_max_ms=timing.election_timeout_min_ms + 10)
        config = replace(config, timing=timing)
        membership = membership or DoubleVoter(
            self_id=config.node_id,
            seed_id=config.seed_id or config.node_id,
            config=config.timing,
            rng=rng,
            now_ms=now_ms,
        )
        super().__init__(config, rng, now_ms, membership=membership)


class RatelessQueue(QueueState):
    """Admits a delivery without taking a token: the queue's rate is ignored."""

    def admits(self, now_ms: int) -> bool:
        if self.paused:
            return False
        return self.concurrency_share is None or self.in_flight < self.concurrency_share


class UncappedQueue(QueueState):
    """Admits a delivery however many are in flight: the queue's cap is ignored."""

    def admits(self, now_ms: int) -> bool:
        if self.paused:
            return False
        return self.bucket is None or self.bucket.try_take(now_ms)


class _QueuesOf(Queues):
    """Queues whose states are of another class. (Bends `Queues.get`.)"""

    def __init__(self, config: QueuesConfig, state_class: type[QueueState]) -> None:
        super().__init__(config)
        self.state_class = state_class

    def get(self, name: str, now_ms: int) -> QueueState:
        queue = self.known(name)
        if queue is None:
            queue = self.state_class(name, self.config.for_queue(name), self._members, now_ms)
            self._queues[name] = queue
        return queue


class _SwapsQueueStates(Node):
    """A node whose queue states are `queue_state_class`, one that breaks a queue limit."""

    queue_state_class: type[QueueState]

    def __init__(
        self,
        config: NodeConfig,
        rng: random.Random,
        now_ms: int = 0,
        *,
        membership: MembershipLayer | None = None,
    ) -> None:
        super().__init__(config, rng, now_ms, membership=membership)
        self.queues = _QueuesOf(config.queues_config, self.queue_state_class)


class IgnoresRate(_SwapsQueueStates):
    """Its queues never take a token: a rate-limited queue starts whatever is due."""

    queue_state_class = RatelessQueue


class IgnoresConcurrency(_SwapsQueueStates):
    """Its queues start deliveries however many of theirs are in flight."""

    queue_state_class = UncappedQueue


class _NoRepair(Repair):
    def repair(self, now_ms: int, actions: list[Action]) -> None:
        self.retry_at_ms = None

    def heal(self, now_ms: int, actions: list[Action]) -> None:
        return

    def remake_copies(
        self, task: Task, without_copy: set[str], now_ms: int, actions: list[Action]
    ) -> None:
        return




class _PlacesOneInEightOnce(NodeCore):
    def placement(self, key: str) -> list[str]:
        nodes = super().placement(key)
        return nodes[:1] if doomed(key.partition("/")[2]) else nodes


class _CopiesDueAtEta(NodeCore):
    def copy_due_ms(self, eta_ms: int, created_ms: int, index: int) -> int:
        return super().copy_due_ms(eta_ms, created_ms, 0)


class _BendsCore(Node):
    """Swaps the classes of the shared `NodeCore` and `Repair` parts in place (every other
    part holds the same objects, so a new object would not reach them)."""

    core_class: type[NodeCore] = NodeCore
    repair_class: type[Repair] = Repair

    def __init__(
        self,
        config: NodeConfig,
        rng: random.Random,
        now_ms: int = 0,
        *,
        membership: MembershipLayer | None = None,
    ) -> None:
        super().__init__(config, rng, now_ms, membership=membership)
        self.core.__class__ = self.core_class
        self.repair.__class__ = self.repair_class


class RepairsNothing(_BendsCore):
    """Never makes a copy again: a task whose holders die keeps the copies it has left.
    (Bends the `Repair` part.)"""

    repair_class = _NoRepair


class MiscountsReplicas(_BendsCore):
    """Places one task in eight on its first holder only, and still answers that R copies
    are stored. (Bends `NodeCore.placement`; the answer is rewritten on its way out of
    `handle()`.)"""

    core_class = _PlacesOneInEightOnce

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        actions = super().handle(event, now_ms, mono_ms=mono_ms)
        return [self._claim_r_copies(action) for action in actions]

    def _claim_r_copies(self, action: Action) -> Action:
        if not isinstance(action, SendApiResponse) or action.response.status != 200:
            return action
        try:
            document = json.loads(action.response.body)
        except ValueError:
            return action
        if not isinstance(document, dict) or document.get("status") != "scheduled":
            return action
        document["replicas"] = self.config.replicas
        return replace(action, response=json_response(200, document))


class DropsFinishNotices(Node):
    """Never tells the other holders that a task finished: they learn it only when they ask
    before firing their own copy."""

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        return [
            a
            for a in super().handle(event, now_ms, mono_ms=mono_ms)
            if not (isinstance(a, SendPeerMessage) and isinstance(a.envelope.message, Finished))
        ]


class IgnoresCopyDelay(_BendsCore):
    """Every copy of a task is due at its ETA: the replica delay is ignored.
    (Bends `NodeCore.copy_due_ms`.)"""

    core_class = _CopiesDueAtEta


class IgnoresRetryLimits(Node):
    """Retries every task for ever, whatever its queue's retry and age limits say."""

    def __init__(
        self,
        config: NodeConfig,
        rng: random.Random,
        now_ms: int = 0,
        *,
        membership: MembershipLayer | None = None,
    ) -> None:
        queues = config.queues_config
        unlimited = tuple(
            (name, replace(queue, retry=replace(queue.retry, retry_limit=-1, age_limit_ms=0)))
            for name, queue in queues.queues
        )
        config = replace(config, queues=QueuesConfig(default=queues.default, queues=unlimited))
        super().__init__(config, rng, now_ms, membership=membership)


@dataclass(frozen=True, slots=True, kw_only=True)
class Canary:
    node_class: type[Node]
    description: str
    caught_as: Anomaly
    """The anomaly the checkers must report for it."""
    scenario: str
    """A scenario in which it shows."""
    seeds: tuple[int, ...] = (1, 2, 3)
    """Seeds of `scenario` on which it shows, and the real node does not show the anomaly
    (tests/test_sim_runs.py runs each)."""


CANARIES: dict[str, Canary] = {
    "replicas_ignore_cancel": Canary(
        node_class=ReplicasIgnoreCancel,
        description="holders say they cancelled their copy, and keep it",
        caught_as=Anomaly.CANCELLED,
        scenario="calm",
    ),
    "delivers_early": Canary(
        node_class=DeliversEarly,
        description="every copy fires 3 s before it is due",
        caught_as=Anomaly.EARLY,
        scenario="calm",
    ),
    "forgets_tasks": Canary(
        node_class=ForgetsTasks,
        description="acknowledges some copies without keeping them",
        caught_as=Anomaly.LOST,
        scenario="calm",
    ),
    "delivers_twice": Canary(
        node_class=DeliversTwice,
        description="sends every webhook request twice",
        caught_as=Anomaly.DUPLICATED,
        scenario="calm",
    ),
    "invents_tasks": Canary(
        node_class=InventsTasks,
        description="delivers tasks nobody enqueued",
        caught_as=Anomaly.UNEXPECTED,
        scenario="calm",
    ),
    "acks_before_storing": Canary(
        node_class=AcksBeforeStoring,
        description="answers an enqueue before its copies are stored",
        caught_as=Anomaly.LOST,
        scenario="lossy_network",
        seeds=(3, 5, 8),  # it shows only when every copy of a task is lost in flight
    ),
    "ignores_rate": Canary(
        node_class=IgnoresRate,
        description="a rate-limited queue takes no token: it starts whatever is due",
        caught_as=Anomaly.RATE,
        scenario="rate_limited",
    ),
    "ignores_concurrency": Canary(
        node_class=IgnoresConcurrency,
        description="a capped queue starts deliveries however many are in flight",
        caught_as=Anomaly.CONCURRENCY,
        scenario="rate_limited",
    ),
    "repairs_nothing": Canary(
        node_class=RepairsNothing,
        description="never makes a copy again after a holder dies (repair off)",
        caught_as=Anomaly.LOST,  # its last copy alone longer than a repair takes
        scenario="crash_restart",
        seeds=(2, 3),
    ),
    "miscounts_replicas": Canary(
        node_class=MiscountsReplicas,
        description="places some tasks on one holder and answers that R copies are stored",
        caught_as=Anomaly.REPLICAS,
        scenario="calm",
    ),
    "drops_finish_notices": Canary(
        node_class=DropsFinishNotices,
        description="never tells the other holders that a task finished",
        caught_as=Anomaly.DUPLICATE_RATE,  # each duplicate has a fault to excuse it
        scenario="crash_restart",
        seeds=(3,),
    ),
    "ignores_copy_delay": Canary(
        node_class=IgnoresCopyDelay,
        description="every copy of a task is due at its ETA (no replica delay)",
        caught_as=Anomaly.DUPLICATED,  # asking before firing hides it but under a partition
        scenario="bridge",
        seeds=(3,),
    ),
    "ignores_retry_limits": Canary(
        node_class=IgnoresRetryLimits,
        description="retries every task for ever, whatever its queue's limits say",
        caught_as=Anomaly.DEAD_LETTER,
        scenario="retry_limits",
    ),
    "votes_twice": Canary(
        node_class=VotesTwice,
        description="a follower grants two votes in one term",
        caught_as=Anomaly.ELECTION_SAFETY,
        scenario="isolate_leader",
    ),
}


def node_class(canary: str | None) -> type[Node]:
    """The node to run: the real one, or the named canary."""
    return Node if canary is None else CANARIES[canary].node_class
