"""A webhook receiver fast enough not to be what a delivery benchmark measures.

Raw HTTP/1.1 over asyncio protocols (no framework, no per-request objects): every request gets
`200 ok`, and the receiver counts requests, distinct `X-Task-Id`s, the first and last arrival, and
(with --record-lateness) how late each arrived after its `X-Task-ETA`.

Control paths, for the harness: `GET /_bench/stats` answers the counts as JSON,
`POST /_bench/reset` zeroes them.

    python -m bench.fast_receiver --port 9099 [--record-lateness]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from array import array
from datetime import datetime
from email.utils import parsedate_to_datetime

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_HEAD_BYTES_MAX = 64 * 1024
_BODY_BYTES_MAX = 8 * 1024 * 1024
_MS_EPOCH_THRESHOLD = 1e11
"""An ETA above this many "seconds" (year 5138) must be in milliseconds."""


def parse_eta_s(value: bytes) -> float | None:
    """An `X-Task-ETA` value as Unix seconds: seconds or milliseconds, ISO 8601, or an HTTP date."""
    text = value.decode("latin-1").strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return number / 1000 if number > _MS_EPOCH_THRESHOLD else number
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return None


def _header(head_lower: bytes, head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower-case, with its colon), from the raw request head."""
    start = head_lower.find(b"\r\n" + name)
    if start < 0:
        return None
    start += 2 + len(name)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class Counts:
    def __init__(self, record_lateness: bool) -> None:
        self.record_lateness = record_lateness
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.ids: set[bytes] = set()
        self.first_s: float | None = None
        self.last_s: float | None = None
        self.lateness_ms = array("d")
        self.missing_eta = 0

    def arrived(self, head: bytes, head_lower: bytes, now_s: float) -> None:
        self.count += 1
        if self.first_s is None:
            self.first_s = now_s
        self.last_s = now_s
        task_id = _header(head_lower, head, b"x-task-id:")
        if task_id is not None:
            self.ids.add(task_id)
        if self.record_lateness:
            raw_eta = _header(head_lower, head, b"x-task-eta:")
            eta_s = parse_eta_s(raw_eta) if raw_eta is not None else None
            if eta_s is None:
                self.missing_eta += 1
            else:
                self.lateness_ms.append((now_s - eta_s) * 1000.0)

    def as_json(self) -> bytes:
        payload: dict[str, object] = {
            "count": self.count,
            "unique_ids": len(self.ids),
            "first_s": self.first_s,
            "last_s": self.last_s,
            "now_s": time.time(),
        }
        if self.record_lateness:
            payload["lateness_ms"] = [round(x, 3) for x in self.lateness_ms]
            payload["missing_eta"] = self.missing_eta
        return json.dumps(payload).encode()


class ReceiverProtocol(asyncio.Protocol):
    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        now_s = time.time()
        buffer = self.buffer
        buffer += data
        replies: list[bytes] = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _HEAD_BYTES_MAX:
                    close = True
                break
            head = bytes(buffer[:end])
            head_lower = head.lower()
            length_raw = _header(head_lower, head, b"content-length:")
            try:
                length = int(length_raw) if length_raw is not None else 0
            except ValueError:
                close = True
                break
            if length > _BODY_BYTES_MAX:
                close = True
                break
            total = end + 4 + length
            if len(buffer) < total:
                break
            del buffer[:total]
            replies.append(self._answer(head, head_lower, now_s))
            if b"\r\nconnection: close" in head_lower:
                close = True
                break
        if replies:
            self.transport.write(b"".join(replies))
        if close:
            self.transport.close()

    def _answer(self, head: bytes, head_lower: bytes, now_s: float) -> bytes:
        target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
        if target.startswith(b"/_bench/"):
            if target == b"/_bench/reset":
                self.counts.reset()
                body = b'{"status": "reset"}'
            else:
                body = self.counts.as_json()
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(body)
            ) + body
        self.counts.arrived(head, head_lower, now_s)
        return _OK


async def serve(port: int, record_lateness: bool) -> None:
    counts = Counts(record_lateness)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ReceiverProtocol(counts), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fast_receiver", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--record-lateness", action="store_true", help="keep arrival - X-Task-ETA per request"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.record_lateness))


if __name__ == "__main__":
    main()
