"""A peer row: RQ's enqueue rate, where redis-server and the rq package are installed.

rq is never installed into the project venv: the harness looks for an interpreter that imports
rq and redis ($BENCH_RQ_PYTHON, this one, or /usr/bin/python3) and skips with a clear line
otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from ..context import BenchContext
from ..procs import BenchError, Launcher, cpu_count, free_port, python_module_command
from ..table import Row, rate


def _python_with_rq() -> str | None:
    candidates = [os.environ.get("BENCH_RQ_PYTHON"), sys.executable, "/usr/bin/python3"]
    for python in candidates:
        if not python or not shutil.which(python):
            continue
        try:
            done = subprocess.run(
                [python, "-c", "import rq, redis"], capture_output=True, timeout=20
            )
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0:
            return python
    return None


def rq_peer(ctx: BenchContext) -> list[Row]:
    scenario = "peer: RQ enqueue"
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        return [
            Row(
                scenario=scenario, system="RQ + Redis", result="skipped: redis-server not installed"
            )
        ]
    python = _python_with_rq()
    if python is None:
        return [
            Row(
                scenario=scenario,
                system="RQ + Redis",
                result="skipped: no Python with rq (set BENCH_RQ_PYTHON)",
            )
        ]
    duration_s = ctx.duration_s(10.0, 2.0)
    processes = cpu_count()
    with Launcher() as launcher:
        port = free_port()
        redis = launcher.start(
            "redis",
            [
                redis_server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cpu=ctx.server_cpu,
        )
        redis.wait_for_port(port)
        cpu_before = redis.cpu_s()
        finished = launcher.run(
            "rq-enqueue",
            python_module_command(
                "bench.rq_enqueue",
                [
                    "--port",
                    str(port),
                    "--duration-s",
                    str(duration_s),
                    "--processes",
                    str(processes),
                ],
                python=python,
            ),
            timeout_s=duration_s + 90,
        )
        cpu_after = redis.cpu_s()
    if finished.returncode != 0:
        raise BenchError(f"rq enqueue failed:\n{finished.stderr[-2000:]}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    rq_rate = result["ok"] / result["window_s"]
    node_rate = ctx.results.get("node_enqueue_keepalive")
    note = f"{processes} client processes calling Queue.enqueue, unpinned"
    if node_rate:
        note += f"; the node's keep-alive enqueue was {node_rate / rq_rate:.1f}x this"
    redis_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return [
        Row(
            scenario=scenario,
            system="RQ + Redis",
            result=rate(rq_rate),
            server_cpu=f"{100 * redis_cpu / duration_s:.0f}% redis"
            if redis_cpu is not None
            else "",
            load_cpu=f"{100 * finished.cpu_s / duration_s:.0f}%",
            generator="rq clients",
            note=note,
        )
    ]
