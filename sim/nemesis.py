"""The nemesis: injects the run's faults during the safety phase, at random times.

It keeps a majority of nodes running (crashed, dead and paused nodes together stay below half,
but a lone node may go down), and never crashes a node when that would leave fewer than a
majority of the members with their memory (a restarted node is a new process, and only a
majority can let it back in), so that after the heal the cluster can converge. Every fault it
starts it also ends, unless the heal at the end of the safety phase ends it first; the end of
a fault already healed does nothing.
"""

from __future__ import annotations

import random
from functools import partial
from typing import assert_never

from .partitions import make_partition
from .scenarios import FaultKind, RunConfig
from .world import NodeState, World


class Nemesis:
    def __init__(self, world: World, config: RunConfig, rng: random.Random) -> None:
        self.world = world
        self.config = config
        self.rng = rng
        self.end_ms = world.now_ms
        self._swizzling = False
        self.stopped = False
        n = len(world.node_ids)
        self._out_max = max(1, (n - 1) // 2)
        """Nodes crashed, dead or paused at once, at most."""
        self._dead_max = (n - 1) // 2

    def start(self, end_ms: int) -> None:
        """Inject faults until `end_ms`."""
        self.end_ms = end_ms
        if self.config.faults:
            # The first fault comes early enough that no run of a fault scenario goes without.
            room_ms = (end_ms - self.world.now_ms) // 2
            first_ms = self.rng.randint(0, min(self.config.fault_interval_ms, room_ms))
            self.world.later(first_ms, "nemesis", self._strike)

    def stop(self) -> None:
        """No new fault from now on (faults already started may still end on their own)."""
        self.stopped = True

    def _schedule_next(self) -> None:
        delay_ms = round(self.rng.expovariate(1 / self.config.fault_interval_ms))
        if self.world.now_ms + delay_ms < self.end_ms:
            self.world.later(delay_ms, "nemesis", self._strike)

    def _duration_ms(self) -> int:
        return self.rng.randint(200, self.config.fault_duration_ms_max)

    def _strike(self) -> None:
        if self.stopped:
            return
        kind = self.rng.choice(self.config.faults)
        self._inject(kind)
        self._schedule_next()

    def _inject(self, kind: FaultKind) -> None:
        world = self.world
        running = world.ids_in(NodeState.UP)
        out = len(world.node_ids) - len(running)
        match kind:
            case FaultKind.CRASH_RESTART:
                node = self.rng.choice(running) if running else ""
                if running and out < self._out_max and world.keeps_quorum_without(node):
                    world.crash(node)
                    world.later(self._duration_ms(), f"nemesis restart {node}", lambda: (
                        world.restart(node) if world.state(node) is NodeState.DOWN else None
                    ))  # fmt: skip
            case FaultKind.CRASH_PERMANENT:
                dead = len(world.ids_in(NodeState.DEAD))
                node = self.rng.choice(running) if running else ""
                if (
                    running
                    and out < self._out_max
                    and dead < self._dead_max
                    and world.keeps_quorum_without(node)
                ):
                    world.crash(node, permanent=True)
            case FaultKind.PAUSE:
                if running and out < self._out_max:
                    node = self.rng.choice(running)
                    world.pause(node)
                    world.later(self._duration_ms(), f"nemesis resume {node}", lambda: (
                        world.resume(node) if world.state(node) is NodeState.PAUSED else None
                    ))  # fmt: skip
            case FaultKind.SWIZZLE_CLOG:
                if not self._swizzling:
                    self._swizzle()
            case (
                FaultKind.ISOLATE_ONE
                | FaultKind.MAJORITY_MINORITY
                | FaultKind.MAJORITIES_RING
                | FaultKind.BRIDGE
                | FaultKind.RANDOM_HALVES
                | FaultKind.ISOLATE_LEADER
                | FaultKind.ONE_WAY
            ):
                partition_kind = kind.partition
                assert partition_kind is not None
                partition = make_partition(partition_kind, world.node_ids, self.rng, world.leader())
                world.cut(partition)
                world.later(self._duration_ms(), "nemesis heal partition", lambda: (
                    world.heal_partition() if world.partition is partition else None
                ))  # fmt: skip
            case _:
                assert_never(kind)

    def _swizzle(self) -> None:
        """FoundationDB's swizzle-clog: clog a random subset of nodes one by one, then unclog
        them in a random order."""
        world, rng = self.world, self.rng
        nodes = rng.sample(world.node_ids, rng.randint(1, len(world.node_ids)))
        self._swizzling = True
        at_ms = 0
        for node in nodes:
            at_ms += rng.randint(100, 2_000)
            world.later(at_ms, f"nemesis clog {node}", partial(self._clog, node))
        at_ms += self._duration_ms()
        for node in rng.sample(nodes, len(nodes)):
            at_ms += rng.randint(100, 2_000)
            world.later(at_ms, f"nemesis unclog {node}", partial(world.unclog, node))
        world.later(at_ms, "nemesis swizzle done", self._swizzle_done)

    def _clog(self, node: str) -> None:
        if not self.stopped:
            self.world.clog(node)

    def _swizzle_done(self) -> None:
        self._swizzling = False
