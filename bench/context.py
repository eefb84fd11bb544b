"""What every scenario shares: the options, how to start what it measures, and numbers measured
earlier in the same run (so a later scenario can reuse a baseline instead of measuring it again).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import bodies
from .httpc import Client
from .load import Load, LoadResult, drive
from .procs import (
    REPO_ROOT,
    BenchError,
    Launcher,
    Service,
    cpu_count,
    free_port,
    python_module_command,
)
from .table import per_cpu

NODE_MODULE = "miyamoto.io.node"
_NODE_HELP_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    quick: bool = False
    generator: str = "auto"
    pin: bool = True
    duration_s: float | None = None
    """Overrides every scenario's measuring time (for smoke runs)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    load: LoadResult
    server_cpu_s: float | None

    @property
    def per_cpu(self) -> float | None:
        """Requests answered per CPU-second of the server."""
        return per_cpu(self.load.rate_per_s, self.server_cpu_s, self.load.window_s)


@dataclass(slots=True)
class BenchContext:
    options: Options
    results: dict[str, float] = field(default_factory=dict)
    """Numbers measured so far in this run, by name (e.g. 'bare_server_keepalive', and
    'bare_server_keepalive/cpu' for the same per CPU-second)."""

    def keep(self, name: str, rate_per_s: float, per_cpu_s: float | None) -> None:
        self.results[name] = rate_per_s
        if per_cpu_s is not None:
            self.results[f"{name}/cpu"] = per_cpu_s

    _node_help: str | None = None
    _node_problem: str | None = None

    # --- sizes ---------------------------------------------------------------------------------

    def duration_s(self, full_s: float, quick_s: float) -> float:
        if self.options.duration_s is not None:
            return self.options.duration_s
        return quick_s if self.options.quick else full_s

    def size(self, full: int, quick: int) -> int:
        return quick if self.options.quick else full

    # --- placement -----------------------------------------------------------------------------

    @property
    def server_cpu(self) -> int | None:
        """The core the measured server is pinned to (None: not pinned)."""
        return 0 if self.options.pin and cpu_count() >= 2 else None

    @property
    def load_cpu(self) -> int | None:
        """The core the load generator and the receiver are pinned to."""
        return 1 if self.options.pin and cpu_count() >= 2 else None

    def log(self, message: str) -> None:
        print(f"  · {message}", file=sys.stderr, flush=True)

    # --- what a scenario starts ----------------------------------------------------------------

    def node_problem(self) -> str | None:
        """Why the node cannot run here, or None when `python -m miyamoto.io.node --help` works."""
        if self._node_help is None and self._node_problem is None:
            try:
                done = subprocess.run(
                    python_module_command(NODE_MODULE, ["--help"]),
                    cwd=REPO_ROOT,
                    capture_output=True,
                    text=True,
                    timeout=_NODE_HELP_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired:
                self._node_problem = f"`python -m {NODE_MODULE} --help` hung"
            else:
                if done.returncode == 0:
                    self._node_help = done.stdout
                else:
                    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    self._node_problem = f"node not available ({last[:120]})"
        return self._node_problem

    def cluster_problem(self) -> str | None:
        """Why a cluster cannot run here: the node lacks --seed/--replicas, or is missing."""
        problem = self.node_problem()
        if problem is not None:
            return problem
        assert self._node_help is not None
        if "--seed" not in self._node_help or "--replicas" not in self._node_help:
            return "cluster not available (the node has no --seed/--replicas)"
        return None

    def start_node(
        self,
        launcher: Launcher,
        *,
        cpu: int | None,
        extra_args: list[str] | None = None,
        name: str = "node",
        port: int | None = None,
        leader: str = "127.0.0.1",
        data_dir: Path | None = None,
    ) -> tuple[Service, int]:
        """`python -m miyamoto.io.node 127.0.0.1 LEADER --port P [extra]`, once it accepts.
        In memory unless `data_dir` is given (a fresh directory: see below)."""
        problem = self.node_problem()
        if problem is not None:
            raise BenchError(problem)
        port = port if port is not None else free_port()
        service = launcher.start(
            name,
            python_module_command(
                NODE_MODULE,
                # In memory: ports are drawn afresh each run, and a data directory left by an
                # earlier run on the same port would bring back that run's cluster.
                [
                    *("127.0.0.1", leader, "--port", str(port)),
                    *(["--in-memory"] if data_dir is None else ["--data-dir", str(data_dir)]),
                    *(extra_args or []),
                ],
            ),
            cpu=cpu,
        )
        service.wait_for_port(port)
        return service, port

    def start_bare_server(self, launcher: Launcher) -> tuple[Service, int]:
        port = free_port()
        service = launcher.start(
            "bare-server",
            python_module_command("bench.bare_server", ["--port", str(port)]),
            cpu=self.server_cpu,
        )
        service.wait_for_port(port)
        return service, port

    def start_receiver(
        self, launcher: Launcher, *, cpu: int | None, record_lateness: bool = False
    ) -> tuple[Service, int]:
        port = free_port()
        args = ["--port", str(port)] + (["--record-lateness"] if record_lateness else [])
        service = launcher.start(
            "receiver",
            python_module_command("bench.fast_receiver", args),
            cpu=cpu,
        )
        service.wait_for_port(port)
        return service, port

    # --- measuring -----------------------------------------------------------------------------

    def measure(
        self,
        launcher: Launcher,
        server: Service,
        load: Load,
        ports: list[int],
        *,
        duration_s: float,
        requests_max: int | None = None,
        load_cpu: int | None,
        generator: str | None = None,
        name: str = "load",
    ) -> Measured:
        """Drive `load` at `ports` and read the server's CPU use over the same time."""
        cpu_before = server.cpu_s()
        result = drive(
            launcher,
            load,
            ports,
            generator=generator or self.options.generator,
            duration_s=duration_s,
            requests_max=requests_max,
            cpu=load_cpu,
            name=name,
        )
        cpu_after = server.cpu_s()
        server_cpu_s = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        if not server.alive():
            raise BenchError(f"{server.name} died under load:\n{server.log_tail()}")
        return Measured(load=result, server_cpu_s=server_cpu_s)


def batch_problem(port: int) -> str | None:
    """Why the node at `port` does not take a JSON array of tasks, or None when it does."""
    tasks = [bodies.json_task(bodies.UNROUTED_URL, countdown_s=bodies.FAR_COUNTDOWN_S)] * 2
    with Client(port) as client:
        status, body = client.post(bodies.QUEUE_PATH, bodies.batch(tasks), bodies.JSON)
    if status != 200:
        return f"batch enqueue not supported (HTTP {status}: {body[:100].decode(errors='replace')})"
    try:
        answer = json.loads(body)
    except ValueError:
        return "batch enqueue answered something that is not JSON"
    if isinstance(answer, dict):
        # Either a bare list or an object holding one (e.g. {"results": [...]}).
        answer = next((value for value in answer.values() if isinstance(value, list)), answer)
    if not isinstance(answer, list) or len(answer) != len(tasks):
        return f"batch enqueue did not answer one result per task: {body[:100]!r}"
    return None


def wait_until(wall_s: float) -> None:
    """Sleep until the wall clock reads `wall_s`."""
    delay_s = wall_s - time.time()
    if delay_s > 0:
        time.sleep(delay_s)
