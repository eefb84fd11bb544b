"""Slow receiver: how fast a node delivers to a fast receiver while a receiver that never answers
holds its share of the node's slots, against the same node with no such receiver (issue 10).

The hanging receiver accepts connections, reads what comes and never answers. Its tasks are
enqueued first, due at once: they take the receiver's share of the slots (64 by default) and
hang for the queue's delivery deadline (30 s), and the rest wait for a slot. Then the fast
receiver's tasks are loaded at one ETA and timed as in the delivery scenario. Each side runs on
a fresh node; the ratio is beside / alone (1.0: the hanging receiver costs the fast one nothing).
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from types import TracebackType

from .. import bodies
from ..context import BenchContext
from ..httpc import Client
from ..procs import BenchError, Launcher
from ..table import Row, cpu_share, goal, rate
from .delivery import Delivered, preload_and_deliver

SLOW_RECEIVER_GOAL_RATIO = 0.8
HANGING_TASKS = 2_000
"""Tasks for the hanging receiver: far more than its share of the slots."""
HANGING_SETTLE_S_MAX = 10.0


class HangingReceiver:
    """A loopback listener (in a thread) that reads every request and answers none."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hanging-receiver", daemon=True)
        self.connections = 0

    def __enter__(self) -> HangingReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if sock is self._listener:
                    try:
                        connection, _ = sock.accept()
                    except BlockingIOError:
                        continue
                    connection.setblocking(False)
                    self._selector.register(connection, selectors.EVENT_READ)
                    self.connections += 1
                    continue
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, ConnectionError):
                    data = b"?"
                if not data:  # the node gave up on it (its deadline): let it go
                    self._selector.unregister(sock)
                    sock.close()


def slow_receiver(ctx: BenchContext) -> list[Row]:
    scenario = "slow-receiver"
    problem = ctx.node_problem()
    if problem is not None:
        return [Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}")]
    count = ctx.size(20_000, 5_000)
    alone = _deliver(ctx, count, hanging=None)
    with HangingReceiver() as hanging:
        beside = _deliver(ctx, count, hanging=hanging)
    ratio = beside.rate_per_s / alone.rate_per_s if alone.rate_per_s else None
    return [
        _row(scenario, "node, fast receiver alone", alone, 1.0, ""),
        _row(
            scenario,
            f"node, fast receiver + one that never answers ({HANGING_TASKS:,} tasks)",
            beside,
            ratio,
            goal(
                f"≥ {SLOW_RECEIVER_GOAL_RATIO}x alone",
                ratio is not None and ratio >= SLOW_RECEIVER_GOAL_RATIO,
            ),
        ),
    ]


def _row(scenario: str, system: str, delivered: Delivered, ratio: float | None, aim: str) -> Row:
    return Row(
        scenario=scenario,
        system=system,
        result=rate(delivered.rate_per_s),
        ratio=ratio,
        per_cpu=delivered.per_cpu,
        goal=aim,
        server_cpu=cpu_share(delivered.node_cpu_s, delivered.window_s),
        load_cpu=cpu_share(delivered.receiver_cpu_s, delivered.window_s),
        generator="receiver",
        note=delivered.note,
    )


def _deliver(ctx: BenchContext, count: int, *, hanging: HangingReceiver | None) -> Delivered:
    with Launcher() as launcher:
        receiver, receiver_port = ctx.start_receiver(launcher, cpu=ctx.load_cpu)
        node, port = ctx.start_node(launcher, cpu=ctx.server_cpu)
        if hanging is not None:
            _load_hanging(port, hanging)
        return preload_and_deliver(ctx, launcher, [node], [port], receiver, receiver_port, count)


def _load_hanging(port: int, hanging: HangingReceiver) -> None:
    """Enqueue the hanging receiver's tasks, due now, and wait until it holds its connections."""
    task = bodies.json_task(bodies.receiver_url(hanging.port))
    with Client(port) as client:
        for _ in range(0, HANGING_TASKS, bodies.BATCH_SIZE):
            batch = bodies.batch([task] * bodies.BATCH_SIZE)
            status, body = client.post(bodies.QUEUE_PATH, batch, bodies.JSON)
            if status != 200:
                raise BenchError(f"loading the hanging tasks: HTTP {status}: {body[:200]!r}")
    settle_by_s = time.monotonic() + HANGING_SETTLE_S_MAX
    before = -1
    while hanging.connections != before and time.monotonic() < settle_by_s:
        before = hanging.connections
        time.sleep(0.5)  # no new connection for half a second: it holds all it will get
