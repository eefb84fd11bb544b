"""Timer precision: how late tasks arrive after their ETA, at about 1,000 tasks per second.

10,000 tasks (2,000 with --quick) get ETAs spread evenly over 10 s (2 s), all loaded before the
first is due. The receiver compares each arrival with the task's X-Task-ETA. The bare baseline is
a trio loop that sleeps until each ETA and sends through a keep-alive pool: the lateness of
trio + h11 + the receiver themselves.
"""

from __future__ import annotations

import json
import statistics
import time

from .. import bodies
from ..context import BenchContext, batch_problem, wait_until
from ..httpc import Client, receiver_stats, reset_receiver, wait_for_count
from ..procs import BenchError, Launcher, python_module_command
from ..table import Row, goal
from .delivery import POOL_CONNECTIONS

LATENESS_GOAL_P99_MS = 20.0
_TASKS_PER_S = 1_000
_SINGLE_LOAD_RATE_GUESS = 1_000.0
"""Tasks/s the harness's own one-connection client loads single tasks at, at worst."""


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def lateness_summary(lateness_ms: list[float]) -> tuple[str, float]:
    """('p50 … / p99 … / max … ms', p99)."""
    if not lateness_ms:
        return "no arrivals", float("inf")
    ordered = sorted(lateness_ms)
    p99 = percentile(ordered, 0.99)
    return (
        f"late p50 {statistics.median(ordered):.1f} / p99 {p99:.1f} / max {ordered[-1]:.1f} ms",
        p99,
    )


def _early_note(lateness_ms: list[float]) -> str:
    early = sum(1 for value in lateness_ms if value < -1.0)
    return f"{early} arrived > 1 ms early" if early else ""


def timer_precision(ctx: BenchContext) -> list[Row]:
    scenario = "timer precision"
    spread_s = ctx.duration_s(10.0, 2.0)
    count = int(spread_s * _TASKS_PER_S)
    rows = [_bare_timer_row(ctx, scenario, count, spread_s)]
    problem = ctx.node_problem()
    if problem is not None:
        rows.append(Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}"))
        return rows
    with Launcher() as launcher:
        _receiver, receiver_port = ctx.start_receiver(
            launcher, record_lateness=True, cpu=ctx.load_cpu
        )
        _node, port = ctx.start_node(launcher, cpu=ctx.server_cpu)
        use_batch = batch_problem(port) is None
        lead_s = 1.5 + (0.0 if use_batch else count / _SINGLE_LOAD_RATE_GUESS)
        first_eta_s = time.time() + lead_s
        etas = [first_eta_s + index * spread_s / count for index in range(count)]
        reset_receiver(receiver_port)
        _load(port, bodies.receiver_url(receiver_port), etas, use_batch)
        notes = [
            f"{count:,} tasks over {spread_s:g} s, loaded by {'batch' if use_batch else 'form'}"
        ]
        if time.time() > first_eta_s:
            notes.append(f"loading overran the first ETA by {time.time() - first_eta_s:.1f} s")
        wait_until(etas[-1])
        stats = wait_for_count(receiver_port, count, 10.0 + spread_s)
    lateness = [float(value) for value in stats["lateness_ms"]]
    summary, p99 = lateness_summary(lateness)
    if stats["count"] < count:
        notes.append(f"only {stats['count']:,} of {count:,} arrived")
    if stats.get("missing_eta"):
        notes.append(f"{stats['missing_eta']} without a readable X-Task-ETA")
    notes.append(_early_note(lateness))
    rows.append(
        Row(
            scenario=scenario,
            system="miyamoto node (R=1)",
            result=summary,
            goal=goal(f"p99 ≤ {LATENESS_GOAL_P99_MS:g} ms", p99 <= LATENESS_GOAL_P99_MS),
            generator="receiver",
            note="; ".join(note for note in notes if note),
        )
    )
    return rows


def _load(port: int, url: str, etas: list[float], use_batch: bool) -> None:
    with Client(port) as client:
        if use_batch:
            for start in range(0, len(etas), bodies.BATCH_SIZE):
                tasks = [
                    bodies.json_task(url, eta_s=eta)
                    for eta in etas[start : start + bodies.BATCH_SIZE]
                ]
                _expect_ok(*client.post(bodies.QUEUE_PATH, bodies.batch(tasks), bodies.JSON))
        else:
            for eta in etas:
                _expect_ok(
                    *client.post(bodies.QUEUE_PATH, bodies.form_task(url, eta_s=eta), bodies.FORM)
                )


def _expect_ok(status: int, body: bytes) -> None:
    if status != 200:
        raise BenchError(f"enqueue answered HTTP {status}: {body[:200]!r}")


def _bare_timer_row(ctx: BenchContext, scenario: str, count: int, spread_s: float) -> Row:
    with Launcher() as launcher:
        _receiver, receiver_port = ctx.start_receiver(
            launcher, record_lateness=True, cpu=ctx.load_cpu
        )
        start_at_s = time.time() + 1.0
        finished = launcher.run(
            "bare-timer",
            python_module_command(
                "bench.bare_client",
                [
                    "--port",
                    str(receiver_port),
                    "--count",
                    str(count),
                    "--connections",
                    str(POOL_CONNECTIONS),
                    "--spread-s",
                    str(spread_s),
                    "--start-at-s",
                    f"{start_at_s:.6f}",
                ],
            ),
            timeout_s=spread_s + 60,
            cpu=ctx.server_cpu,
        )
        if finished.returncode != 0:
            raise BenchError(f"bare timer client failed:\n{finished.stderr[-2000:]}")
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        stats = receiver_stats(receiver_port)
    lateness = [float(value) for value in stats["lateness_ms"]]
    summary, _p99 = lateness_summary(lateness)
    problems = [f"{result[k]}x {k}" for k in ("other_status", "errors") if result[k]]
    return Row(
        scenario=scenario,
        system="bare trio sleep_until + h11 client",
        result=summary,
        generator="receiver",
        note="; ".join(p for p in [*problems, _early_note(lateness)] if p),
    )
