"""What metrics cost on the hot path: enqueue with metrics on vs the same node with --no-metrics.

Both run in the same run under the same load (50 kept-alive connections, tasks due in a day), in
alternating rounds (off, on, off, on) so that a machine getting busier during the run does not
favour one side; each side's best round is compared. The goal is on ≥ 0.95 x off.
"""

from __future__ import annotations

from ..context import BenchContext
from ..procs import Launcher
from ..table import Row, cpu_share, goal, rate, ratio_of
from .enqueue import enqueue_load

METRICS_GOAL_RATIO = 0.95
ROUNDS = 2


def metrics_cost(ctx: BenchContext) -> list[Row]:
    scenario = "enqueue metrics on/off"
    problem = ctx.node_problem()
    if problem is not None:
        return [Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}")]
    duration_s = ctx.duration_s(8.0, 2.0)
    load = enqueue_load()
    best: dict[bool, tuple[float, float | None, str, str, str]] = {}
    for _ in range(ROUNDS):
        for metrics_on in (False, True):
            with Launcher() as launcher:
                extra = [] if metrics_on else ["--no-metrics"]
                node, port = ctx.start_node(launcher, cpu=ctx.server_cpu, extra_args=extra)
                measured = ctx.measure(
                    launcher, node, load, [port], duration_s=duration_s, load_cpu=ctx.load_cpu
                )
            rate_per_s = measured.load.rate_per_s
            if metrics_on not in best or rate_per_s > best[metrics_on][0]:
                best[metrics_on] = (
                    rate_per_s,
                    measured.per_cpu,
                    cpu_share(measured.server_cpu_s, measured.load.window_s),
                    measured.load.generator,
                    measured.load.errors,
                )
    off_rate, off_cpu, off_server, off_generator, off_errors = best[False]
    on_rate, on_cpu, on_server, on_generator, on_errors = best[True]
    ratio = on_rate / off_rate if off_rate else None
    return [
        Row(
            scenario=scenario,
            system="miyamoto node --no-metrics",
            result=rate(off_rate),
            ratio=1.0,
            per_cpu=off_cpu,
            cpu_ratio=1.0 if off_cpu else None,
            server_cpu=off_server,
            generator=off_generator,
            note=off_errors,
        ),
        Row(
            scenario=scenario,
            system="miyamoto node (metrics on)",
            result=rate(on_rate),
            ratio=ratio,
            per_cpu=on_cpu,
            cpu_ratio=ratio_of(on_cpu, off_cpu),
            goal=goal(f"≥ {METRICS_GOAL_RATIO}x off", ratio is not None and ratio >= 0.95),
            server_cpu=on_server,
            generator=on_generator,
            note=on_errors,
        ),
    ]
