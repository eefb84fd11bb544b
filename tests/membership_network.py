"""A tiny in-memory network of `Membership` machines for the election and membership tests.

One virtual clock; every message goes through the real codec (bytes on the "wire"); links can be
cut one way or both, messages lost or delayed at random from one seed; nodes crash (memory lost)
and restart as new incarnations. After every step it checks the safety rules across the whole
cluster, so every scenario test is also a safety test:

- at most one leader per term (counting processes: id and incarnation);
- a node's shown epoch never decreases;
- two nodes that show the same epoch show the same members.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from miyamoto.logic import codec
from miyamoto.logic.membership import ClusterTiming, Membership, Role
from miyamoto.logic.messages import MEMBERSHIP_MESSAGE_TYPES, Outgoing

FAST = ClusterTiming(
    heartbeat_interval_ms=50,
    election_timeout_min_ms=250,
    election_timeout_max_ms=500,
    member_timeout_ms=1_250,
    join_retry_min_ms=50,
    join_retry_max_ms=500,
)
"""The defaults divided by four: the same ratios, fewer steps per simulated second."""


def node_ids(count: int) -> list[str]:
    return [f"10.0.0.{i}:7000" for i in range(1, count + 1)]


@dataclass(order=True)
class _InFlight:
    deliver_at_ms: int
    seq: int
    sender: str = field(compare=False)
    to: str = field(compare=False)
    data: bytes = field(compare=False)


class Network:
    def __init__(
        self,
        *,
        seed: int = 0,
        timing: ClusterTiming = FAST,
        latency_ms: tuple[int, int] = (1, 5),
        loss: float = 0.0,
        duplication: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.timing = timing
        self.latency_ms = latency_ms
        self.loss = loss
        self.duplication = duplication
        """Fraction of messages delivered twice (each copy with its own delay: reordering)."""
        self.now_ms = 0
        self.nodes: dict[str, Membership] = {}
        """Live nodes only."""
        self.restarts: dict[str, int] = {}
        self.cut: set[tuple[str, str]] = set()
        """(sender, receiver) links that drop everything."""
        self.in_flight: list[_InFlight] = []
        self.seq = 0
        self.delivered = 0
        self.leader_of_term: dict[tuple[int, int], tuple[str, int]] = {}
        """(cluster id, term) -> (id, incarnation) of the one leader seen in it."""
        self.epoch_floor: dict[tuple[str, int], int] = {}
        self.members_of_epoch: dict[tuple[int, int], tuple[str, ...]] = {}

    # -- building and breaking ---------------------------------------------------------------------

    def start(self, node_id: str, seed_id: str) -> Membership:
        assert node_id not in self.nodes, node_id
        restarts = self.restarts.get(node_id, -1) + 1
        self.restarts[node_id] = restarts
        machine = Membership(
            self_id=node_id,
            seed_id=seed_id,
            config=self.timing,
            rng=random.Random(f"{self.seed}:{node_id}:{restarts}"),
            now_ms=self.now_ms,
        )
        self.nodes[node_id] = machine
        self.check()
        return machine

    def start_cluster(self, count: int) -> list[str]:
        """The first node founds the cluster, the others join through it; wait until all are
        acknowledged members."""
        ids = node_ids(count)
        self.start(ids[0], ids[0])
        for node_id in ids[1:]:
            self.start(node_id, ids[0])
        assert self.run_until(lambda: self.converged(ids), 30_000), self.describe()
        return ids

    def crash(self, node_id: str) -> None:
        del self.nodes[node_id]

    def partition(self, *groups: list[str]) -> None:
        """Cut every link between nodes of different groups (both ways)."""
        for i, group in enumerate(groups):
            for other in groups[i + 1 :]:
                for a in group:
                    for b in other:
                        self.cut.add((a, b))
                        self.cut.add((b, a))

    def heal(self) -> None:
        self.cut.clear()

    # -- running -----------------------------------------------------------------------------------

    def send(self, sender: str, outgoing: list[Outgoing]) -> None:
        for item in outgoing:
            assert item.envelope.sender == sender
            if (sender, item.to) in self.cut or self.rng.random() < self.loss:
                continue
            data = codec.encode(item.envelope)
            copies = 2 if self.rng.random() < self.duplication else 1
            for _ in range(copies):
                self.seq += 1
                delay = self.rng.randint(*self.latency_ms)
                arrival = _InFlight(self.now_ms + delay, self.seq, sender, item.to, data)
                heapq.heappush(self.in_flight, arrival)

    def deliver(self, node_id: str, data: bytes) -> None:
        machine = self.nodes.get(node_id)
        if machine is None:
            return
        envelope = codec.decode(data)
        assert isinstance(envelope.message, MEMBERSHIP_MESSAGE_TYPES)
        self.delivered += 1
        self.send(node_id, machine.handle_message(envelope, self.now_ms))

    def step(self, until_ms: int) -> bool:
        """Run the earliest event due by `until_ms`; False when there is none."""
        timers = [
            (deadline, node_id)
            for node_id, machine in sorted(self.nodes.items())
            if (deadline := machine.next_deadline_ms()) is not None
        ]
        next_timer = min(timers, default=None)
        next_message = self.in_flight[0] if self.in_flight else None
        candidates = []
        if next_timer is not None:
            candidates.append(next_timer[0])
        if next_message is not None:
            candidates.append(next_message.deliver_at_ms)
        if not candidates or min(candidates) > until_ms:
            return False
        at_ms = min(candidates)
        self.now_ms = max(self.now_ms, at_ms)
        if next_message is not None and next_message.deliver_at_ms == at_ms:
            heapq.heappop(self.in_flight)
            if (next_message.sender, next_message.to) not in self.cut:
                self.deliver(next_message.to, next_message.data)
        else:
            assert next_timer is not None
            node_id = next_timer[1]
            self.send(node_id, self.nodes[node_id].handle_timer(self.now_ms))
        self.check()
        return True

    def run_for(self, duration_ms: int) -> None:
        until_ms = self.now_ms + duration_ms
        while self.step(until_ms):
            pass
        self.now_ms = until_ms

    def run_until(self, predicate: Callable[[], bool], within_ms: int) -> bool:
        """Run until `predicate()` holds (checked after every event), at most `within_ms`."""
        until_ms = self.now_ms + within_ms
        while not predicate():
            if not self.step(until_ms):
                self.now_ms = until_ms
                return predicate()
        return True

    # -- looking -----------------------------------------------------------------------------------

    def leaders(self) -> list[str]:
        return sorted(n for n, m in self.nodes.items() if m.view().role is Role.LEADER)

    def converged(self, ids: list[str]) -> bool:
        """One leader, and every node in `ids` alive, following it and showing exactly `ids`
        (the processes running now) as the acknowledged members."""
        leaders = self.leaders()
        if len(leaders) != 1 or any(n not in self.nodes for n in ids):
            return False
        expected = {n: self.nodes[n].incarnation for n in sorted(ids)}
        for node_id in ids:
            v = self.nodes[node_id].view()
            shown = {m.id: m.incarnation for m in v.members}
            if shown != expected or v.role is Role.JOINING or v.leader != leaders[0]:
                return False
            if v.latest_epoch != v.epoch:
                return False
        return True

    def newest_list_lost_its_majority(self) -> bool:
        """Whether the newest member list any live node holds has lost a majority of its
        processes. No election can succeed then (its holders refuse older candidates and cannot
        win without the dead): the one way a cluster without disks gets stuck. It takes a crash
        of a majority, or of one member of a two-member list, before the leader removed them."""
        if not self.nodes:
            return True
        newest = max((m.view().latest for m in self.nodes.values()), key=lambda x: x.version)
        alive = sum(
            1
            for member in newest.members
            if member.id in self.nodes and self.nodes[member.id].incarnation == member.incarnation
        )
        return alive < newest.majority

    def describe(self) -> str:
        lines = [f"t={self.now_ms}ms seed={self.seed}"]
        for node_id, machine in sorted(self.nodes.items()):
            v = machine.view()
            lines.append(
                f"  {node_id} {v.role.value} term={v.term} leader={v.leader} epoch={v.epoch}"
                f"/{v.latest_epoch} members={v.member_ids}"
            )
        return "\n".join(lines)

    def check(self) -> None:
        for node_id, machine in self.nodes.items():
            v = machine.view()
            if v.role is Role.LEADER:
                key = (v.cluster_id, v.term)
                process = (node_id, v.incarnation)
                first = self.leader_of_term.setdefault(key, process)
                assert first == process, f"two leaders in term {v.term}: {first} and {process}"
            floor_key = (node_id, v.incarnation)
            assert v.epoch >= self.epoch_floor.get(floor_key, 0), (node_id, v.epoch)
            self.epoch_floor[floor_key] = v.epoch
            if v.cluster_id:
                known = self.members_of_epoch.setdefault((v.cluster_id, v.epoch), v.member_ids)
                assert known == v.member_ids, (v.epoch, known, v.member_ids)
            assert v.stats.dropped_conflicting_leader == 0, node_id
            assert v.stats.epoch_regressions_refused == 0, node_id
