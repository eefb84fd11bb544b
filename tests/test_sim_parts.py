"""The simulator's parts on their own: clock, clocks, network, partitions, trace, receivers."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.events import DeliveryError
from sim.agenda import Agenda
from sim.clocks import NodeClock, error_span_ms
from sim.network import LinkConditions, Network, Packet
from sim.partitions import PartitionKind, make_partition
from sim.receivers import Behaviour, ReceiverMix, decide
from sim.trace import Trace, TracedRandom

NODES = ("a", "b", "c", "d", "e")


def test_agenda_pops_in_time_order_and_keeps_scheduling_order_within_a_millisecond() -> None:
    agenda: Agenda[str] = Agenda(100)
    agenda.at(105, "late")
    agenda.at(101, "first")
    agenda.at(101, "second")
    agenda.after(0, "now")
    popped = [(agenda.pop(), agenda.now_ms) for _ in range(4)]
    assert popped == [("now", 100), ("first", 101), ("second", 101), ("late", 105)]


@given(
    offset_ms=st.integers(-5_000, 5_000),
    drift_ppm=st.integers(-90_000, 90_000),
    local_ms=st.integers(-(10**9), 10**9),
)
def test_a_clock_reaches_a_local_time_at_the_earliest_true_time_that_shows_it(
    offset_ms: int, drift_ppm: int, local_ms: int
) -> None:
    clock = NodeClock(start_ms=0, offset_ms=offset_ms, drift_ppm=drift_ppm)
    true_ms = clock.true_ms_at(local_ms)
    assert clock.local_ms(true_ms) >= local_ms
    assert clock.local_ms(true_ms - 1) < local_ms


def test_the_clock_error_span_covers_offsets_drift_and_true_time() -> None:
    fast = NodeClock(start_ms=0, offset_ms=100, drift_ppm=1_000)  # +1 ms per second
    slow = NodeClock(start_ms=0, offset_ms=-50)
    assert error_span_ms([fast, slow], 0, 10_000) == 110 + 50
    assert error_span_ms([NodeClock(start_ms=0, offset_ms=30)], 0, 10_000) == 30  # vs true time


class _Wire:
    """A network whose scheduled arrivals are collected instead of timed."""

    def __init__(self, conditions: LinkConditions, seed: int = 1) -> None:
        self.arrivals: list[tuple[int, Packet[str]]] = []
        self.faults: list[tuple[str, int]] = []
        self.network: Network[str] = Network(
            random.Random(seed),
            conditions,
            lambda delay_ms, packet: self.arrivals.append((delay_ms, packet)),
            lambda what, packet: self.faults.append((what, packet.id)),
        )

    def deliver_all(self) -> list[str]:
        arrivals, self.arrivals = self.arrivals, []
        return [p.payload for _, p in arrivals if self.network.arrive(p)]


def test_loss_and_duplication_happen_at_about_their_rates() -> None:
    wire = _Wire(LinkConditions(loss=0.2, duplication=0.3))
    for i in range(5_000):
        wire.network.send(0, "a", "b", str(i))
    got = Counter(wire.deliver_all())
    lost = 5_000 - len(got)
    doubled = sum(1 for n in got.values() if n == 2)
    assert 900 < lost < 1_100
    assert 0.25 < doubled / len(got) < 0.35
    assert Counter(what for what, _ in wire.faults) == {"lost": lost, "duplicated": doubled}


def test_delays_spread_packets_so_they_reorder_and_long_ones_are_reported() -> None:
    wire = _Wire(LinkConditions(delay_ms_min=1, delay_ms_max=50, long_delay=0.1,
                                long_delay_ms_max=10_000, slow_ms=1_000))  # fmt: skip
    for i in range(1_000):
        wire.network.send(0, "a", "b", str(i))
    delays = [d for d, _ in wire.arrivals]
    assert min(delays) >= 1 and max(delays) > 1_000
    in_arrival_order = [int(p.payload) for _, p in sorted(wire.arrivals, key=lambda a: a[0])]
    assert in_arrival_order != sorted(in_arrival_order)
    slow = {packet_id for what, packet_id in wire.faults if what == "slow"}
    assert slow == {p.id for d, p in wire.arrivals if d >= 1_000}


def test_a_cut_link_drops_one_direction_only_even_for_packets_already_in_flight() -> None:
    wire = _Wire(LinkConditions())
    wire.network.send(0, "a", "b", "in flight a>b")
    wire.network.send(0, "b", "a", "in flight b>a")
    wire.network.cut([("a", "b")])
    wire.network.send(0, "a", "b", "after a>b")
    wire.network.send(0, "b", "a", "after b>a")
    assert wire.deliver_all() == ["in flight b>a", "after b>a"]
    assert [what for what, _ in wire.faults] == ["cut", "cut"]


def test_a_clogged_node_gets_its_packets_late_not_never() -> None:
    wire = _Wire(LinkConditions())
    wire.network.clog("b")
    wire.network.send(0, "a", "b", "held")
    wire.network.send(0, "a", "c", "free")
    assert wire.deliver_all() == ["free"]
    wire.network.unclog("b")
    assert wire.deliver_all() == ["held"]


def test_a_packet_dropped_or_duplicated_by_hand_arrives_never_or_twice() -> None:
    wire = _Wire(LinkConditions())
    dropped = wire.network.send(0, "a", "b", "dropped")
    doubled = wire.network.send(0, "a", "b", "doubled")
    wire.network.drop(dropped.id)
    wire.network.duplicate(doubled.id)
    assert wire.deliver_all() == ["doubled", "doubled"]
    assert not wire.network.in_flight


def _talks(blocked: frozenset[tuple[str, str]], a: str, b: str) -> bool:
    return (a, b) not in blocked and (b, a) not in blocked


@given(st.randoms(use_true_random=False), st.integers(3, 9))
def test_majorities_ring_each_node_sees_a_majority_and_no_two_the_same(
    rng: random.Random, n: int
) -> None:
    nodes = [f"n{i}" for i in range(n)]
    partition = make_partition(PartitionKind.MAJORITIES_RING, nodes, rng, None)
    seen = {a: frozenset(b for b in nodes if b == a or _talks(partition.blocked, a, b))
            for a in nodes}  # fmt: skip
    assert all(len(s) > n // 2 for s in seen.values())
    if n >= 4:  # with three nodes a majority of each is everyone: no cut is possible
        assert len(set(seen.values())) == n


@given(st.randoms(use_true_random=False))
def test_partition_shapes(rng: random.Random) -> None:
    nodes = list(NODES)
    minority = make_partition(PartitionKind.MAJORITY_MINORITY, nodes, rng, None)
    sides = _sides(minority.blocked, nodes)
    assert sorted(len(s) for s in sides) in ([1, 4], [2, 3])

    leader = make_partition(PartitionKind.ISOLATE_LEADER, nodes, rng, "c")
    assert _sides(leader.blocked, nodes) == [frozenset("c"), frozenset("abde")]

    bridge = make_partition(PartitionKind.BRIDGE, nodes, rng, None)
    middle = [a for a in nodes if all(_talks(bridge.blocked, a, b) for b in nodes if b != a)]
    assert len(middle) == 1
    others = [a for a in nodes if a not in middle]
    assert sum(_talks(bridge.blocked, a, b) for a in others for b in others if a < b) == 2

    one_way = make_partition(PartitionKind.ONE_WAY, nodes, rng, None)
    assert one_way.blocked and all((b, a) not in one_way.blocked for a, b in one_way.blocked)


def _sides(blocked: frozenset[tuple[str, str]], nodes: list[str]) -> list[frozenset[str]]:
    sides = {frozenset(b for b in nodes if b == a or _talks(blocked, a, b)) for a in nodes}
    return sorted(sides, key=lambda s: (len(s), sorted(s)))


def test_the_trace_hash_changes_with_any_draw_or_event_and_only_with_them() -> None:
    def digest(events: list[str], draws: int) -> str:
        trace = Trace()
        rng = TracedRandom("seed", trace)
        for _ in range(draws):
            rng.random()
        rng.randrange(1000)
        for line in events:
            trace.event(line)
        return trace.digest()

    assert digest(["a", "b"], 3) == digest(["a", "b"], 3)
    assert digest(["a", "b"], 3) != digest(["a", "c"], 3)
    assert digest(["a", "b"], 3) != digest(["a", "b"], 4)
    assert digest(["ab"], 3) != digest(["a", "b"], 3)


def test_receivers_answer_as_their_mix_says_and_never_after_the_deadline() -> None:
    rng = random.Random(3)
    mix = ReceiverMix(error=0.2, hang=0.1, slow=0.2, refused=0.1)
    outcomes = [decide(rng, mix, 10_000) for _ in range(10_000)]
    counts = Counter(o.behaviour for o in outcomes)
    assert 1_800 < counts[Behaviour.ERROR] < 2_200 and 800 < counts[Behaviour.HANG] < 1_200
    for o in outcomes:
        assert o.after_ms <= 10_000
        if o.behaviour is Behaviour.HANG:
            assert (o.processed_status, o.error, o.after_ms) == (
                None,
                DeliveryError.TIMEOUT,
                10_000,
            )
        if o.behaviour in (Behaviour.OK, Behaviour.SLOW):
            assert o.processed_status == o.status == 200
