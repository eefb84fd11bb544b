"""What the store costs beside a node kept in memory (docs/durability.md, "Measured").

- durable-memory: RSS per pending task, `--in-memory` and `--data-dir` side by side (goal
  ≤ 610 B each; 1,000,000 tasks, 20,000 with --quick), loaded by batch enqueue.
- durable-timer: lateness of tasks with ETAs spread at 1,000 tasks/s, `--in-memory` and
  `--data-dir` side by side (goal p99 ≤ 20 ms with the store on): every delivery's outcome is a
  commit.
- durable-restart: a node restarted on a data directory holding 1,000,000 pending tasks
  (100,000 with --quick): the time from the start command until it serves with every task
  back (goal 15 s), and the bytes on disk per task. One task is stored by a real node over
  HTTP and copied in SQL under new ids (loading a million over HTTP would take minutes and
  measure the enqueue path, which durable.py measures); the restart reads them as it reads
  any row.
"""

from __future__ import annotations

import math
import signal
import sqlite3
import tempfile
import time
from pathlib import Path

from .. import bodies
from ..context import NODE_MODULE, BenchContext, batch_problem, wait_until
from ..httpc import Client, reset_receiver, wait_for_count
from ..load import Load, drive
from ..procs import BenchError, Launcher, free_port, python_module_command
from ..table import Row, goal
from .durable import scheduled_count
from .timer import LATENESS_GOAL_P99_MS, lateness_summary

MEMORY_GOAL_BYTES_PER_TASK = 610
RESTART_GOAL_S = 15.0
_SETTLE_S = 0.5
_LOAD_TIMEOUT_S = 900.0
_RESTART_TIMEOUT_S = 300.0
_TIMER_TASKS_PER_S = 1_000
_STORE_FILE = "miyamoto.sqlite3"


def durable_memory(ctx: BenchContext) -> list[Row]:
    scenario = "memory per pending task, durable"
    count = ctx.size(1_000_000, 20_000)
    problem = ctx.node_problem()
    if problem is not None:
        return [Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="miyamoto-bench-memory-") as tmp:
        for system, data_dir in (("--in-memory", None), ("--data-dir", Path(tmp) / "data")):
            per_task, note = _rss_per_task(ctx, count, data_dir)
            rows.append(
                Row(
                    scenario=scenario,
                    system=f"miyamoto node {system}",
                    result=f"{per_task:,.0f} bytes/task",
                    goal=goal(
                        f"≤ {MEMORY_GOAL_BYTES_PER_TASK} B/task",
                        per_task <= MEMORY_GOAL_BYTES_PER_TASK,
                    ),
                    generator="own",
                    note=note,
                )
            )
    return rows


def _rss_per_task(ctx: BenchContext, count: int, data_dir: Path | None) -> tuple[float, str]:
    with Launcher() as launcher:
        node, port = ctx.start_node(launcher, cpu=ctx.server_cpu, data_dir=data_dir)
        problem = batch_problem(port)
        if problem is not None:
            raise BenchError(problem)
        time.sleep(_SETTLE_S)
        rss_before = node.rss_bytes()
        loaded = drive(
            launcher,
            _far_batch_load(),
            [port],
            generator="own",
            duration_s=_LOAD_TIMEOUT_S,
            requests_max=math.ceil(count / bodies.BATCH_SIZE),
            cpu=ctx.load_cpu,
            name="memory-load",
        )
        time.sleep(_SETTLE_S)
        rss_after = node.rss_bytes()
        if not node.alive():
            raise BenchError(f"the node died holding tasks:\n{node.log_tail()}")
    tasks = loaded.ok * bodies.BATCH_SIZE
    if rss_before is None or rss_after is None or tasks == 0:
        raise BenchError(f"could not measure: {tasks} tasks loaded ({loaded.errors})")
    note = (
        f"RSS {rss_before / 2**20:,.0f} → {rss_after / 2**20:,.0f} MiB; {tasks:,} tasks in "
        f"{loaded.window_s:.1f} s ({loaded.rate_per_s * bodies.BATCH_SIZE:,.0f} tasks/s)"
    )
    return (rss_after - rss_before) / tasks, note


def _far_batch_load() -> Load:
    task = bodies.json_task(
        bodies.MEMORY_URL, countdown_s=bodies.FAR_COUNTDOWN_S, params=bodies.MEMORY_PARAMS
    )
    return Load(
        path=bodies.QUEUE_PATH,
        body=bodies.batch([task] * bodies.BATCH_SIZE),
        content_type=bodies.JSON,
        connections=4,
    )


def durable_timer(ctx: BenchContext) -> list[Row]:
    scenario = "timer lateness, durable"
    spread_s = ctx.duration_s(10.0, 2.0)
    count = int(spread_s * _TIMER_TASKS_PER_S)
    problem = ctx.node_problem()
    if problem is not None:
        return [Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}")]
    rows = []
    in_memory_p99 = None
    with tempfile.TemporaryDirectory(prefix="miyamoto-bench-timer-") as tmp:
        for system, data_dir in (("--in-memory", None), ("--data-dir", Path(tmp) / "data")):
            summary, p99, note = _lateness(ctx, count, spread_s, data_dir)
            in_memory_p99 = in_memory_p99 if in_memory_p99 is not None else p99
            rows.append(
                Row(
                    scenario=scenario,
                    system=f"miyamoto node {system}",
                    result=summary,
                    ratio=p99 / in_memory_p99 if in_memory_p99 else None,
                    goal=goal(f"p99 ≤ {LATENESS_GOAL_P99_MS:g} ms", p99 <= LATENESS_GOAL_P99_MS),
                    generator="receiver",
                    note=note,
                )
            )
    return rows


def _lateness(
    ctx: BenchContext, count: int, spread_s: float, data_dir: Path | None
) -> tuple[str, float, str]:
    with Launcher() as launcher:
        _receiver, receiver_port = ctx.start_receiver(
            launcher, record_lateness=True, cpu=ctx.load_cpu
        )
        _node, port = ctx.start_node(launcher, cpu=ctx.server_cpu, data_dir=data_dir)
        problem = batch_problem(port)
        if problem is not None:
            raise BenchError(problem)
        first_eta_s = time.time() + 1.5
        etas = [first_eta_s + index * spread_s / count for index in range(count)]
        reset_receiver(receiver_port)
        url = bodies.receiver_url(receiver_port)
        with Client(port) as client:
            for start in range(0, count, bodies.BATCH_SIZE):
                tasks = [
                    bodies.json_task(url, eta_s=eta)
                    for eta in etas[start : start + bodies.BATCH_SIZE]
                ]
                status, body = client.post(bodies.QUEUE_PATH, bodies.batch(tasks), bodies.JSON)
                if status != 200:
                    raise BenchError(f"enqueue answered HTTP {status}: {body[:200]!r}")
        notes = [f"{count:,} tasks over {spread_s:g} s"]
        if time.time() > first_eta_s:
            notes.append(f"loading overran the first ETA by {time.time() - first_eta_s:.1f} s")
        wait_until(etas[-1])
        stats = wait_for_count(receiver_port, count, 10.0 + spread_s)
    lateness = [float(value) for value in stats["lateness_ms"]]
    if stats["count"] < count:
        notes.append(f"only {stats['count']:,} of {count:,} arrived")
    summary, p99 = lateness_summary(lateness)
    return summary, p99, "; ".join(notes)


def durable_restart(ctx: BenchContext) -> list[Row]:
    count = ctx.size(1_000_000, 100_000)
    scenario = f"restart with {count:,} pending tasks"
    problem = ctx.node_problem()
    if problem is not None:
        return [Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}")]
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="miyamoto-bench-restart-") as tmp:
        data_dir = Path(tmp) / "data"
        with Launcher() as launcher:
            node, _ = ctx.start_node(launcher, cpu=ctx.server_cpu, data_dir=data_dir, port=port)
            _enqueue_one(port)
            node.popen.send_signal(signal.SIGTERM)  # drains: the task is committed
            if node.popen.wait(timeout=30) != 0:
                raise BenchError(f"the node did not drain cleanly:\n{node.log_tail()}")
        copied_s = _copy_task_rows(data_dir / _STORE_FILE, count)
        disk_bytes = sum(f.stat().st_size for f in data_dir.iterdir() if f.is_file())
        with Launcher() as launcher:
            started_s = time.monotonic()
            # Not ctx.start_node: its wait for the port is shorter than a restart may take.
            again = launcher.start(
                "node",
                python_module_command(
                    NODE_MODULE,
                    ["127.0.0.1", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
                ),
                cpu=ctx.server_cpu,
            )
            scheduled = scheduled_count(port, started_s + _RESTART_TIMEOUT_S)
            took_s = time.monotonic() - started_s
            rss = again.rss_bytes()
            if not again.alive():
                raise BenchError(f"the node died restarting:\n{again.log_tail()}")
    if scheduled != count:
        raise BenchError(f"{count:,} tasks stored, {scheduled:,} back after the restart")
    notes = [
        f"{disk_bytes / count:,.0f} bytes on disk per task ({disk_bytes / 2**20:,.0f} MiB)",
        f"rows copied in SQL in {copied_s:.1f} s",
    ]
    if rss is not None:
        notes.append(f"RSS {rss / 2**20:,.0f} MiB once serving")
    return [
        Row(
            scenario=scenario,
            system="miyamoto node --data-dir",
            result=f"{took_s:.2f} s to serve again",
            goal=goal(f"≤ {RESTART_GOAL_S:g} s", took_s <= RESTART_GOAL_S),
            note="; ".join(notes),
        )
    ]


def _enqueue_one(port: int) -> None:
    task = bodies.json_task(
        bodies.MEMORY_URL, countdown_s=bodies.FAR_COUNTDOWN_S, params=bodies.MEMORY_PARAMS
    )
    with Client(port) as client:
        status, body = client.post(bodies.QUEUE_PATH, bodies.batch([task]), bodies.JSON)
    if status != 200:
        raise BenchError(f"enqueue answered HTTP {status}: {body[:200]!r}")


def _copy_task_rows(path: Path, count: int) -> float:
    """Make the one stored row `count` rows, ids t1..tN (the stored one replaced); seconds."""
    started_s = time.monotonic()
    db = sqlite3.connect(path)
    try:
        columns = [row[1] for row in db.execute("PRAGMA table_info(tasks)")]
        select = ", ".join("'t' || n" if c == "id" else c for c in columns)
        with db:
            template = db.execute("SELECT id FROM tasks").fetchall()
            if len(template) != 1:
                raise BenchError(f"expected one stored task, found {len(template)}")
            db.execute(
                f"WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers "
                f"WHERE n < {count}) INSERT INTO tasks ({', '.join(columns)}) "
                f"SELECT {select} FROM numbers, (SELECT * FROM tasks WHERE id = ?)",
                (template[0][0],),
            )
            db.execute("DELETE FROM tasks WHERE id = ?", (template[0][0],))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return time.monotonic() - started_s
