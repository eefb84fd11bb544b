"""Enqueue on one node (R=1) against the bare trio + h11 server, under the same load generator.

Tasks are due in a day, so the node does enqueue work only. Two client shapes: 50 kept-alive
connections, and a new connection per request (as curl does).
"""

from __future__ import annotations

from .. import bodies
from ..context import BenchContext
from ..load import Load
from ..procs import Launcher
from ..table import Row, cpu_share, goal, rate, ratio_of

ENQUEUE_GOAL_RATIO = 0.9


def enqueue_keepalive(ctx: BenchContext) -> list[Row]:
    return _enqueue(ctx, scenario="enqueue keep-alive", new_connection=False, key="keepalive")


def enqueue_new_connection(ctx: BenchContext) -> list[Row]:
    return _enqueue(
        ctx, scenario="enqueue new conn/request", new_connection=True, key="new_connection"
    )


def enqueue_load(*, new_connection: bool = False, connections: int = 50) -> Load:
    return Load(
        path=bodies.QUEUE_PATH,
        body=bodies.form_task(bodies.UNROUTED_URL, countdown_s=bodies.FAR_COUNTDOWN_S),
        content_type=bodies.FORM,
        connections=connections,
        new_connection=new_connection,
    )


def measure_bare_server(
    ctx: BenchContext, load: Load, duration_s: float, *, name: str, scenario: str
) -> Row:
    """The bare server's rate under `load`, as a row; the rate is kept in ctx.results[name]."""
    with Launcher() as launcher:
        server, port = ctx.start_bare_server(launcher)
        measured = ctx.measure(
            launcher, server, load, [port], duration_s=duration_s, load_cpu=ctx.load_cpu
        )
    ctx.keep(name, measured.load.rate_per_s, measured.per_cpu)
    return Row(
        scenario=scenario,
        system="bare trio+h11 server",
        result=rate(measured.load.rate_per_s, "req/s"),
        ratio=1.0,
        per_cpu=measured.per_cpu,
        cpu_ratio=1.0 if measured.per_cpu else None,
        server_cpu=cpu_share(measured.server_cpu_s, measured.load.window_s),
        load_cpu=cpu_share(measured.load.gen_cpu_s, measured.load.window_s),
        generator=measured.load.generator,
        note=measured.load.errors,
    )


def _enqueue(ctx: BenchContext, *, scenario: str, new_connection: bool, key: str) -> list[Row]:
    duration_s = ctx.duration_s(10.0, 2.0)
    load = enqueue_load(new_connection=new_connection)
    rows = [
        measure_bare_server(ctx, load, duration_s, name=f"bare_server_{key}", scenario=scenario)
    ]
    problem = ctx.node_problem()
    if problem is not None:
        rows.append(Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}"))
        return rows
    with Launcher() as launcher:
        node, port = ctx.start_node(launcher, cpu=ctx.server_cpu)
        measured = ctx.measure(
            launcher, node, load, [port], duration_s=duration_s, load_cpu=ctx.load_cpu
        )
    node_rate = measured.load.rate_per_s
    ctx.keep(f"node_enqueue_{key}", node_rate, measured.per_cpu)
    bare_rate = ctx.results[f"bare_server_{key}"]
    rows.append(
        Row(
            scenario=scenario,
            system="miyamoto node (R=1)",
            result=rate(node_rate),
            ratio=node_rate / bare_rate if bare_rate else None,
            per_cpu=measured.per_cpu,
            cpu_ratio=ratio_of(measured.per_cpu, ctx.results.get(f"bare_server_{key}/cpu")),
            goal=goal(f"≥ {ENQUEUE_GOAL_RATIO}x bare", node_rate >= ENQUEUE_GOAL_RATIO * bare_rate),
            server_cpu=cpu_share(measured.server_cpu_s, measured.load.window_s),
            load_cpu=cpu_share(measured.load.gen_cpu_s, measured.load.window_s),
            generator=measured.load.generator,
            note=measured.load.errors,
        )
    )
    return rows
