"""The simulated world driven step by step by hypothesis: a failure shrinks to a minimal schedule
of faults and client actions.

Rules enqueue, cancel, step, advance time, drop and duplicate packets in flight, crash, restart,
pause, resume, partition and heal. After every rule the checkers that can judge at once must be
quiet (no unexpected, early or cancelled delivery, no second leader in a term, no epoch going
back, no node raising); at the end the world is healed, runs its liveness phase, and the whole
report must be clean (nothing lost, every duplicate explained by a fault, convergence).
"""

from __future__ import annotations

import os
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sim.partitions import PartitionKind, make_partition
from sim.receivers import HEALTHY
from sim.run import HEALED_LINKS, build, liveness_phase
from sim.scenarios import Shape, draw_config
from sim.trace import Trace
from sim.workload import TaskPlan
from sim.world import NodeState

NODES = 3


class SimulatedCluster(RuleBasedStateMachine):
    plans = Bundle("plans")

    def __init__(self) -> None:
        super().__init__()
        shape = Shape(nodes=NODES, replicas=2, tasks=0, limits="none", id_reuse=False)
        config = draw_config(1, "calm", shape)
        self.config = replace(config, receivers=HEALTHY, wire_codec=True)
        self.world, self.checker, self.workload = build(self.config, Trace())
        self.world.run_until(self.world.now_ms + 3_000)  # the nodes join the first
        self.next_index = 0

    def _node(self, index: int) -> str:
        return self.world.node_ids[index % NODES]

    # -- clients ---------------------------------------------------------------------------------

    @initialize(target=plans)
    def first_task(self) -> TaskPlan:
        return self._enqueue(0, 1_000)

    @rule(target=plans, node=st.integers(0, NODES - 1), countdown_ms=st.integers(0, 8_000))
    def enqueue(self, node: int, countdown_ms: int) -> TaskPlan:
        return self._enqueue(node, countdown_ms)

    def _enqueue(self, node: int, countdown_ms: int) -> TaskPlan:
        plan = self.workload.plan(self.next_index, home=self._node(node), countdown_ms=countdown_ms)
        self.next_index += 1
        self.workload.enqueue(plan)
        return plan

    @rule(plan=plans)
    def repeat_enqueue(self, plan: TaskPlan) -> None:
        self.workload.repeat(plan)

    @rule(plan=plans)
    def cancel(self, plan: TaskPlan) -> None:
        self.workload.cancel(plan)

    # -- time ------------------------------------------------------------------------------------

    @rule(steps=st.integers(1, 50))
    def step(self, steps: int) -> None:
        for _ in range(steps):
            self.world.step()

    @rule(ms=st.integers(1, 15_000))
    def advance(self, ms: int) -> None:
        self.world.run_until(self.world.now_ms + ms)

    # -- the network -----------------------------------------------------------------------------

    @precondition(lambda self: self.world.network.in_flight)
    @rule(which=st.integers(0, 10**6))
    def drop(self, which: int) -> None:
        in_flight = list(self.world.network.in_flight)
        self.world.network.drop(in_flight[which % len(in_flight)])

    @precondition(lambda self: self.world.network.in_flight)
    @rule(which=st.integers(0, 10**6))
    def duplicate(self, which: int) -> None:
        in_flight = list(self.world.network.in_flight)
        self.world.network.duplicate(in_flight[which % len(in_flight)])

    @rule(kind=st.sampled_from(list(PartitionKind)), seed=st.integers(0, 2**32))
    def partition(self, kind: PartitionKind, seed: int) -> None:
        partition = make_partition(kind, self.world.node_ids, random.Random(seed), None)
        self.world.cut(partition)

    @rule()
    def heal_partition(self) -> None:
        self.world.heal_partition()

    # -- nodes -----------------------------------------------------------------------------------

    @rule(node=st.integers(0, NODES - 1))
    def crash(self, node: int) -> None:
        if self.world.state(self._node(node)) in (NodeState.UP, NodeState.PAUSED):
            self.world.crash(self._node(node))

    @rule(node=st.integers(0, NODES - 1))
    def restart(self, node: int) -> None:
        if self.world.state(self._node(node)) is NodeState.DOWN:
            self.world.restart(self._node(node))

    @rule(node=st.integers(0, NODES - 1))
    def pause(self, node: int) -> None:
        if self.world.state(self._node(node)) is NodeState.UP:
            self.world.pause(self._node(node))

    @rule(node=st.integers(0, NODES - 1))
    def resume(self, node: int) -> None:
        if self.world.state(self._node(node)) is NodeState.PAUSED:
            self.world.resume(self._node(node))

    # -- the checks ------------------------------------------------------------------------------

    @invariant()
    def nothing_wrong_so_far(self) -> None:
        assert self.checker.violations == [], [str(v) for v in self.checker.violations]

    def teardown(self) -> None:
        world = self.world
        world.heal(HEALED_LINKS)
        liveness_phase(world, self.checker, self.config)
        world.run_until(world.now_ms + self.checker.bounds.duplicate_window_ms)
        report = self.checker.report(world.now_ms)
        assert report.violations == [], [str(v) for v in report.violations]


# CI runs the same 1,000 schedules every time (derandomize: never flaky, ~40 s). To explore
# new ones, `SIM_EXPLORE=20000 pytest tests/test_sim_stateful.py` draws that many at random.
EXPLORE = int(os.environ.get("SIM_EXPLORE", "0"))
SimulatedCluster.TestCase.settings = settings(
    max_examples=EXPLORE or 1000,
    stateful_step_count=50,
    deadline=None,
    # No shrinking while the schedules are known to fail (below): CI would spend minutes
    # shrinking a failure it expects. SIM_EXPLORE runs shrink as before.
    phases=[p for p in Phase if p is not Phase.shrink] if not EXPLORE else list(Phase),
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSimulatedCluster = SimulatedCluster.TestCase
# Root cause C is fixed; its derandomized schedules now reach what is left of root cause B
# (issue 10): a task cancelled on some holders while a partition heals (partition, cancel,
# restart, heal) keeps a copy on one holder only (under_replicated). In the one run diagnosed
# (python -m sim --seed 1 --scenario isolate_one) the holders that cancelled their copies
# acknowledge the re-sent copy without storing it. Strict, so the fix turns this red.
TestSimulatedCluster = pytest.mark.xfail(
    strict=True, reason="root cause B: a half-cancelled task is left under-replicated"
)(TestSimulatedCluster)
# The schedules it found and shrank are replayed in tests/test_sim_stateful_regressions.py.
