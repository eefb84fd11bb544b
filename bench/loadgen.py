"""Our own HTTP load generator, for when wrk is not installed and for loads bounded by a count.

Several worker processes, each driving many connections with raw non-blocking sockets and one
epoll loop. Every request is the same pre-encoded bytes, so the generator spends its CPU on socket
calls, not on building requests. One request in flight per connection (no pipelining), as real
clients do. Keep-alive by default; --new-connection opens a connection per request and closes it
after the answer, as curl does.

The run is bounded by --duration-s and by --requests (both, whichever comes first) and stops by
itself. It prints one JSON line: responses by status, errors, the measured window and the CPU
seconds the workers used.

    python -m bench.loadgen --port 8088 --path /bench --body-file body.txt \
        --content-type application/x-www-form-urlencoded --connections 50 --duration-s 5
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import os
import resource
import selectors
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection

_RECEIVE_BYTES = 256 * 1024
_CONNECT_ERRORS_IN_A_ROW_MAX = 200
"""A worker whose connects keep failing stops: the server is gone, not slow."""
_START_DELAY_S = 0.3
"""Workers start together this long after the parent forks them (connections open first)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerPlan:
    targets: tuple[tuple[str, int], ...]
    request: bytes
    connections: int
    requests_max: int
    new_connection: bool
    start_at_s: float
    stop_at_s: float


@dataclass(slots=True, kw_only=True)
class WorkerResult:
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    first_send_s: float | None = None
    last_response_s: float | None = None
    ended_s: float | None = None
    """When the worker stopped: its stop time, or its last answer once its budget was spent."""
    cpu_s: float = 0.0


def build_request(
    *,
    host: str,
    port: int,
    path: str,
    body: bytes,
    content_type: str,
    close: bool = False,
    headers: Sequence[str] = (),
) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "User-Agent: miyamoto-bench-loadgen\r\n"
        + "".join(f"{header}\r\n" for header in headers)
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("latin-1") + body


class _Conn:
    __slots__ = ("buffer", "connecting", "outgoing", "sock", "target")

    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target
        self.buffer = bytearray()
        self.outgoing = memoryview(b"")
        self.connecting = True


def _response_end(buffer: bytearray) -> tuple[int, int, bool] | None:
    """(status, bytes the first complete response takes, server will close) or None if partial."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end]).lower()
    status = int(head[9:12])
    closes = b"\r\nconnection: close" in head
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        total = head_end + 4 + length
        return (status, total, closes) if len(buffer) >= total else None
    if b"\r\ntransfer-encoding: chunked" in head:
        # Bodies here are small; the last chunk marks the end.
        last = buffer.find(b"\r\n0\r\n\r\n", head_end)
        if last < 0:
            return None
        return status, last + 7, closes
    return status, head_end + 4, closes  # no body (204, 304) or framing we do not need


class _Worker:
    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.selector = selectors.DefaultSelector()
        self.result = WorkerResult()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.open = 0
        self.connect_errors_in_a_row = 0
        self.next_target = 0

    def may_send(self, now_s: float) -> bool:
        return self.sent < self.plan.requests_max and now_s < self.plan.stop_at_s

    def run(self) -> WorkerResult:
        plan = self.plan
        wanted = min(plan.connections, plan.requests_max)
        conns = [self.connect() for _ in range(wanted)]
        delay_s = plan.start_at_s - time.time()
        if delay_s > 0:
            time.sleep(delay_s)
        self.result.first_send_s = time.time()
        for conn in conns:
            if conn is not None and not conn.connecting:
                self.send(conn, time.time())
        while self.open > 0:
            now_s = time.time()
            if now_s >= plan.stop_at_s:
                break
            for key, mask in self.selector.select(timeout=min(0.1, plan.stop_at_s - now_s)):
                self.on_ready(key.data, mask)
            if self.connect_errors_in_a_row >= _CONNECT_ERRORS_IN_A_ROW_MAX:
                self.errors["gave up: connects keep failing"] += 1
                break
        self.result.ended_s = time.time()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.result.cpu_s = usage.ru_utime + usage.ru_stime
        self.result.statuses = dict(self.statuses)
        self.result.errors = dict(self.errors)
        return self.result

    def connect(self) -> _Conn | None:
        targets = self.plan.targets
        target = targets[self.next_target % len(targets)]
        self.next_target += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(target)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.errors[f"connect: {errno.errorcode.get(code, code)}"] += 1
            self.connect_errors_in_a_row += 1
            return None
        conn = _Conn(sock, target)
        conn.connecting = code != 0
        self.selector.register(
            sock, selectors.EVENT_WRITE if conn.connecting else selectors.EVENT_READ, conn
        )
        self.open += 1
        return conn

    def close(self, conn: _Conn) -> None:
        self.selector.unregister(conn.sock)
        conn.sock.close()
        self.open -= 1

    def replace(self, conn: _Conn, now_s: float) -> None:
        """Close `conn` and, while requests remain, open another in its place."""
        self.close(conn)
        if self.may_send(now_s):
            fresh = self.connect()
            if fresh is not None and not fresh.connecting:
                self.send(fresh, now_s)

    def send(self, conn: _Conn, now_s: float) -> None:
        if not self.may_send(now_s):
            self.close(conn)
            return
        self.sent += 1
        conn.outgoing = memoryview(self.plan.request)
        self.flush(conn, now_s)

    def flush(self, conn: _Conn, now_s: float) -> None:
        try:
            written = conn.sock.send(conn.outgoing)
        except BlockingIOError:
            written = 0
        except OSError as error:
            self.errors[f"send: {type(error).__name__}"] += 1
            self.replace(conn, now_s)
            return
        conn.outgoing = conn.outgoing[written:]
        self.selector.modify(
            conn.sock, selectors.EVENT_WRITE if conn.outgoing else selectors.EVENT_READ, conn
        )

    def on_ready(self, conn: _Conn, mask: int) -> None:
        now_s = time.time()
        if conn.connecting:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code != 0:
                self.errors[f"connect: {errno.errorcode.get(code, code)}"] += 1
                self.connect_errors_in_a_row += 1
                self.replace(conn, now_s)
                return
            conn.connecting = False
            self.connect_errors_in_a_row = 0
            if now_s >= self.plan.start_at_s:
                self.send(conn, now_s)
            else:
                self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        if conn.outgoing and mask & selectors.EVENT_WRITE:
            self.flush(conn, now_s)
            return
        try:
            data = conn.sock.recv(_RECEIVE_BYTES)
        except OSError as error:
            self.errors[f"receive: {type(error).__name__}"] += 1
            self.replace(conn, now_s)
            return
        if not data:
            self.errors["closed by server before answering"] += 1
            self.replace(conn, now_s)
            return
        conn.buffer += data
        try:
            parsed = _response_end(conn.buffer)
        except ValueError:
            self.errors["unparseable response"] += 1
            self.replace(conn, now_s)
            return
        if parsed is None:
            return
        status, used, closes = parsed
        del conn.buffer[:used]
        self.statuses[status] += 1
        self.connect_errors_in_a_row = 0
        self.result.last_response_s = now_s
        if self.plan.new_connection or closes:
            self.replace(conn, now_s)
        else:
            self.send(conn, now_s)


def _worker_main(plan: WorkerPlan, pipe: Connection) -> None:
    try:
        pipe.send(asdict(_Worker(plan).run()))
    finally:
        pipe.close()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def run(
    *,
    targets: list[tuple[str, int]],
    request: bytes,
    connections: int,
    duration_s: float,
    requests_max: int,
    workers: int,
    new_connection: bool,
) -> dict[str, object]:
    """Drive the load with `workers` processes; return the merged counts as a JSON-ready dict."""
    workers = max(1, min(workers, connections, requests_max))
    start_at_s = time.time() + _START_DELAY_S
    context = multiprocessing.get_context("fork")
    processes = []
    pipes = []
    # Spread targets so every worker reaches every node of a cluster.
    for index, (conns, budget) in enumerate(
        zip(_split(connections, workers), _split(requests_max, workers), strict=True)
    ):
        rotated = tuple(targets[index % len(targets) :] + targets[: index % len(targets)])
        plan = WorkerPlan(
            targets=rotated,
            request=request,
            connections=conns,
            requests_max=budget,
            new_connection=new_connection,
            start_at_s=start_at_s,
            stop_at_s=start_at_s + duration_s,
        )
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_worker_main, args=(plan, sender), daemon=True)
        process.start()
        sender.close()
        processes.append(process)
        pipes.append(receiver)
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    cpu_s = 0.0
    ended_s = start_at_s
    for pipe, process in zip(pipes, processes, strict=True):
        try:
            result = pipe.recv() if pipe.poll(duration_s + 30) else None
        except EOFError:  # the worker died without reporting
            result = None
        if result is not None:
            statuses.update({int(k): v for k, v in result["statuses"].items()})
            errors.update(result["errors"])
            cpu_s += result["cpu_s"]
            if result["ended_s"] is not None:
                ended_s = max(ended_s, result["ended_s"])
        else:
            errors["worker sent no result"] += 1
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()
    ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
    window_s = max(ended_s - start_at_s, 1e-9)
    return {
        "generator": "loadgen",
        "ok": ok,
        "responses": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(sorted(errors.items())),
        "window_s": window_s,
        "rate_per_s": ok / window_s,
        "workers": workers,
        "worker_cpu_s": cpu_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--port",
        required=True,
        help="port on 127.0.0.1, or several separated by commas (a cluster)",
    )
    parser.add_argument("--path", default="/bench")
    parser.add_argument("--body-file", required=True, help="the request body, sent as is")
    parser.add_argument("--content-type", default="application/x-www-form-urlencoded")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--header", action="append", default=[], help="another request header, 'Name: value'"
    )
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=10_000_000, help="stop after this many")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--new-connection", action="store_true", help="a new connection per request, as curl does"
    )
    args = parser.parse_args(argv)
    with open(args.body_file, "rb") as file:
        body = file.read()
    ports = [int(part) for part in args.port.split(",")]
    # The Host header names the first target; our servers do not route on it.
    request = build_request(
        host="127.0.0.1",
        port=ports[0],
        path=args.path,
        body=body,
        content_type=args.content_type,
        headers=args.header,
    )
    result = run(
        targets=[("127.0.0.1", port) for port in ports],
        request=request,
        connections=args.connections,
        duration_s=args.duration_s,
        requests_max=args.requests,
        workers=args.workers,
        new_connection=args.new_connection,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
