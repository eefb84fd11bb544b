"""Durable nodes (--data-dir, --fsync always) against the same node --in-memory, same run.

- enqueue keep-alive: 50 kept-alive connections, tasks due in a day; goal durable ≥ 0.8x in
  memory (group commit: one fsync serves every enqueue that arrived while the last one ran);
- batch enqueue durable (JSON arrays of 1000); goal ≥ 50,000 tasks/s;
- restart: N pending tasks on disk (100,000; 10,000 with --quick), `kill -9`, start again: the
  time until the node answers with every task back, and the bytes on disk per task.
"""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import time
import urllib.request
from pathlib import Path

from .. import bodies
from ..context import BenchContext, batch_problem
from ..load import Load, drive
from ..procs import BenchError, Launcher, free_port
from ..table import Row, cpu_share, goal, per_cpu, rate
from .batch import BATCH_GOAL_TASKS_PER_S, batch_load
from .enqueue import enqueue_load

DURABLE_GOAL_RATIO = 0.8
_LOAD_TIMEOUT_S = 900.0
_RESTART_TIMEOUT_S = 300.0


def durable(ctx: BenchContext) -> list[Row]:
    problem = ctx.node_problem()
    if problem is not None:
        return [Row(scenario="durable", system="miyamoto node", result=f"skipped: {problem}")]
    with tempfile.TemporaryDirectory(prefix="miyamoto-bench-durable-") as tmp:
        return [
            *_keepalive(ctx, Path(tmp)),
            *_batch(ctx, Path(tmp) / "batch"),
            _restart(ctx, Path(tmp) / "restart"),
        ]


def _keepalive(ctx: BenchContext, tmp: Path) -> list[Row]:
    scenario = "enqueue keep-alive, durable"
    duration_s = ctx.duration_s(10.0, 2.0)
    load = enqueue_load()
    rates: dict[str, float] = {}
    rows = []
    for system, data_dir in (("node --in-memory", None), ("node --data-dir", tmp / "keepalive")):
        with Launcher() as launcher:
            node, port = ctx.start_node(launcher, cpu=ctx.server_cpu, data_dir=data_dir)
            measured = ctx.measure(
                launcher, node, load, [port], duration_s=duration_s, load_cpu=ctx.load_cpu
            )
        rates[system] = measured.load.rate_per_s
        in_memory = rates["node --in-memory"]
        durable_row = data_dir is not None
        rows.append(
            Row(
                scenario=scenario,
                system=f"miyamoto {system}",
                result=rate(measured.load.rate_per_s),
                ratio=measured.load.rate_per_s / in_memory if in_memory else None,
                per_cpu=measured.per_cpu,
                goal=goal(
                    f"≥ {DURABLE_GOAL_RATIO}x in memory",
                    measured.load.rate_per_s >= DURABLE_GOAL_RATIO * in_memory,
                )
                if durable_row
                else "",
                server_cpu=cpu_share(measured.server_cpu_s, measured.load.window_s),
                load_cpu=cpu_share(measured.load.gen_cpu_s, measured.load.window_s),
                generator=measured.load.generator,
                note=measured.load.errors,
            )
        )
    return rows


def _batch(ctx: BenchContext, data_dir: Path) -> list[Row]:
    scenario = f"batch enqueue ({bodies.BATCH_SIZE}/req), durable"
    duration_s = ctx.duration_s(5.0, 2.0)
    rows: list[Row] = []
    in_memory = 0.0
    for system, directory in (("node --in-memory", None), ("node --data-dir", data_dir)):
        with Launcher() as launcher:
            node, port = ctx.start_node(launcher, cpu=ctx.server_cpu, data_dir=directory)
            problem = batch_problem(port)
            if problem is not None:
                return [Row(scenario=scenario, system=system, result=f"skipped: {problem}")]
            measured = ctx.measure(
                launcher, node, batch_load(), [port], duration_s=duration_s, load_cpu=ctx.load_cpu
            )
        node_rate = measured.load.rate_per_s * bodies.BATCH_SIZE
        in_memory = in_memory or node_rate
        rows.append(
            Row(
                scenario=scenario,
                system=f"miyamoto {system}",
                result=rate(node_rate),
                ratio=node_rate / in_memory if in_memory else None,
                per_cpu=per_cpu(node_rate, measured.server_cpu_s, measured.load.window_s),
                goal=goal(
                    f"≥ {BATCH_GOAL_TASKS_PER_S:,} tasks/s", node_rate >= BATCH_GOAL_TASKS_PER_S
                )
                if directory is not None
                else "",
                server_cpu=cpu_share(measured.server_cpu_s, measured.load.window_s),
                load_cpu=cpu_share(measured.load.gen_cpu_s, measured.load.window_s),
                generator=measured.load.generator,
                note=measured.load.errors,
            )
        )
    return rows


def _restart(ctx: BenchContext, data_dir: Path) -> Row:
    count = ctx.size(100_000, 10_000)
    scenario = f"restart with {count:,} pending tasks"
    port = free_port()
    task = bodies.json_task(
        bodies.MEMORY_URL, countdown_s=bodies.FAR_COUNTDOWN_S, params=bodies.MEMORY_PARAMS
    )
    load = Load(
        path=bodies.QUEUE_PATH,
        body=bodies.batch([task] * bodies.BATCH_SIZE),
        content_type=bodies.JSON,
        connections=4,
    )
    with Launcher() as launcher:
        node, _ = ctx.start_node(launcher, cpu=ctx.server_cpu, data_dir=data_dir, port=port)
        loaded = drive(
            launcher,
            load,
            [port],
            generator="own",
            duration_s=_LOAD_TIMEOUT_S,
            requests_max=math.ceil(count / bodies.BATCH_SIZE),
            cpu=ctx.load_cpu,
            name="durable-load",
        )
        stored = loaded.ok * bodies.BATCH_SIZE
        os.killpg(node.pid, signal.SIGKILL)
        node.popen.wait()
        disk_bytes = sum(f.stat().st_size for f in data_dir.iterdir() if f.is_file())
        started_s = time.monotonic()
        again, _ = ctx.start_node(launcher, cpu=ctx.server_cpu, data_dir=data_dir, port=port)
        scheduled = scheduled_count(port, started_s + _RESTART_TIMEOUT_S)
        took_s = time.monotonic() - started_s
        if not again.alive():
            raise BenchError(f"the node died restarting:\n{again.log_tail()}")
    if scheduled != stored:
        raise BenchError(f"{stored:,} tasks acknowledged, {scheduled:,} back after the restart")
    return Row(
        scenario=scenario,
        system="miyamoto node --data-dir",
        result=f"{took_s:.2f} s to serve again",
        note=f"{disk_bytes / max(stored, 1):,.0f} bytes on disk per task ({stored:,} tasks, "
        f"{disk_bytes / 2**20:,.0f} MiB incl. the WAL)",
    )


def scheduled_count(port: int, deadline_s: float) -> int:
    """The queue's scheduled count, once the node answers."""
    while True:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}{bodies.QUEUE_PATH}", timeout=5
            ) as response:
                counts = json.loads(response.read())["counts"]
                return int(counts.get("scheduled", 0))
        except OSError:
            if time.monotonic() > deadline_s:
                raise BenchError("the node did not serve again in time") from None
            time.sleep(0.05)
