"""The named scenarios of the matrix, and the swarm configuration a seed draws for a run.

A scenario says which faults may happen; the seed says how many nodes, how strong the faults
are, how often they come, how skewed the clocks run (TigerBeetle's swarm testing). The whole
configuration is printed after `SEED=`, so a run can be understood before it is replayed.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from .clocks import NodeClock
from .limits import QueueLimits, draw_limits
from .network import LinkConditions
from .partitions import PartitionKind
from .receivers import ReceiverMix


class FaultKind(enum.Enum):
    CRASH_RESTART = "crash_restart"
    CRASH_PERMANENT = "crash_permanent"
    PAUSE = "pause"
    SWIZZLE_CLOG = "swizzle_clog"
    ISOLATE_ONE = "isolate_one"
    MAJORITY_MINORITY = "majority_minority"
    MAJORITIES_RING = "majorities_ring"
    BRIDGE = "bridge"
    RANDOM_HALVES = "random_halves"
    ISOLATE_LEADER = "isolate_leader"
    ONE_WAY = "one_way"
    # Restarts (issue 11): each runs in memory and with disks (`--disks`).
    CLUSTER_RESTART = "cluster_restart"
    ROLLING_RESTART = "rolling_restart"
    CRASH_IN_COMMIT = "crash_in_commit"
    DISK_LOST = "disk_lost"
    FOUNDER_RESTART = "founder_restart"

    @property
    def partition(self) -> PartitionKind | None:
        """The partition this fault makes, if it is one."""
        try:
            return PartitionKind(self.value)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str
    faults: tuple[FaultKind, ...] = ()
    lossy_network: bool = False
    """Loss (up to 30%), duplication (up to 50%), reordering, delays past the replica delay."""
    clock_skew: bool = False
    flaky_receivers: bool = False
    swarm: bool = False
    """Draw the faults, network, clocks and receivers from the seed."""
    queue_limits: bool = False
    """Always a rate-limited and a capped queue, with bursts, and reused ids (otherwise the
    seed draws whether a run has them, in every scenario)."""
    retry_limits: bool = False
    """Every queue has a finite retry policy (sim/retry_limits.py), receivers fail often, no
    queue is rate-limited or capped."""


SWARM_FAULTS = tuple(FaultKind)[: list(FaultKind).index(FaultKind.ONE_WAY) + 1]
"""The faults a swarm run draws from: the restarts came later, and drawing from more kinds would
change what every swarm seed found before."""

RESTART_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="cluster_restart",
        description="every node crashes at once and starts again with its first command",
        faults=(FaultKind.CLUSTER_RESTART,),
    ),
    Scenario(
        name="rolling_restart",
        description="each node in turn crashes and restarts, a few seconds apart",
        faults=(FaultKind.ROLLING_RESTART,),
    ),
    Scenario(
        name="crash_in_commit",
        description="with disks, a node crashes during a commit (lost) or right after it, "
        "before the answers and messages it held (kept); in memory, a crash",
        faults=(FaultKind.CRASH_IN_COMMIT,),
    ),
    Scenario(
        name="disk_lost",
        description="a node's disk is lost: it restarts empty under the same address",
        faults=(FaultKind.DISK_LOST,),
    ),
    Scenario(
        name="founder_restart",
        description="the founder crashes and restarts with its first command (founding)",
        faults=(FaultKind.FOUNDER_RESTART,),
    ),
)

RESTART_SCENARIO_NAMES = frozenset(s.name for s in RESTART_SCENARIOS)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(name="calm", description="no faults: no task may be delivered twice"),
        *(
            Scenario(name=kind.value, description=f"partitions: {kind.value}", faults=(kind,))
            for kind in (
                FaultKind.ISOLATE_ONE,
                FaultKind.MAJORITY_MINORITY,
                FaultKind.MAJORITIES_RING,
                FaultKind.BRIDGE,
                FaultKind.RANDOM_HALVES,
                FaultKind.ISOLATE_LEADER,
                FaultKind.ONE_WAY,
            )
        ),
        Scenario(
            name="swizzle_clog",
            description="links of a few nodes stopped one by one, restored in random order",
            faults=(FaultKind.SWIZZLE_CLOG,),
        ),
        Scenario(
            name="crash_restart",
            description="nodes crash and restart with their memory lost",
            faults=(FaultKind.CRASH_RESTART,),
        ),
        Scenario(
            name="crash_permanent",
            description="a minority of nodes crash for good",
            faults=(FaultKind.CRASH_PERMANENT,),
        ),
        Scenario(
            name="pause",
            description="nodes stop, then resume with stale state and timers",
            faults=(FaultKind.PAUSE,),
        ),
        Scenario(name="clock_skew", description="clock offsets and drift", clock_skew=True),
        Scenario(
            name="lossy_network",
            description="loss, duplication, reordering, long delays",
            lossy_network=True,
        ),
        Scenario(
            name="flaky_receivers",
            description="webhooks answer 5xx, hang, answer slowly, refuse",
            flaky_receivers=True,
        ),
        Scenario(name="swarm", description="a mix of everything, drawn from the seed", swarm=True),
        Scenario(
            name="rate_limited",
            description="a rate-limited and a capped queue, bursts due at once, while nodes "
            "crash, pause and are cut off (member lists change)",
            faults=(FaultKind.CRASH_RESTART, FaultKind.PAUSE, FaultKind.ISOLATE_ONE),
            queue_limits=True,
        ),
        Scenario(
            name="retry_limits",
            description="finite retry and age limits, receivers failing often: dead letters "
            "exactly when the policy says",
            retry_limits=True,
        ),
        *RESTART_SCENARIOS,
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """What a person may fix on the command line; None means "drawn from the seed"."""

    nodes: int | None = None
    replicas: int | None = None
    minutes: float | None = None
    tasks: int | None = None
    limits: str | None = None
    """Which limited queues: "none", "rate", "cap" or "both" (sim/limits.py)."""
    id_reuse: bool | None = None
    late: bool | None = None
    """Whether the run has late tasks (sim/workload.py); None: yes. `False` replays runs
    found before they existed, event for event."""
    disks: bool = False
    """Every node keeps its state on a simulated disk (sim/disk.py); else in memory."""

    def flags(self) -> str:
        """These settings as command-line flags (for the reproduce command)."""
        parts = []
        for name in ("nodes", "replicas", "minutes", "tasks"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"--{name} {value:g}")
        if self.limits is not None:
            parts.append(f"--limits {self.limits}")
        if self.id_reuse is not None:
            parts.append(f"--id-reuse {'yes' if self.id_reuse else 'no'}")
        if self.late is not None:
            parts.append(f"--late {'yes' if self.late else 'no'}")
        if self.disks:
            parts.append("--disks")
        return " ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    seed: int
    scenario: str
    nodes: int
    replicas: int
    tasks: int
    safety_ms: int
    """The safety phase: workload and faults."""
    faults: tuple[FaultKind, ...]
    fault_interval_ms: int
    """Mean time between two faults."""
    fault_duration_ms_max: int
    links: LinkConditions
    clocks: tuple[NodeClock, ...]
    receivers: ReceiverMix
    replica_delay_ms: int
    delivery_deadline_ms: int
    countdown_ms_max: int
    wire_codec: bool
    """Peer messages go through the real codec as bytes (a third of the runs: it is slow)."""
    limits: QueueLimits = field(default_factory=QueueLimits)
    start_ms: int = 1_700_000_000_000
    late_tasks: int = 0
    """Tasks due well after the heal, on top of `tasks` (sim/workload.py)."""
    retry_limits: bool = False
    """The queues have finite retry policies (sim/retry_limits.py)."""
    disks: bool = False
    """Nodes keep their state on simulated disks and restart from them."""

    @property
    def liveness_ms_max(self) -> int:
        """How long after the heal every owed task must be delivered (and the cluster
        converged): the longest countdown, the replicas' delays, and retries."""
        return self.countdown_ms_max + self.replicas * self.replica_delay_ms + 90_000

    def describe(self) -> str:
        links = self.links
        skew_ms = max((abs(c.offset_ms) for c in self.clocks), default=0)
        drift_ppm = max((abs(c.drift_ppm) for c in self.clocks), default=0)
        faults = ",".join(f.value for f in self.faults) or "none"
        return (
            f"scenario={self.scenario} nodes={self.nodes} replicas={self.replicas} "
            f"tasks={self.tasks} late={self.late_tasks} "
            f"minutes={self.safety_ms / 60_000:g} faults={faults} "
            f"fault_every_ms={self.fault_interval_ms} fault_ms_max={self.fault_duration_ms_max} "
            f"loss={links.loss:.2f} dup={links.duplication:.2f} "
            f"delay_ms={links.delay_ms_min}..{links.delay_ms_max} "
            f"long_delay={links.long_delay:.2f}/{links.long_delay_ms_max}ms "
            f"skew_ms=±{skew_ms} drift_ppm=±{drift_ppm} receivers={self.receivers.describe()} "
            f"replica_delay_ms={self.replica_delay_ms} deadline_ms={self.delivery_deadline_ms} "
            f"codec={'yes' if self.wire_codec else 'no'} {self.limits.describe()}"
            f"{' disks=yes' if self.disks else ''}"
        )


LATE_TASKS_PER = 6
"""One task in this many more is due after the heal and a repair period."""

MILD_RECEIVERS = ReceiverMix(error=0.03, hang=0.01, slow=0.02, refused=0.01)
RETRY_RECEIVERS = ReceiverMix(error=0.4, hang=0.02, slow=0.03, refused=0.05)
"""Half the attempts fail: many tasks of the retry_limits scenario run out of budget."""


def draw_config(seed: int, scenario_name: str, shape: Shape) -> RunConfig:
    """The run's whole configuration, drawn from its seed. Every draw is made whatever `shape`
    fixes, so fixing the node count does not change, say, the loss rate a seed draws."""
    scenario = SCENARIOS[scenario_name]
    rng = random.Random(f"{seed}:config:{scenario_name}")
    nodes = rng.randint(3, 5)
    replicas = rng.randint(2, 3)
    tasks = rng.randint(60, 140)
    minutes = rng.choice((1.0, 1.5, 2.0))
    faults = scenario.faults
    lossy, skewed, flaky = scenario.lossy_network, scenario.clock_skew, scenario.flaky_receivers
    if scenario.swarm:
        every = list(SWARM_FAULTS)
        faults = tuple(sorted(rng.sample(every, rng.randint(1, 5)), key=every.index))
        lossy, skewed, flaky = (rng.random() < 0.5 for _ in range(3))
    fault_interval_ms = rng.randint(3_000, 20_000)
    fault_duration_ms_max = rng.randint(2_000, 30_000)
    replica_delay_ms = rng.choice((2_000, 5_000))
    network_draws = (
        rng.uniform(0, 0.3), rng.uniform(0, 0.5), rng.randint(5, 100), rng.uniform(0, 0.05)
    )  # fmt: skip
    links = LinkConditions(delay_ms_min=1, delay_ms_max=5)
    if lossy:
        loss, duplication, delay_ms_max, long_delay = network_draws
        links = LinkConditions(
            loss=loss, duplication=duplication, delay_ms_min=1, delay_ms_max=delay_ms_max,
            long_delay=long_delay, long_delay_ms_max=2 * replica_delay_ms,
        )  # fmt: skip
    skew_ms_max, drift_ppm_max = rng.randint(10, 1_500), rng.randint(10, 500)
    node_count = shape.nodes if shape.nodes is not None else nodes
    clock_draws = [
        (rng.randint(-skew_ms_max, skew_ms_max), rng.randint(-drift_ppm_max, drift_ppm_max))
        for _ in range(max(node_count, 7))
    ]
    start_ms = 1_700_000_000_000
    clocks = tuple(
        NodeClock(
            start_ms=start_ms,
            offset_ms=offset if skewed else 0,
            drift_ppm=drift if skewed else 0,
        )
        for offset, drift in clock_draws[:node_count]
    )
    receiver_draws = (
        rng.uniform(0, 0.3),
        rng.uniform(0, 0.1),
        rng.uniform(0, 0.2),
        rng.uniform(0, 0.1),
    )
    receivers = RETRY_RECEIVERS if scenario.retry_limits else MILD_RECEIVERS
    if flaky:
        error, hang, slow, refused = receiver_draws
        receivers = ReceiverMix(error=error, hang=hang, slow=slow, refused=refused)
    wire_codec = rng.random() < 1 / 3
    limits = draw_limits(
        seed,
        scenario_name,
        always=scenario.queue_limits,
        fixed_queues="none" if scenario.retry_limits else shape.limits,
        fixed_id_reuse=shape.id_reuse,
    )
    task_count = shape.tasks if shape.tasks is not None else tasks
    return RunConfig(
        seed=seed,
        late_tasks=0 if shape.late is False else task_count // LATE_TASKS_PER,
        retry_limits=scenario.retry_limits,
        disks=shape.disks,
        wire_codec=wire_codec,
        scenario=scenario_name,
        nodes=node_count,
        replicas=shape.replicas if shape.replicas is not None else replicas,
        tasks=task_count,
        safety_ms=round((shape.minutes if shape.minutes is not None else minutes) * 60_000),
        faults=faults,
        fault_interval_ms=fault_interval_ms,
        fault_duration_ms_max=fault_duration_ms_max,
        links=links,
        clocks=clocks,
        receivers=receivers,
        replica_delay_ms=replica_delay_ms,
        delivery_deadline_ms=10_000,
        countdown_ms_max=30_000,
        start_ms=start_ms,
        limits=limits,
    )
