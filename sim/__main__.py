"""`python -m sim`: run the deterministic simulator.

    python -m sim                          the scenario matrix, seeds 1..13 of each, in memory
                                           and with disks, as a table
    python -m sim --seed 7 --disks         one run with disks (sim/disk.py)
    python -m sim --seed 7                 one run (scenario swarm), replayed exactly
    python -m sim --seed 7 --scenario pause --trace     ... printing every event
    python -m sim --seeds 1..500 --jobs 2  a soak: many seeds of one scenario (swarm)
    --nodes, --replicas, --minutes, --tasks, --limits, --id-reuse fix what the seed would
    otherwise draw.

Output starts with `SEED=` and the run's configuration; a failed run ends with the command that
reproduces it. Exit codes: 0 every run passed, 2 bad usage, 3 a node crashed (raised), 4 the
cluster did not converge after the heal (liveness), 5 a checker found an anomaly (correctness);
several failures give the gravest (3, then 5, then 4).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from .canaries import CANARIES, node_class
from .checkers import FailureKind
from .limit_checks import LimitStats
from .limits import LIMIT_CHOICES
from .matrix import Job, rows_of, run_jobs, table
from .run import RunResult, run
from .scenarios import SCENARIOS, Shape, draw_config

DEFAULT_SEEDS_PER_SCENARIO = 13


def _seed_range(text: str) -> range:
    first, dots, last = text.partition("..")
    try:
        start, end = int(first), int(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A..B (two integers), not {text!r}") from None
    if not dots or end < start:
        raise argparse.ArgumentTypeError(f"expected A..B with A <= B, not {text!r}")
    return range(start, end + 1)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sim",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="exit codes: 0 passed, 2 usage, 3 node crash, 4 liveness, 5 correctness",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="run one seed")
    which.add_argument("--seeds", type=_seed_range, metavar="A..B", help="soak seeds A to B")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), help="default: swarm (matrix: all)")
    p.add_argument("--trace", action="store_true", help="print every event of a --seed run")
    p.add_argument("--nodes", type=_positive)
    p.add_argument("--replicas", type=_positive)
    p.add_argument("--minutes", type=float, help="length of the safety phase (faults, clients)")
    p.add_argument("--tasks", type=int, help="tasks the clients enqueue")
    p.add_argument(
        "--limits", choices=LIMIT_CHOICES, help="which limited queues (rate q1, capped q2)"
    )
    p.add_argument(
        "--id-reuse", choices=("yes", "no"), help="racing enqueues, ids with another payload"
    )
    p.add_argument(
        "--late", choices=("yes", "no"), help="tasks due after the heal and a repair period"
    )
    memory = p.add_mutually_exclusive_group()
    memory.add_argument(
        "--disks", action="store_true", help="nodes keep their state on disks (matrix: only so)"
    )
    memory.add_argument(
        "--in-memory", action="store_true", help="nodes keep nothing (the default, but for "
        "the matrix, which runs both)",
    )  # fmt: skip
    p.add_argument(
        "--seeds-per-scenario", type=_positive, default=DEFAULT_SEEDS_PER_SCENARIO, metavar="K"
    )
    p.add_argument("--canary", choices=sorted(CANARIES), help="run a deliberately broken node")
    p.add_argument("--jobs", type=_positive, default=1, help="worker processes")
    p.add_argument("--list", action="store_true", help="list the scenarios and canaries")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.minutes is not None and not 0 < args.minutes <= 24 * 60:
        parser().error("--minutes must be more than 0 and at most a day")
    if args.tasks is not None and args.tasks < 0:
        parser().error("--tasks must be at least 0")
    if args.list:
        for known in SCENARIOS.values():
            print(f"{known.name:18} {known.description}")
        for name, canary in sorted(CANARIES.items()):
            print(f"canary {name:11} {canary.description}")
        return 0
    shape = Shape(
        nodes=args.nodes,
        replicas=args.replicas,
        minutes=args.minutes,
        tasks=args.tasks,
        limits=args.limits,
        id_reuse=None if args.id_reuse is None else args.id_reuse == "yes",
        late=None if args.late is None else args.late == "yes",
        disks=args.disks,
    )
    if args.seed is not None:
        job = Job(
            seed=args.seed, scenario=args.scenario or "swarm", shape=shape, canary=args.canary
        )
        return _one(job, trace=args.trace)
    if args.seeds is not None:
        scenario = args.scenario or "swarm"
        jobs = [Job(seed=s, scenario=scenario, shape=shape, canary=args.canary) for s in args.seeds]
        print(f"SEEDS={args.seeds.start}..{args.seeds.stop - 1} scenario={scenario}", flush=True)
    else:
        scenarios = [args.scenario] if args.scenario else list(SCENARIOS)
        seeds = range(1, args.seeds_per_scenario + 1)
        both = not args.disks and not args.in_memory
        shapes = [shape, replace(shape, disks=True)] if both else [shape]
        jobs = [
            Job(seed=s, scenario=name, shape=variant, canary=args.canary)
            for variant in shapes
            for name in scenarios
            for s in seeds
        ]
        variants = " in memory and with disks" if both else ""
        print(
            f"SEEDS=1..{seeds.stop - 1} for each of {len(scenarios)} scenarios{variants}",
            flush=True,
        )
    return _many(jobs, args.jobs)


def _one(job: Job, *, trace: bool) -> int:
    config = draw_config(job.seed, job.scenario, job.shape)
    print(f"SEED={job.seed} {config.describe()}", flush=True)
    result = run(config, node_class=node_class(job.canary), echo=print if trace else None)
    _summary(result)
    return _verdict([(job, result)])


def _many(jobs: Sequence[Job], processes: int) -> int:
    failed: list[tuple[Job, RunResult]] = []

    def on_result(job: Job, result: RunResult) -> None:
        if result.report.failure is not None:
            failed.append((job, result))
            print(f"\nSEED={job.seed} {result.config.describe()}")
            _summary(result)
            print(f"reproduce: {job.command()}", flush=True)

    results = run_jobs(jobs, processes, on_result)
    print()
    print(table(rows_of(jobs, results)))
    return _verdict(failed)


def _summary(result: RunResult) -> None:
    r = result.report
    config = result.config
    converged = "never" if result.converged_ms is None else f"{result.converged_ms / 1000:g}s"
    print(
        f"tasks={r.tasks} acked={r.acked} delivered={r.delivered} lost={r.lost} "
        f"lost_all_holders={r.lost_all_holders} "
        + (f"quorum_lost=yes lost_no_quorum={r.lost_no_quorum} " if r.quorum_lost else "")
        + f"duplicated={r.duplicated_explained}/{r.duplicated_unexplained} (explained/unexplained) "
        f"under_replicated={r.under_replicated} dead_letters={r.dead_letters} "
        f"early={r.early} late={r.late} cancelled={r.cancelled} elections={r.elections} "
        f"settled_after_heal={converged}"
    )
    print(
        f"sim={result.sim_ms / 1000:g}s wall={result.wall_s:.2f}s "
        f"speed={result.speed:,.0f} sim-s/wall-s ({config.nodes} nodes, {r.tasks} tasks) "
        f"steps={result.steps} trace={result.trace_hash}"
    )
    if r.limits is not None:
        print(f"limits: {_limits_line(r.limits)}")
    for violation in r.violations[:20]:
        print(f"  {violation.anomaly.failure.name} {violation}")
    if len(r.violations) > 20:
        print(f"  ... and {len(r.violations) - 20} more")


def _limits_line(stats: LimitStats) -> str:
    """How close the limited queues came to their limits (the tightest span, the most in
    flight), so a run shows whether its limits were put to the test."""
    parts = []
    worst = stats.rate_worst
    if worst is not None:
        parts.append(
            f"rate: {stats.rate_starts} starts, tightest span {worst.starts} starts in "
            f"{worst.end_ms - worst.start_ms} ms of {float(worst.allowed):.2f} allowed"
        )
    if stats.capped_in_flight_max:
        parts.append(
            f"cap: at most {stats.capped_in_flight_max} in flight "
            f"(of {stats.capped_allowed_at_max} allowed then), {stats.capped_held_back} "
            "held back until a slot freed"
        )
    return "; ".join(parts) or "no delivery of a limited queue"


def _verdict(failed: Sequence[tuple[Job, RunResult]]) -> int:
    kinds = {kind for _, result in failed if (kind := result.report.failure) is not None}
    for kind in (FailureKind.CRASH, FailureKind.CORRECTNESS, FailureKind.LIVENESS):
        if kind in kinds:
            worst = next(j for j, r in failed if r.report.failure is kind)
            print(f"FAILED ({kind.name.lower()}, exit {kind.value})")
            print(f"reproduce: {worst.command()}")
            return kind.value
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
