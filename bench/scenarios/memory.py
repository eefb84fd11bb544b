"""Memory: RSS per pending task with 1,000,000 scheduled tasks on one node, and the time to load
them (20,000 with --quick).

Tasks have a 30-character url and a 20-byte body and are due in a day. They are loaded by batch
enqueue when the node takes it, else one per request. RSS comes from /proc/PID/status before the
load and after it.
"""

from __future__ import annotations

import math
import time

from .. import bodies
from ..context import BenchContext, batch_problem
from ..load import Load, drive
from ..procs import BenchError, Launcher
from ..table import Row, goal

MEMORY_GOAL_BYTES_PER_TASK = 600
_SETTLE_S = 0.5
_LOAD_TIMEOUT_S = 900.0


def memory(ctx: BenchContext) -> list[Row]:
    scenario = "memory"
    count = ctx.size(1_000_000, 20_000)
    problem = ctx.node_problem()
    if problem is not None:
        return [Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}")]
    with Launcher() as launcher:
        node, port = ctx.start_node(launcher, cpu=ctx.server_cpu)
        use_batch = batch_problem(port) is None
        time.sleep(_SETTLE_S)
        rss_before = node.rss_bytes()
        if use_batch:
            task = bodies.json_task(
                bodies.MEMORY_URL, countdown_s=bodies.FAR_COUNTDOWN_S, params=bodies.MEMORY_PARAMS
            )
            load = Load(
                path=bodies.QUEUE_PATH,
                body=bodies.batch([task] * bodies.BATCH_SIZE),
                content_type=bodies.JSON,
                connections=4,
            )
            requests = math.ceil(count / bodies.BATCH_SIZE)
            per_request = bodies.BATCH_SIZE
        else:
            load = Load(
                path=bodies.QUEUE_PATH,
                body=(
                    f"task.url={bodies.MEMORY_URL}&task.countdown={bodies.FAR_COUNTDOWN_S}"
                    f"&x={bodies.MEMORY_PARAMS['x']}"
                ).encode(),
                content_type=bodies.FORM,
                connections=50,
            )
            requests = count
            per_request = 1
        loaded = drive(
            launcher,
            load,
            [port],
            generator="own",
            duration_s=_LOAD_TIMEOUT_S,
            requests_max=requests,
            cpu=ctx.load_cpu,
            name="memory-load",
        )
        time.sleep(_SETTLE_S)
        rss_after = node.rss_bytes()
        if not node.alive():
            raise BenchError(f"the node died holding tasks:\n{node.log_tail()}")
    tasks = loaded.ok * per_request
    if rss_before is None or rss_after is None or tasks == 0:
        raise BenchError(f"could not measure: {tasks} tasks loaded ({loaded.errors})")
    per_task = (rss_after - rss_before) / tasks
    notes = [
        f"RSS {rss_before / 2**20:,.0f} → {rss_after / 2**20:,.0f} MiB",
        f"{tasks:,} tasks enqueued in {loaded.window_s:.1f} s "
        f"({loaded.rate_per_s * per_request:,.0f} tasks/s, {'batch' if use_batch else 'form'})",
    ]
    if loaded.errors:
        notes.append(loaded.errors)
    return [
        Row(
            scenario=scenario,
            system="miyamoto node (R=1)",
            result=f"{per_task:,.0f} bytes/task",
            goal=goal(
                f"≤ {MEMORY_GOAL_BYTES_PER_TASK} B/task", per_task <= MEMORY_GOAL_BYTES_PER_TASK
            ),
            generator=loaded.generator,
            note="; ".join(notes),
        )
    ]
