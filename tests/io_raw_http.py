"""Raw-socket HTTP helpers for the shell tests: a scripted receiver standing in for `nc -l`, and a
byte-level client. Both parse HTTP by hand (no h11), so they see exactly the bytes on the wire."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio


@dataclass
class RawMessage:
    """A request (start = request line) or a response (start = status line) as received."""

    start: str
    headers: list[tuple[str, str]]
    """Names lower-cased, in order."""
    body: bytes
    connection: int = 0
    """Which accepted connection (0, 1, ...) a request came on."""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def status(self) -> int:
        return int(self.start.split(" ")[1])

    def json(self) -> Any:
        return json.loads(self.body)


class ByteReader:
    """Reads lines and exact byte counts from a trio stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.eof = False

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    async def read_until(self, marker: bytes) -> bytes | None:
        """Bytes up to and including `marker`; None at EOF before it."""
        while (index := self.buffer.find(marker)) < 0:
            if not await self._fill():
                return None
        index += len(marker)
        data = bytes(self.buffer[:index])
        del self.buffer[:index]
        return data

    async def read_exactly(self, count: int) -> bytes | None:
        while len(self.buffer) < count:
            if not await self._fill():
                return None
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def read_to_eof(self) -> bytes:
        while await self._fill():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def read_message(self) -> RawMessage | None:
        """One message framed by Content-Length (or none: no body). None at EOF."""
        head = await self.read_until(b"\r\n\r\n")
        if head is None:
            return None
        start, *lines = head[:-4].decode("latin-1").split("\r\n")
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        message = RawMessage(start=start, headers=headers, body=b"")
        length = int(message.header("content-length") or 0)
        body = await self.read_exactly(length)
        assert body is not None, "EOF inside a body"
        message.body = body
        return message


def http_response(
    status: int, body: bytes = b"", *, reason: str = "X", extra: str = "", close: bool = False
) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n{connection}{extra}\r\n"
    ).encode() + body


@dataclass
class Reply:
    """Bytes to send back, and whether to close the connection after them regardless."""

    data: bytes
    close: bool = False


Answer = Callable[[RawMessage, "RawReceiver"], Awaitable[bytes | Reply | None]]
"""What the receiver sends back for a request; None closes the connection without answering."""


@dataclass
class RawReceiver:
    """A TCP listener on 127.0.0.1 that answers each request as `answer` says."""

    answer: Answer
    port: int = 0
    requests: list[RawMessage] = field(default_factory=list)
    connections_accepted: int = 0
    connections_open: int = 0
    connections_open_max: int = 0
    connections_closed: int = 0
    changed: trio.Event = field(default_factory=trio.Event)
    """Set (and replaced) whenever a request arrives or a connection ends."""

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.changed.wait()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._serve_connection, listeners)
            task_status.started()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        index = self.connections_accepted
        self.connections_accepted += 1
        self.connections_open += 1
        self.connections_open_max = max(self.connections_open_max, self.connections_open)
        reader = ByteReader(stream)
        try:
            while True:
                try:
                    request = await reader.read_message()
                except trio.BrokenResourceError:
                    return
                if request is None:
                    return
                request.connection = index
                self.requests.append(request)
                self._notify()
                reply = await self.answer(request, self)
                if reply is None:
                    return
                if isinstance(reply, bytes):
                    reply = Reply(reply, close=b"connection: close" in reply.lower())
                try:
                    await stream.send_all(reply.data)
                except trio.BrokenResourceError:
                    return
                if reply.close:
                    return
        finally:
            await trio.aclose_forcefully(stream)
            self.connections_open -= 1
            self.connections_closed += 1
            self._notify()


async def start_receiver(nursery: trio.Nursery, answer: Answer) -> RawReceiver:
    receiver = RawReceiver(answer=answer)
    await nursery.start(receiver.serve)
    return receiver


def always(status: int, body: bytes = b"") -> Answer:
    async def answer(request: RawMessage, receiver: RawReceiver) -> bytes:
        return http_response(status, body)

    return answer


async def exchange(port: int, data: bytes) -> list[RawMessage]:
    """Send `data` on a new connection, then read responses until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        reader = ByteReader(stream)
        responses = []
        while (response := await reader.read_message()) is not None:
            responses.append(response)
        return responses


def request_bytes(
    method: str, target: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
