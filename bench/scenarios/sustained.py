"""Sustained: enqueue and delivery at once on one node, every task due immediately.

50 kept-alive clients enqueue for the measuring time; the node delivers to the fast receiver as it
goes. End to end is the tasks delivered over the time from the first arrival to the last (the
node drains its backlog after the load stops, bounded in time).

The ceiling is one process doing both bare jobs per task: 1 / (1/S + 1/C), with S the bare
server's and C the bare client loop's rate, both measured in this run.
"""

from __future__ import annotations

import time

from .. import bodies
from ..context import BenchContext
from ..httpc import receiver_stats, wait_for_quiet
from ..load import Load
from ..procs import Launcher, cpu_delta
from ..table import Row, cpu_share, rate, ratio_of
from .delivery import bare_client_row
from .enqueue import enqueue_load, measure_bare_server

_DRAIN_S_MAX = 60.0


def sustained(ctx: BenchContext) -> list[Row]:
    scenario = "sustained"
    duration_s = ctx.duration_s(10.0, 2.0)
    rows: list[Row] = []
    if "bare_server_keepalive" not in ctx.results:
        rows.append(
            measure_bare_server(
                ctx, enqueue_load(), duration_s, name="bare_server_keepalive", scenario=scenario
            )
        )
    if "bare_client" not in ctx.results:
        rows.append(bare_client_row(ctx, ctx.size(50_000, 10_000), scenario))
    server_rate = ctx.results["bare_server_keepalive"]
    client_rate = ctx.results["bare_client"]
    ceiling = _both(server_rate, client_rate) or 0.0
    ceiling_per_cpu = _both(
        ctx.results.get("bare_server_keepalive/cpu"), ctx.results.get("bare_client/cpu")
    )
    rows.append(
        Row(
            scenario=scenario,
            system="ceiling 1/(1/S+1/C)",
            result=rate(ceiling, "req/s"),
            ratio=1.0,
            per_cpu=ceiling_per_cpu,
            cpu_ratio=1.0 if ceiling_per_cpu else None,
            note=f"S={server_rate:,.0f}/s bare server, C={client_rate:,.0f}/s bare client",
        )
    )
    problem = ctx.node_problem()
    if problem is not None:
        rows.append(Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}"))
        return rows
    with Launcher() as launcher:
        _receiver, receiver_port = ctx.start_receiver(launcher, cpu=ctx.load_cpu)
        node, port = ctx.start_node(launcher, cpu=ctx.server_cpu)
        load = Load(
            path=bodies.QUEUE_PATH,
            body=bodies.form_task(bodies.receiver_url(receiver_port), countdown_s=0),
            content_type=bodies.FORM,
            connections=50,
        )
        node_cpu_before = node.cpu_s()
        measured = ctx.measure(
            launcher, node, load, [port], duration_s=duration_s, load_cpu=ctx.load_cpu
        )
        load_ended_s = time.time()
        enqueued = measured.load.ok
        during = int(receiver_stats(receiver_port)["count"])
        stats = wait_for_quiet(receiver_port, enqueued, _DRAIN_S_MAX)
        drain_s = max(0.0, float(stats["last_s"] or 0) - load_ended_s)
        node_cpu_s = cpu_delta([node_cpu_before], [node.cpu_s()])
    delivered = int(stats["count"])
    window_s = float(stats["last_s"] or 0) - float(stats["first_s"] or 0)
    end_to_end = delivered / window_s if window_s > 0 else 0.0
    node_per_cpu = delivered / node_cpu_s if node_cpu_s else None
    ctx.keep("node_sustained", end_to_end, node_per_cpu)
    notes = [
        f"enqueued {measured.load.rate_per_s:,.0f}/s",
        f"delivered {during / measured.load.window_s:,.0f}/s while loading",
        f"backlog {max(0, delivered - during):,} drained in {drain_s:.1f} s after the load",
    ]
    if delivered < enqueued:
        notes.append(f"only {delivered:,} of {enqueued:,} delivered")
    if measured.load.errors:
        notes.append(measured.load.errors)
    rows.append(
        Row(
            scenario=scenario,
            system="miyamoto node (R=1)",
            result=rate(end_to_end),
            ratio=end_to_end / ceiling if ceiling else None,
            per_cpu=node_per_cpu,
            cpu_ratio=ratio_of(node_per_cpu, ceiling_per_cpu),
            server_cpu=cpu_share(measured.server_cpu_s, measured.load.window_s),
            load_cpu=cpu_share(measured.load.gen_cpu_s, measured.load.window_s),
            generator=measured.load.generator,
            note="; ".join(notes),
        )
    )
    return rows


def _both(server: float | None, client: float | None) -> float | None:
    """Rate of one process doing both jobs per task: 1 / (1/server + 1/client)."""
    return 1 / (1 / server + 1 / client) if server and client else None
