"""An in-memory cluster of node state machines for protocol tests: one clock, one message queue,
and a webhook receiver that the test answers by hand.

`now_ms` is the true time and every node's monotonic clock; a node's wall clock reads it plus
`wall_ahead_ms[node]`, which `step_wall` changes as NTP or an operator would."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from miyamoto.logic.actions import SendApiResponse, SendPeerMessage, StartDelivery
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import (
    ApiRequestReceived,
    DeliveryResponded,
    Event,
    PeerMessageReceived,
    TimerExpired,
)
from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.messages import Envelope, Member, MemberList, Outgoing, PeerMessage
from miyamoto.logic.node import Node

T0_MS = 1_700_000_000_000


class FixedMembership:
    """A member list the test sets by hand, standing in for the elected membership so that
    replication rules are tested without heartbeats in the way. Each change is a new epoch."""

    def __init__(self, self_id: str, members: tuple[str, ...]) -> None:
        self.self_id = self_id
        self.members = tuple(sorted(members))
        self.epoch = 1
        self.unreachable_ids: tuple[str, ...] = ()
        """What the leader would report as unreachable (set by the test)."""
        self.incarnations: dict[str, int] = {}
        """Incarnations other than 1 (a member restarted without its disk: set by the test)."""
        self._tick_ms = 0  # due at once, then every second

    def set_members(self, members: tuple[str, ...]) -> None:
        self.members = tuple(sorted(members))
        self.epoch += 1

    @property
    def member_list(self) -> MemberList:
        return MemberList(
            epoch=self.epoch,
            epoch_term=1,
            members=tuple(Member(id=m, incarnation=self.incarnations.get(m, 1))
                          for m in self.members),
        )  # fmt: skip

    def handle_message(self, envelope: Envelope, now_ms: int) -> list[Outgoing]:
        return []

    def handle_timer(self, now_ms: int) -> list[Outgoing]:
        # Tick like a real membership does (heartbeats), so that the node sees time pass in
        # steps and does not take a long quiet gap for a pause.
        if now_ms >= self._tick_ms:
            self._tick_ms = now_ms + 1_000
        return []

    def next_deadline_ms(self) -> int | None:
        return self._tick_ms

    def stamp(self, message: PeerMessage) -> Envelope:
        return Envelope(
            sender=self.self_id, incarnation=1, cluster_id=1, term=1, epoch=self.epoch,
            message=message,
        )

    def admit(self, envelope: Envelope, now_ms: int) -> bool:
        return True

    def in_standing(self, now_ms: int) -> bool:
        return True

    def unreachable(self) -> tuple[str, ...]:
        return self.unreachable_ids

    def view(self) -> Any:
        raise NotImplementedError("not needed by these tests")

    # Leaving: the test plays the leader (it removes the node with `set_members`).
    leaving = False
    asked_removal = False
    """The node said its copies are handed off: the leader may remove it now."""

    @property
    def has_left(self) -> bool:
        return self.leaving and self.self_id not in self.members

    def leave_refusal(self) -> str | None:
        return None

    def start_leaving(self, now_ms: int) -> list[Outgoing]:
        self.leaving = True
        return []

    def handed_off(self, now_ms: int) -> list[Outgoing]:
        self.asked_removal = True
        return []


@dataclass
class Delivery:
    node: str
    action: StartDelivery
    at_ms: int

    @property
    def task_id(self) -> str:
        return next(v for k, v in self.action.request.headers if k.lower() == "x-task-id")


@dataclass
class Cluster:
    names: list[str]
    config: NodeConfig = field(default_factory=NodeConfig)
    now_ms: int = T0_MS
    elected: bool = False
    """Real membership (heartbeats, election, leases; `names[0]` the founder every other node
    joins through) instead of a member list set by hand (`set_members`)."""

    def __post_init__(self) -> None:
        self.membership = (
            {} if self.elected else {n: FixedMembership(n, tuple(self.names)) for n in self.names}
        )
        self.nodes = {
            n: Node(
                _with_id(self.config, n, self.names[0] if self.elected else None),
                random.Random(n),
                self.now_ms,
                membership=self.membership.get(n),
            )
            for n in self.names
        }
        self.wall_ahead_ms: dict[str, int] = {}
        """How far a node's wall clock reads ahead of the true time (behind: negative)."""
        self.sent: list[tuple[int, str, Envelope]] = []
        """(true time, sender, envelope) of every peer message sent."""
        self.inbox: list[tuple[str, Envelope]] = []
        self.deliveries: list[Delivery] = []
        self.responses: dict[int, HttpResponse] = {}
        self.down: set[str] = set()
        self._request_ids = 0

    def feed(self, name: str, event: Event) -> None:
        if name in self.down:
            return
        wall_ms = self.now_ms + self.wall_ahead_ms.get(name, 0)
        actions = self.nodes[name].handle(event, wall_ms, mono_ms=self.now_ms)
        self.nodes[name].check_invariants()
        for action in actions:
            match action:
                case SendApiResponse(request_id=rid, response=response):
                    self.responses[rid] = response
                case StartDelivery():
                    self.deliveries.append(Delivery(name, action, self.now_ms))
                case SendPeerMessage(to=to, envelope=envelope):
                    self.inbox.append((to, envelope))
                    self.sent.append((self.now_ms, name, envelope))

    def step_wall(self, name: str, step_ms: int) -> None:
        """Steps the node's wall clock by `step_ms` (back: negative); the node notices at its
        next event, which comes at once, as the shell's timer feeds one when it sees a step."""
        self.wall_ahead_ms[name] = self.wall_ahead_ms.get(name, 0) + step_ms
        self.feed(name, TimerExpired())
        self.settle()

    def settle(self) -> None:
        """Delivers every message in flight (and those they cause), in order."""
        while self.inbox:
            to, envelope = self.inbox.pop(0)
            if envelope.sender not in self.down and to in self.nodes:
                self.feed(to, PeerMessageReceived(envelope=envelope))

    def request(self, name: str, method: str, target: str, body: Any = None) -> int:
        self._request_ids += 1
        raw = b"" if body is None else json.dumps(body).encode()
        headers = (("content-type", "application/json"),) if body is not None else ()
        request = HttpRequest(method=method, target=target, headers=headers, body=raw)
        self.feed(name, ApiRequestReceived(request_id=self._request_ids, request=request))
        return self._request_ids

    def call(self, name: str, method: str, target: str, body: Any = None) -> HttpResponse:
        """A request whose answer comes once the messages it causes have settled."""
        rid = self.request(name, method, target, body)
        self.settle()
        return self.responses.pop(rid)

    def advance(self, ms: int) -> None:
        end = self.now_ms + ms
        while True:
            self.settle()
            due = [
                (d, n)
                for n, node in self.nodes.items()
                if n not in self.down and (d := node.next_deadline_ms()) is not None
            ]
            next_ms = min((d for d, _ in due), default=None)
            if next_ms is None or next_ms > end:
                break
            self.now_ms = max(self.now_ms, next_ms)
            for deadline, name in sorted(due):
                if deadline <= self.now_ms:
                    self.feed(name, TimerExpired())
        self.now_ms = end
        self.settle()

    def answer(self, delivery: Delivery, status: int) -> None:
        event = DeliveryResponded(delivery_id=delivery.action.delivery_id, status=status)
        self.feed(delivery.node, event)
        self.settle()

    def set_members(self, members: list[str]) -> None:
        for name in self.names:
            self.membership[name].set_members(tuple(members))
            self.feed(name, TimerExpired())
        self.settle()

    def restart_without_disk(self, name: str) -> None:
        """`name` crashes and comes back at once under the same id as a new incarnation that
        remembers nothing; the member list names the new incarnation (a new epoch)."""
        self.nodes[name] = Node(
            _with_id(self.config, name),
            random.Random(f"{name}-again"),
            self.now_ms,
            membership=self.membership[name],
        )
        for membership in self.membership.values():
            membership.incarnations[name] = membership.incarnations.get(name, 1) + 1
            membership.epoch += 1
        for other in self.names:
            self.feed(other, TimerExpired())
        self.settle()

    def report_unreachable(self, names: set[str]) -> None:
        """Every node hears from its leader that `names` do not answer."""
        for name in self.names:
            self.membership[name].unreachable_ids = tuple(sorted(names))

    def holders(self, queue: str, task_id: str) -> dict[str, str]:
        """node -> state of its copy, for every node that has one."""
        return {
            n: task.state.value
            for n, node in self.nodes.items()
            if n not in self.down and (task := node.tasks.get(queue, task_id)) is not None
        }


def _with_id(config: NodeConfig, name: str, seed_id: str | None = None) -> NodeConfig:
    from dataclasses import replace

    if seed_id is None:
        return replace(config, node_id=name)
    return replace(config, node_id=name, seed_id=seed_id)
