"""Batch enqueue: `POST /{queue}` with a JSON array of 1000 tasks, in tasks per second.

The bare server gets the same request bytes (and answers its one small JSON), so its ratio shows
what reading 1000 tasks' worth of bytes through trio + h11 costs against validating and storing
them.
"""

from __future__ import annotations

from .. import bodies
from ..context import BenchContext, batch_problem
from ..load import Load
from ..procs import Launcher
from ..table import Row, cpu_share, goal, per_cpu, rate, ratio_of

BATCH_GOAL_TASKS_PER_S = 50_000
_CONNECTIONS = 8


def batch_load() -> Load:
    task = bodies.json_task(bodies.UNROUTED_URL, countdown_s=bodies.FAR_COUNTDOWN_S)
    return Load(
        path=bodies.QUEUE_PATH,
        body=bodies.batch([task] * bodies.BATCH_SIZE),
        content_type=bodies.JSON,
        connections=_CONNECTIONS,
    )


def batch_enqueue(ctx: BenchContext) -> list[Row]:
    scenario = f"batch enqueue ({bodies.BATCH_SIZE}/req)"
    duration_s = ctx.duration_s(5.0, 2.0)
    load = batch_load()
    per_request = bodies.BATCH_SIZE
    with Launcher() as launcher:
        server, port = ctx.start_bare_server(launcher)
        bare = ctx.measure(
            launcher, server, load, [port], duration_s=duration_s, load_cpu=ctx.load_cpu
        )
    bare_rate = bare.load.rate_per_s * per_request
    bare_per_cpu = per_cpu(bare_rate, bare.server_cpu_s, bare.load.window_s)
    rows = [
        Row(
            scenario=scenario,
            system="bare trio+h11 server",
            result=rate(bare_rate),
            ratio=1.0,
            per_cpu=bare_per_cpu,
            cpu_ratio=1.0 if bare_per_cpu else None,
            server_cpu=cpu_share(bare.server_cpu_s, bare.load.window_s),
            load_cpu=cpu_share(bare.load.gen_cpu_s, bare.load.window_s),
            generator=bare.load.generator,
            note="; ".join(
                part for part in (f"{len(load.body):,}-byte requests", bare.load.errors) if part
            ),
        )
    ]
    problem = ctx.node_problem()
    if problem is not None:
        rows.append(Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}"))
        return rows
    with Launcher() as launcher:
        node, port = ctx.start_node(launcher, cpu=ctx.server_cpu)
        problem = batch_problem(port)
        if problem is not None:
            rows.append(
                Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}")
            )
            return rows
        measured = ctx.measure(
            launcher, node, load, [port], duration_s=duration_s, load_cpu=ctx.load_cpu
        )
    node_rate = measured.load.rate_per_s * per_request
    node_per_cpu = per_cpu(node_rate, measured.server_cpu_s, measured.load.window_s)
    ctx.keep("node_batch", node_rate, node_per_cpu)
    rows.append(
        Row(
            scenario=scenario,
            system="miyamoto node (R=1)",
            result=rate(node_rate),
            ratio=node_rate / bare_rate if bare_rate else None,
            per_cpu=node_per_cpu,
            cpu_ratio=ratio_of(node_per_cpu, bare_per_cpu),
            goal=goal(f"≥ {BATCH_GOAL_TASKS_PER_S:,} tasks/s", node_rate >= BATCH_GOAL_TASKS_PER_S),
            server_cpu=cpu_share(measured.server_cpu_s, measured.load.window_s),
            load_cpu=cpu_share(measured.load.gen_cpu_s, measured.load.window_s),
            generator=measured.load.generator,
            note=measured.load.errors,
        )
    )
    return rows
