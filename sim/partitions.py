"""Partition shapes (Jepsen's nemesis kinds) as the set of one-way links they cut.

Each function takes the node ids (in a fixed order) and an rng, and returns a `Partition`: the
links to cut and which nodes lost a link (for explaining duplicates later).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import assert_never

from .network import Link


class PartitionKind(enum.Enum):
    ISOLATE_ONE = "isolate_one"
    MAJORITY_MINORITY = "majority_minority"
    MAJORITIES_RING = "majorities_ring"
    BRIDGE = "bridge"
    RANDOM_HALVES = "random_halves"
    ISOLATE_LEADER = "isolate_leader"
    ONE_WAY = "one_way"


@dataclass(frozen=True, slots=True, kw_only=True)
class Partition:
    kind: PartitionKind
    blocked: frozenset[Link]
    description: str

    @property
    def affected(self) -> frozenset[str]:
        """Nodes with at least one cut link, either way."""
        return frozenset(node for link in self.blocked for node in link)


def _cut_unless(nodes: Sequence[str], can_talk: Callable[[str, str], bool]) -> frozenset[Link]:
    return frozenset((a, b) for a in nodes for b in nodes if a != b and not can_talk(a, b))


def _groups(nodes: Sequence[str], groups: Sequence[frozenset[str]]) -> frozenset[Link]:
    """Cut every link between two nodes that share no group."""
    return _cut_unless(nodes, lambda a, b: any(a in g and b in g for g in groups))


def _show(group: frozenset[str]) -> str:
    return "{" + ",".join(sorted(group)) + "}"


def isolate(nodes: Sequence[str], node: str, kind: PartitionKind) -> Partition:
    lonely = frozenset({node})
    rest = frozenset(nodes) - lonely
    return Partition(
        kind=kind,
        blocked=_groups(nodes, [lonely, rest]),
        description=f"{_show(lonely)} | {_show(rest)}",
    )


def majority_minority(nodes: Sequence[str], rng: random.Random) -> Partition:
    """A random minority (1 to (n-1)//2 nodes) cut from the rest."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    size = rng.randint(1, max(1, (len(nodes) - 1) // 2))
    minority, majority = frozenset(shuffled[:size]), frozenset(shuffled[size:])
    return Partition(
        kind=PartitionKind.MAJORITY_MINORITY,
        blocked=_groups(nodes, [minority, majority]),
        description=f"{_show(majority)} | {_show(minority)}",
    )


def random_halves(nodes: Sequence[str], rng: random.Random) -> Partition:
    """Shuffled and split in two halves: with an even count, neither side has a majority."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    half = len(nodes) // 2
    first, second = frozenset(shuffled[:half]), frozenset(shuffled[half:])
    return Partition(
        kind=PartitionKind.RANDOM_HALVES,
        blocked=_groups(nodes, [first, second]),
        description=f"{_show(first)} | {_show(second)}",
    )


def bridge(nodes: Sequence[str], rng: random.Random) -> Partition:
    """Two halves that cannot talk, and one node that talks to both."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    middle, rest = shuffled[0], shuffled[1:]
    half = len(rest) // 2
    left, right = frozenset(rest[:half]) | {middle}, frozenset(rest[half:]) | {middle}
    return Partition(
        kind=PartitionKind.BRIDGE,
        blocked=_groups(nodes, [left, right]),
        description=f"{_show(left)} | {_show(right)} bridged by {middle}",
    )


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> Partition:
    """Nodes on a ring each see their nearest neighbours: every node sees a majority, and no
    two see the same one (Jepsen's majorities-ring)."""
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    majority = n // 2 + 1
    reach = -(-(majority - 1) // 2)  # neighbours each side needed to see a majority
    position = {node: i for i, node in enumerate(ring)}

    def can_talk(a: str, b: str) -> bool:
        distance = abs(position[a] - position[b])
        return min(distance, n - distance) <= reach

    return Partition(
        kind=PartitionKind.MAJORITIES_RING,
        blocked=_cut_unless(nodes, can_talk),
        description=f"ring {' '.join(ring)}, each sees {reach} neighbour(s) each side",
    )


def one_way(nodes: Sequence[str], rng: random.Random) -> Partition:
    """A few links cut in one direction only: a hears b, b does not hear a."""
    pairs = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :]]
    count = rng.randint(1, max(1, len(pairs) // 2)) if pairs else 0
    cut = frozenset((a, b) if rng.random() < 0.5 else (b, a) for a, b in rng.sample(pairs, count))
    shown = ", ".join(f"{a}->{b}" for a, b in sorted(cut))
    return Partition(kind=PartitionKind.ONE_WAY, blocked=cut, description=f"one-way {shown}")


def make_partition(
    kind: PartitionKind, nodes: Sequence[str], rng: random.Random, leader: str | None
) -> Partition:
    """A partition of `kind` over `nodes`; `leader` is the node ISOLATE_LEADER cuts off (a
    random node when no leader is known)."""
    match kind:
        case PartitionKind.ISOLATE_ONE:
            return isolate(nodes, rng.choice(nodes), kind)
        case PartitionKind.ISOLATE_LEADER:
            return isolate(nodes, leader if leader is not None else rng.choice(nodes), kind)
        case PartitionKind.MAJORITY_MINORITY:
            return majority_minority(nodes, rng)
        case PartitionKind.MAJORITIES_RING:
            return majorities_ring(nodes, rng)
        case PartitionKind.BRIDGE:
            return bridge(nodes, rng)
        case PartitionKind.RANDOM_HALVES:
            return random_halves(nodes, rng)
        case PartitionKind.ONE_WAY:
            return one_way(nodes, rng)
        case _:
            assert_never(kind)
