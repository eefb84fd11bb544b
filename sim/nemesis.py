"""The nemesis: injects the run's faults during the safety phase, at random times.

It keeps a majority of nodes running (crashed, dead and paused nodes together stay below half,
but a lone node may go down), and never crashes a node when that would leave fewer than a
majority of the members with their memory (a restarted node is a new process, and only a
majority can let it back in), so that after the heal the cluster can converge. Every fault it
starts it also ends, unless the heal at the end of the safety phase ends it first; the end of
a fault already healed does nothing.

The restart faults (issue 11) are what a disk is for: with disks every node comes back as the
same member with its copies, so they may take the whole cluster down; in memory they keep the
rule above, except the whole-cluster restart and the founder's restart, which show what memory
alone gives up (a lost majority is reported, not failed).
"""

from __future__ import annotations

import random
from functools import partial
from typing import assert_never

from .partitions import make_partition
from .scenarios import FaultKind, RunConfig
from .world import NodeState, World

ROLLING_GAP_MS = (6_000, 10_000)
"""Between one node's restart and the next node's crash in a rolling restart: past the member
timeout, so each restarted node is back in before the next goes."""
ROLLING_DOWN_MS = (500, 3_000)


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
        self._rolling = False

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
            case FaultKind.CLUSTER_RESTART:
                self._restart_cluster()
            case FaultKind.ROLLING_RESTART:
                if not self._rolling and out == 0:
                    self._rolling = True
                    self._roll(0)
            case FaultKind.CRASH_IN_COMMIT:
                node = self.rng.choice(running) if running else ""
                if running and out < self._out_max and self._may_crash(node):
                    self._crash_in_commit(node)
            case FaultKind.DISK_LOST:
                node = self.rng.choice(running) if running else ""
                if running and out == 0 and world.keeps_quorum_without(node):
                    world.crash(node)
                    if world.config.disks:
                        world.lose_disk(node)
                    self._restart_later(node, seed_id=None)
            case FaultKind.FOUNDER_RESTART:
                founder = world.node_ids[0]
                if founder in running and out < self._out_max and self._may_crash(founder):
                    world.crash(founder)
                    self._restart_later(founder, seed_id=founder)  # its first command
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

    def _may_crash(self, node: str) -> bool:
        """With disks any crash is recoverable; in memory, one that keeps a majority."""
        return self.world.config.disks or self.world.keeps_quorum_without(node)

    def _restart_later(self, node: str, *, seed_id: str | None) -> None:
        """Restart `node` (through `seed_id`; None: a running member) after a fault's length,
        unless the heal restarted it first."""
        world = self.world
        world.later(self._duration_ms(), f"nemesis restart {node}", lambda: (
            world.restart(node, seed_id) if world.state(node) is NodeState.DOWN else None
        ))  # fmt: skip

    def _restart_cluster(self) -> None:
        """Every running node crashes at once; all start again together with their first
        commands (the founder founding, the others joining through it)."""
        world = self.world
        for node in world.ids_in(NodeState.UP, NodeState.PAUSED):
            world.crash(node)
        founder = world.node_ids[0]

        def restart_all() -> None:
            for node in world.node_ids:
                if world.state(node) is NodeState.DOWN:
                    world.restart(node, founder)

        world.later(self._duration_ms(), "nemesis restart the cluster", restart_all)

    def _roll(self, index: int) -> None:
        """Crash node `index` (if it may go), restart it with a running member as its seed,
        then go on to the next one after a gap."""
        world = self.world
        if self.stopped or index >= len(world.node_ids):
            self._rolling = False
            return
        node = world.node_ids[index]
        down_ms = self.rng.randint(*ROLLING_DOWN_MS)
        if world.state(node) is NodeState.UP and self._may_crash(node):
            world.crash(node)
            world.later(down_ms, f"nemesis rolling restart {node}", lambda: (
                world.restart(node) if world.state(node) is NodeState.DOWN else None
            ))  # fmt: skip
        gap_ms = down_ms + self.rng.randint(*ROLLING_GAP_MS)
        world.later(gap_ms, "nemesis rolling on", partial(self._roll, index + 1))

    def _crash_in_commit(self, node: str) -> None:
        """With disks, arm a crash for the node's next commit: during it or right after it;
        in memory, crash now. Either way the node restarts after a fault's length."""
        world = self.world
        if not world.config.disks:
            world.crash(node)
        else:
            world.nodes[node].crash_in_commit = self.rng.choice(("during", "after"))
        restart_ms = self._duration_ms()

        def restart_or_disarm() -> None:
            if world.state(node) is NodeState.DOWN:
                world.restart(node)
            else:
                world.nodes[node].crash_in_commit = None  # no commit came

        world.later(restart_ms, f"nemesis restart {node}", restart_or_disarm)

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
