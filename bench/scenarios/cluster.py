"""Cluster: 3 nodes with R=2 against one node, for enqueue and delivery.

Runs only when `python -m miyamoto.io.node --help` offers --seed and --replicas; otherwise the
table says "skipped: cluster not available". Three nodes and the load share two cores, so nothing
is pinned here, for the single node either: the ratio compares like with like.

Nodes: the first names itself as LEADER; the others name it as LEADER and --seed. The run waits,
bounded, for every node's `GET /_cluster` to list 3 members; if every node answers that path with
404 the cluster is not built yet, and the scenario is skipped. Enqueue load goes to all three
nodes (our own generator, connections spread over them).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..context import BenchContext
from ..httpc import Client
from ..procs import BenchError, Launcher, Service, cpu_delta, free_port
from ..table import Row, cpu_share, goal, per_cpu, rate, ratio_of
from .delivery import preload_and_deliver
from .enqueue import enqueue_load

CLUSTER_GOAL_RATIO = 0.5
NODES = 3
REPLICAS = 2
_FORM_TIMEOUT_S = 30.0
_CLUSTER_BATCH_RATE_GUESS = 4_000.0
"""Tasks/s a 3-node R=2 cluster takes by batch at worst, on 2 shared cores (sets the ETA lead)."""


def cluster(ctx: BenchContext) -> list[Row]:
    scenario = f"cluster {NODES} nodes R={REPLICAS}"
    problem = ctx.cluster_problem()
    if problem is not None:
        return [Row(scenario=scenario, system="miyamoto cluster", result=f"skipped: {problem}")]
    duration_s = ctx.duration_s(10.0, 2.0)
    count = ctx.size(20_000, 5_000)
    load = enqueue_load(connections=50)

    with Launcher() as launcher:
        started = _start_cluster(ctx, launcher)
        if isinstance(started, str):
            return [Row(scenario=scenario, system="miyamoto cluster", result=f"skipped: {started}")]
        nodes, ports = started
        cpu_before = [n.cpu_s() for n in nodes]
        measured = ctx.measure(
            launcher, nodes[0], load, ports, duration_s=duration_s, generator="own", load_cpu=None
        )
        cpu_after = [n.cpu_s() for n in nodes]
        receiver, receiver_port = ctx.start_receiver(launcher, cpu=None)
        delivered = preload_and_deliver(
            ctx,
            launcher,
            nodes,
            ports,
            receiver,
            receiver_port,
            count,
            load_cpu=None,
            batch_rate_guess_per_s=_CLUSTER_BATCH_RATE_GUESS,
        )

    with Launcher() as launcher:
        node, port = ctx.start_node(launcher, cpu=None)
        single = ctx.measure(
            launcher, node, load, [port], duration_s=duration_s, generator="own", load_cpu=None
        )
        receiver, receiver_port = ctx.start_receiver(launcher, cpu=None)
        single_delivery = preload_and_deliver(
            ctx, launcher, [node], [port], receiver, receiver_port, count, load_cpu=None
        )

    single_rate = single.load.rate_per_s
    cluster_rate = measured.load.rate_per_s
    ratio = cluster_rate / single_rate if single_rate else 0.0
    cluster_cpu_s = cpu_delta(cpu_before, cpu_after)
    cluster_per_cpu = per_cpu(cluster_rate, cluster_cpu_s, measured.load.window_s)
    return [
        Row(
            scenario=scenario,
            system="1 node, enqueue",
            result=rate(single_rate),
            ratio=1.0,
            per_cpu=single.per_cpu,
            cpu_ratio=1.0 if single.per_cpu else None,
            server_cpu=cpu_share(single.server_cpu_s, single.load.window_s),
            load_cpu=cpu_share(single.load.gen_cpu_s, single.load.window_s),
            generator=single.load.generator,
            note=_join("unpinned", single.load.errors),
        ),
        Row(
            scenario=scenario,
            system=f"{NODES} nodes R={REPLICAS}, enqueue",
            result=rate(cluster_rate),
            ratio=ratio,
            per_cpu=cluster_per_cpu,
            cpu_ratio=ratio_of(cluster_per_cpu, single.per_cpu),
            goal=goal(f"≥ {CLUSTER_GOAL_RATIO}x 1 node", ratio >= CLUSTER_GOAL_RATIO),
            server_cpu=cpu_share(cluster_cpu_s, measured.load.window_s),
            load_cpu=cpu_share(measured.load.gen_cpu_s, measured.load.window_s),
            generator=measured.load.generator,
            note=_join(f"load spread over all {NODES} nodes", measured.load.errors),
        ),
        Row(
            scenario=scenario,
            system="1 node, delivery",
            result=rate(single_delivery.rate_per_s),
            ratio=1.0,
            per_cpu=single_delivery.per_cpu,
            cpu_ratio=1.0 if single_delivery.per_cpu else None,
            server_cpu=cpu_share(single_delivery.node_cpu_s, single_delivery.window_s),
            generator="receiver",
            note=single_delivery.note,
        ),
        Row(
            scenario=scenario,
            system=f"{NODES} nodes R={REPLICAS}, delivery",
            result=rate(delivered.rate_per_s),
            ratio=(
                delivered.rate_per_s / single_delivery.rate_per_s
                if single_delivery.rate_per_s
                else None
            ),
            per_cpu=delivered.per_cpu,
            cpu_ratio=ratio_of(delivered.per_cpu, single_delivery.per_cpu),
            server_cpu=cpu_share(delivered.node_cpu_s, delivered.window_s),
            generator="receiver",
            note=_join("distinct X-Task-Ids", delivered.note),
        ),
    ]


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _start_cluster(ctx: BenchContext, launcher: Launcher) -> tuple[list[Service], list[int]] | str:
    """Start the nodes and wait until each lists them all; a string says the cluster is absent."""
    ports = [free_port() for _ in range(NODES)]
    seed = f"127.0.0.1:{ports[0]}"
    nodes = []
    for index, port in enumerate(ports):
        extra = ["--replicas", str(REPLICAS)] + (["--seed", seed] if index else [])
        service, _ = ctx.start_node(
            launcher, cpu=None, port=port, leader=seed, name=f"node{index + 1}", extra_args=extra
        )
        nodes.append(service)
    started = time.monotonic()
    while True:
        views = [_cluster_view(port) for port in ports]
        if all(status == 404 for status, _ in views) and time.monotonic() - started > 2.0:
            return "cluster not available (GET /_cluster answers 404)"
        sizes = [_member_count(view) for _, view in views]
        if all(size == NODES for size in sizes):
            return nodes, ports
        if time.monotonic() - started > _FORM_TIMEOUT_S:
            raise BenchError(
                f"the cluster did not form within {_FORM_TIMEOUT_S:.0f} s: members seen {sizes}"
            )
        time.sleep(0.2)


def _cluster_view(port: int) -> tuple[int, Any]:
    """(HTTP status, JSON body or None) of a node's GET /_cluster; status 0 if unreachable."""
    try:
        with Client(port, timeout_s=2.0) as client:
            status, body = client.request("GET", "/_cluster")
    except OSError:
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def _member_count(view: Any) -> int | None:
    members = view.get("members") if isinstance(view, dict) else None
    return len(members) if isinstance(members, list | dict) else None
