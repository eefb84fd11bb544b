"""The ceiling for delivery: a bare trio + h11 client loop with a keep-alive pool, no queue work.

It sends COUNT webhook-shaped POSTs (the headers a node sends: X-Task-Id, X-Task-ETA, ...) to one
receiver over CONNECTIONS kept-alive connections, as fast as they are answered, and prints one JSON
line: requests, ok (2xx), errors, seconds, start_s (wall clock), cpu_s (used while sending).

With --spread-s S, request i is instead sent at START + i * S / COUNT (wall clock) and carries that
time as its X-Task-ETA: the ceiling for timer precision.

    python -m bench.bare_client --port 9099 --count 20000 [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import h11
import trio

_RECEIVE_BYTES = 64 * 1024
_BODY = b"x=1"
_ERRORS_MAX = 1000
"""Give up after this many connection errors: the receiver is gone, not slow."""


@dataclass(slots=True)
class Tally:
    ok: int = 0
    other_status: int = 0
    errors: int = 0


def webhook_request(port: int, index: int, eta_s: float) -> h11.Request:
    """What a node sends for task `index`: the same headers, so h11 does the same work."""
    return h11.Request(
        method="POST",
        target="/w",
        headers=[
            ("Host", f"127.0.0.1:{port}"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", str(len(_BODY))),
            ("X-Task-Id", f"bare-{index:08d}"),
            ("X-Task-Queue", "bench"),
            ("X-Task-Retry-Count", "0"),
            ("X-Task-ETA", f"{eta_s:.3f}"),
            ("User-Agent", "miyamoto-bench-bare-client"),
        ],
    )


async def _send_one(stream: trio.SocketStream, conn: h11.Connection, request: h11.Request) -> int:
    await stream.send_all(
        conn.send(request) + conn.send(h11.Data(data=_BODY)) + conn.send(h11.EndOfMessage())
    )
    status = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(_RECEIVE_BYTES))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            return status
        elif isinstance(event, h11.ConnectionClosed):
            raise h11.RemoteProtocolError("connection closed before the response ended")


async def _pool_worker(
    port: int,
    next_job: Callable[[], tuple[int, float] | None] | None,
    jobs: trio.MemoryReceiveChannel[tuple[int, float]] | None,
    tally: Tally,
) -> None:
    """One kept-alive connection sending jobs one after another; reconnects after an error."""
    stream: trio.SocketStream | None = None
    conn = h11.Connection(h11.CLIENT)
    try:
        while True:
            if jobs is not None:
                try:
                    job = await jobs.receive()
                except trio.EndOfChannel:
                    return
            else:
                assert next_job is not None
                maybe = next_job()
                if maybe is None:
                    return
                job = maybe
            index, eta_s = job
            try:
                if stream is None:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    conn = h11.Connection(h11.CLIENT)
                status = await _send_one(stream, conn, webhook_request(port, index, eta_s))
                if 200 <= status < 300:
                    tally.ok += 1
                else:
                    tally.other_status += 1
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    await stream.aclose()
                    stream = None
                else:
                    conn.start_next_cycle()
            except (OSError, trio.BrokenResourceError, h11.ProtocolError):
                tally.errors += 1
                if stream is not None:
                    await stream.aclose()
                    stream = None
                if tally.errors >= _ERRORS_MAX:
                    return
    finally:
        if stream is not None:
            await stream.aclose()


async def run_burst(port: int, count: int, connections: int) -> dict[str, float | int]:
    """COUNT requests as fast as the pool allows."""
    tally = Tally()
    cpu_before = _cpu_s()
    start_s = time.time()
    next_index = 0

    def next_job() -> tuple[int, float] | None:
        nonlocal next_index
        if next_index >= count:
            return None
        next_index += 1
        return next_index - 1, start_s

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(min(connections, count)):
            nursery.start_soon(_pool_worker, port, next_job, None, tally)
    seconds = time.perf_counter() - started
    return _report(count, tally, seconds, start_s, _cpu_s() - cpu_before)


async def run_spread(
    port: int, count: int, connections: int, spread_s: float, start_at_s: float
) -> dict[str, float | int]:
    """Request i leaves at start_at_s + i * spread_s / count (wall clock): a bare timer loop."""
    tally = Tally()
    cpu_before = _cpu_s()
    send_jobs, receive_jobs = trio.open_memory_channel[tuple[int, float]](0)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(_pool_worker, port, None, receive_jobs.clone(), tally)
        receive_jobs.close()
        async with send_jobs:
            for index in range(count):
                eta_s = start_at_s + index * spread_s / count
                await trio.sleep_until(trio.current_time() + (eta_s - time.time()))
                await send_jobs.send((index, eta_s))
    seconds = time.perf_counter() - started
    return _report(count, tally, seconds, start_at_s, _cpu_s() - cpu_before)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _report(
    count: int, tally: Tally, seconds: float, start_s: float, cpu_s: float
) -> dict[str, float | int]:
    return {
        "cpu_s": cpu_s,
        "requests": count,
        "ok": tally.ok,
        "other_status": tally.other_status,
        "errors": tally.errors,
        "seconds": seconds,
        "start_s": start_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_client", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--spread-s", type=float, default=None)
    parser.add_argument(
        "--start-at-s", type=float, default=None, help="wall clock of the first request (spread)"
    )
    args = parser.parse_args(argv)
    if args.spread_s is None:
        result = trio.run(run_burst, args.port, args.count, args.connections)
    else:
        start_at_s = args.start_at_s if args.start_at_s is not None else time.time() + 0.5
        result = trio.run(
            run_spread, args.port, args.count, args.connections, args.spread_s, start_at_s
        )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
