"""The simulated peer network: loss, duplication, reordering, delays, cut and clogged links.

Packets are opaque to the network. A packet crossing a cut link is dropped, when it is sent and
again when it arrives (a partition that starts while it is in flight catches it too). A clogged
node's packets are held, not dropped, and released with fresh delays when it is unclogged
(FoundationDB's clogging). Reordering comes from the spread of delays.

The network does not own the clock: it asks `schedule(delay_ms, packet)` to call `arrive`
later, and reports every packet it loses or holds up through `on_fault`, so that duplicate
deliveries can be explained by the faults around them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

Link = tuple[str, str]
"""(sender, receiver): links are one-way, so one direction can fail alone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConditions:
    loss: float = 0.0
    """Fraction of packets lost (the issue's range: up to 0.3)."""
    duplication: float = 0.0
    """Fraction of packets delivered twice (up to 0.5)."""
    delay_ms_min: int = 1
    delay_ms_max: int = 10
    long_delay: float = 0.0
    """Fraction of packets delayed up to `long_delay_ms_max` (longer than the replica delay)."""
    long_delay_ms_max: int = 0
    slow_ms: int = 1_000
    """A packet delayed at least this long is reported as a fault."""

    def __post_init__(self) -> None:
        assert 0 <= self.loss <= 0.5 and 0 <= self.duplication <= 0.5, (self.loss, self.duplication)
        assert 0 <= self.delay_ms_min <= self.delay_ms_max, (self.delay_ms_min, self.delay_ms_max)
        assert 0 <= self.long_delay <= 1 and self.long_delay_ms_max >= 0


Payload = TypeVar("Payload")


@dataclass(slots=True, kw_only=True)
class Packet(Generic[Payload]):
    id: int
    sender: str
    to: str
    payload: Payload
    sent_ms: int


class Network(Generic[Payload]):
    """`on_fault(what, packet)` is told what happened ("lost", "cut", "duplicated", "slow",
    "held") to which packet."""

    def __init__(
        self,
        rng: random.Random,
        conditions: LinkConditions,
        schedule: Callable[[int, Packet[Payload]], None],
        on_fault: Callable[[str, Packet[Payload]], None],
    ) -> None:
        self.rng = rng
        self.conditions = conditions
        self._schedule = schedule
        self._on_fault = on_fault
        self._next_id = 1
        self.in_flight: dict[int, Packet[Payload]] = {}
        """Packets scheduled to arrive, by id, oldest first (a packet sent twice is here once)."""
        self._copies: dict[int, int] = {}
        """Arrivals still scheduled per packet id (a duplicated packet arrives twice)."""
        self.blocked: frozenset[Link] = frozenset()
        self.clogged: set[str] = set()
        self._held: list[Packet[Payload]] = []
        self.sent = 0
        self.delivered = 0
        self.dropped = 0

    # -- traffic ---------------------------------------------------------------------------------

    def send(self, now_ms: int, sender: str, to: str, payload: Payload) -> Packet[Payload]:
        packet = Packet(id=self._next_id, sender=sender, to=to, payload=payload, sent_ms=now_ms)
        self._next_id += 1
        self.sent += 1
        if sender in self.clogged or to in self.clogged:
            self._hold(packet)
            return packet
        if (sender, to) in self.blocked:
            self._drop(packet, "cut")
            return packet
        conditions = self.conditions
        if conditions.loss and self.rng.random() < conditions.loss:
            self._drop(packet, "lost")
            return packet
        self._launch(packet)
        if conditions.duplication and self.rng.random() < conditions.duplication:
            self._on_fault("duplicated", packet)
            self._launch(packet)
        return packet

    def arrive(self, packet: Packet[Payload]) -> bool:
        """Called at a scheduled arrival: whether the receiver gets the packet now."""
        copies = self._copies.get(packet.id, 0)
        if copies == 0:
            return False  # dropped by hand while in flight (the step-by-step test's "drop")
        if copies == 1:
            del self._copies[packet.id]
            del self.in_flight[packet.id]
        else:
            self._copies[packet.id] = copies - 1
        if packet.sender in self.clogged or packet.to in self.clogged:
            self._hold(packet)
            return False
        if (packet.sender, packet.to) in self.blocked:
            self._drop(packet, "cut")
            return False
        self.delivered += 1
        return True

    # -- faults ----------------------------------------------------------------------------------

    def cut(self, links: Iterable[Link]) -> None:
        """Block exactly `links` (replacing the links cut before)."""
        self.blocked = frozenset(links)

    def clog(self, node: str) -> None:
        self.clogged.add(node)

    def unclog(self, node: str) -> None:
        self.clogged.discard(node)
        held, self._held = self._held, []
        for packet in held:
            if packet.sender in self.clogged or packet.to in self.clogged:
                self._held.append(packet)
            else:
                self._launch(packet)

    def heal(self, conditions: LinkConditions) -> None:
        """Every link open, nothing clogged, and `conditions` from now on."""
        self.conditions = conditions
        self.blocked = frozenset()
        for node in sorted(self.clogged):
            self.unclog(node)

    def drop(self, packet_id: int) -> None:
        """Lose every scheduled arrival of an in-flight packet (a test's hand-made fault)."""
        packet = self.in_flight.pop(packet_id)
        del self._copies[packet_id]
        self._drop(packet, "lost")

    def duplicate(self, packet_id: int) -> None:
        """Deliver an in-flight packet once more (a test's hand-made fault)."""
        packet = self.in_flight[packet_id]
        self._on_fault("duplicated", packet)
        self._launch(packet)

    # -- inside ----------------------------------------------------------------------------------

    def _launch(self, packet: Packet[Payload]) -> None:
        conditions = self.conditions
        delay_ms = self.rng.randint(conditions.delay_ms_min, conditions.delay_ms_max)
        if conditions.long_delay and self.rng.random() < conditions.long_delay:
            delay_ms += self.rng.randint(0, conditions.long_delay_ms_max)
        if delay_ms >= conditions.slow_ms:
            self._on_fault("slow", packet)
        self.in_flight[packet.id] = packet
        self._copies[packet.id] = self._copies.get(packet.id, 0) + 1
        self._schedule(delay_ms, packet)

    def _hold(self, packet: Packet[Payload]) -> None:
        self._on_fault("held", packet)
        self._held.append(packet)

    def _drop(self, packet: Packet[Payload], why: str) -> None:
        self.dropped += 1
        self._on_fault(why, packet)
