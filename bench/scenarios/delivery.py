"""Delivery: tasks per second from a node to a fast receiver, against a bare trio + h11 client loop.

The node is pre-loaded with N tasks that all share one ETA a little in the future; the clock
starts at that ETA and stops at the receiver's last arrival. The bare client loop is timed the same
way, from its start to the receiver's last arrival, with the same pool size as the node's
(connections_per_destination_max = 64).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from .. import bodies
from ..context import BenchContext, batch_problem, wait_until
from ..httpc import receiver_stats, reset_receiver, wait_for_count
from ..load import Load, drive
from ..procs import BenchError, Launcher, Service, cpu_delta, python_module_command
from ..table import Row, cpu_share, goal, per_cpu, rate, ratio_of

DELIVERY_GOAL_RATIO = 0.8
POOL_CONNECTIONS = 64
"""The bare client's pool: the node's default connections_per_destination_max."""
_BATCH_LOAD_RATE_GUESS = 20_000.0
_SINGLE_LOAD_RATE_GUESS = 2_000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    count: int
    """Tasks the receiver counted (distinct X-Task-Ids for a cluster)."""
    expected: int
    window_s: float
    """From the ETA (or the end of loading, if loading overran it) to the last arrival."""
    node_cpu_s: float | None
    receiver_cpu_s: float | None
    note: str

    @property
    def rate_per_s(self) -> float:
        return self.count / self.window_s if self.window_s > 0 else 0.0

    @property
    def per_cpu(self) -> float | None:
        """Tasks delivered per CPU-second of the node(s)."""
        return per_cpu(self.rate_per_s, self.node_cpu_s, self.window_s)


def delivery(ctx: BenchContext) -> list[Row]:
    count = ctx.size(50_000, 10_000)
    scenario = "delivery"
    rows = [bare_client_row(ctx, count, scenario)]
    problem = ctx.node_problem()
    if problem is not None:
        rows.append(Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}"))
        return rows
    with Launcher() as launcher:
        receiver, receiver_port = ctx.start_receiver(launcher, cpu=ctx.load_cpu)
        node, port = ctx.start_node(launcher, cpu=ctx.server_cpu)
        delivered = preload_and_deliver(
            ctx, launcher, [node], [port], receiver, receiver_port, count
        )
    ctx.keep("node_delivery", delivered.rate_per_s, delivered.per_cpu)
    bare_rate = ctx.results["bare_client"]
    rows.append(
        Row(
            scenario=scenario,
            system="miyamoto node (R=1)",
            result=rate(delivered.rate_per_s),
            ratio=delivered.rate_per_s / bare_rate if bare_rate else None,
            per_cpu=delivered.per_cpu,
            cpu_ratio=ratio_of(delivered.per_cpu, ctx.results.get("bare_client/cpu")),
            goal=goal(
                f"≥ {DELIVERY_GOAL_RATIO}x bare",
                delivered.rate_per_s >= DELIVERY_GOAL_RATIO * bare_rate,
            ),
            server_cpu=cpu_share(delivered.node_cpu_s, delivered.window_s),
            load_cpu=cpu_share(delivered.receiver_cpu_s, delivered.window_s),
            generator="receiver",
            note=delivered.note,
        )
    )
    return rows


def bare_client_row(ctx: BenchContext, count: int, scenario: str) -> Row:
    """Run the bare client loop against a fresh receiver; its rate goes to ctx.results."""
    with Launcher() as launcher:
        receiver, receiver_port = ctx.start_receiver(launcher, cpu=ctx.load_cpu)
        receiver_cpu_before = receiver.cpu_s()
        finished = launcher.run(
            "bare-client",
            python_module_command(
                "bench.bare_client",
                [
                    "--port",
                    str(receiver_port),
                    "--count",
                    str(count),
                    "--connections",
                    str(POOL_CONNECTIONS),
                ],
            ),
            timeout_s=120,
            cpu=ctx.server_cpu,
        )
        if finished.returncode != 0:
            raise BenchError(f"bare client failed:\n{finished.stderr[-2000:]}")
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        stats = receiver_stats(receiver_port)
        receiver_cpu_after = receiver.cpu_s()
    window_s = float(stats["last_s"] or time.time()) - float(result["start_s"])
    bare_rate = stats["count"] / window_s if window_s > 0 else 0.0
    bare_per_cpu = per_cpu(bare_rate, float(result["cpu_s"]), window_s)
    ctx.keep("bare_client", bare_rate, bare_per_cpu)
    problems = [f"{result[k]}x {k}" for k in ("other_status", "errors") if result[k]]
    return Row(
        scenario=scenario,
        system=f"bare trio+h11 client ({POOL_CONNECTIONS} conns)",
        result=rate(bare_rate, "req/s"),
        ratio=1.0,
        per_cpu=bare_per_cpu,
        cpu_ratio=1.0 if bare_per_cpu else None,
        server_cpu=cpu_share(float(result["cpu_s"]), window_s),
        load_cpu=cpu_share(cpu_delta([receiver_cpu_before], [receiver_cpu_after]), window_s),
        generator="receiver",
        note=", ".join(problems),
    )


def preload_and_deliver(
    ctx: BenchContext,
    launcher: Launcher,
    nodes: list[Service],
    ports: list[int],
    receiver: Service,
    receiver_port: int,
    count: int,
    *,
    load_cpu: int | None = None,
    timeout_s: float | None = None,
    batch_rate_guess_per_s: float = _BATCH_LOAD_RATE_GUESS,
) -> Delivered:
    """Load `count` tasks due at one ETA into the node(s), then time their delivery.

    The ETA is set far enough ahead for loading at the guessed rate to finish twice over; if
    loading overruns it anyway, the note says so and only what is left is timed.
    """
    use_batch = batch_problem(ports[0]) is None
    guess_per_s = (
        batch_rate_guess_per_s
        if use_batch
        else ctx.results.get("node_enqueue_keepalive", _SINGLE_LOAD_RATE_GUESS)
    )
    lead_s = 1.0 + 2.0 * count / guess_per_s
    eta_s = time.time() + lead_s
    url = bodies.receiver_url(receiver_port)
    if use_batch:
        requests = math.ceil(count / bodies.BATCH_SIZE)
        load = Load(
            path=bodies.QUEUE_PATH,
            body=bodies.batch([bodies.json_task(url, eta_s=eta_s)] * bodies.BATCH_SIZE),
            content_type=bodies.JSON,
            connections=min(4, requests),
        )
        tasks_per_request = bodies.BATCH_SIZE
    else:
        requests = count
        load = Load(
            path=bodies.QUEUE_PATH,
            body=bodies.form_task(url, eta_s=eta_s),
            content_type=bodies.FORM,
            connections=50,
        )
        tasks_per_request = 1
    reset_receiver(receiver_port)
    loaded = drive(
        launcher,
        load,
        ports,
        generator="own",
        duration_s=lead_s + 60,
        requests_max=requests,
        cpu=load_cpu if load_cpu is not None else ctx.load_cpu,
        name="preload",
    )
    expected = loaded.ok * tasks_per_request
    if expected == 0:
        raise BenchError(f"no task could be loaded: {loaded.errors}")
    notes = [f"{expected:,} tasks at one ETA, loaded by {'batch' if use_batch else 'form'}"]
    if loaded.errors:
        notes.append(f"load: {loaded.errors}")
    loaded_at_s = time.time()
    start_s = eta_s
    if loaded_at_s > eta_s:
        # Deliveries began while loading: time only what is left, from the end of loading.
        already = int(receiver_stats(receiver_port)["unique_ids"])
        notes.append(f"loading overran the ETA by {loaded_at_s - eta_s:.1f} s")
        start_s = loaded_at_s
    else:
        already = 0
        wait_until(eta_s)
    cpu_before = [node.cpu_s() for node in nodes]
    receiver_cpu_before = receiver.cpu_s()
    bound_s = timeout_s if timeout_s is not None else ctx.duration_s(120.0, 30.0) + 30.0
    stats = wait_for_count(receiver_port, expected, bound_s, key="unique_ids")
    cpu_after = [node.cpu_s() for node in nodes]
    receiver_cpu_after = receiver.cpu_s()
    distinct = int(stats["unique_ids"]) or int(stats["count"])
    if distinct < expected:
        notes.append(f"only {distinct:,} of {expected:,} arrived within {bound_s:.0f} s")
    if stats["count"] > distinct:
        notes.append(f"{stats['count'] - distinct:,} duplicate deliveries")
    if stats["first_s"] is not None and already == 0:
        notes.append(f"first arrival {1000 * (stats['first_s'] - eta_s):.0f} ms after the ETA")
    last_s = float(stats["last_s"] or time.time())
    node_cpu_s = cpu_delta(cpu_before, cpu_after)
    return Delivered(
        count=distinct - already,
        expected=expected,
        window_s=last_s - start_s,
        node_cpu_s=node_cpu_s,
        receiver_cpu_s=(cpu_delta([receiver_cpu_before], [receiver_cpu_after])),
        note="; ".join(notes),
    )
