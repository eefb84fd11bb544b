"""Serve the HTTP API with h11 on a trio listener: bytes in, `HttpRequest` out, `HttpResponse` back.

The server knows nothing about tasks. It reads one complete request at a time per connection
(which also makes pipelining safe), hands it to an async `RequestHandler`, and writes the answer.
It enforces only what protects the process itself: header and body size limits, read timeouts
so idle or slow clients cannot hold sockets forever, and a cap on concurrent connections.
Every refusal is a JSON error `{"status": "error", "error": "..."}` that states the limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import NoReturn

import h11
import trio

from .. import __version__
from ..logic.http import HttpRequest, HttpResponse, error_response
from ..logic.limits import Limits

log = logging.getLogger("miyamoto.io.http_server")

RequestHandler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
"""Answers one complete API request: with the response at once, or with an awaitable of it when
the answer has to wait (an async function will do). Exceptions it raises are bugs: logged,
answered with 500."""

RefusalObserver = Callable[[int], None]
"""Told the status of each answer the server gives on its own, without the handler (413, 431,
408, 400, 503 when full): for metrics and the access log."""

SERVER_HEADER = f"miyamoto/{__version__}"
RECEIVE_BYTES_MAX = 64 * 1024
"""Bytes read from a socket at once; with the limits this bounds a connection's buffers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    limits: Limits = field(default_factory=Limits)
    keep_alive_timeout_s: float = 60.0
    """An idle keep-alive connection with no new request for this long is closed."""
    request_timeout_s: float = 30.0
    """From its first byte, a whole request (head and body) must arrive within this, or 408."""
    handler_timeout_s: float = 60.0
    """The node must answer a request within this, or the client gets a 503."""
    send_timeout_s: float = 30.0
    """A client that does not read its response within this is dropped."""
    close_linger_s: float = 2.0
    """After an error response, unread input is drained for this long before closing, so the
    client sees our answer instead of a reset."""
    connections_max: int = 10_000
    """Connections served at once; more are answered 503 and closed."""
    peer_connections_max: int = 256
    """Connections reserved for peers (`POST /_peer`) beyond `connections_max`, so a flood of
    API connections cannot starve heartbeats. A connection is the API's until its first request
    says otherwise: one admitted past `connections_max` must be a peer's, or it gets 503."""

    def __post_init__(self) -> None:
        for name in (
            "keep_alive_timeout_s",
            "request_timeout_s",
            "handler_timeout_s",
            "send_timeout_s",
            "close_linger_s",
        ):
            value = getattr(self, name)
            assert math.isfinite(value) and value > 0, (name, value)
        assert self.connections_max >= 1, self.connections_max
        assert self.peer_connections_max >= 0, self.peer_connections_max


async def open_api_listeners(host: str, port: int) -> tuple[list[trio.SocketListener], int]:
    """Listen on host:port; the listeners and the bound port (port 0 picks a free one)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_port: int = listeners[0].socket.getsockname()[1]
    return listeners, bound_port


async def serve_api(
    handler: RequestHandler,
    listeners: list[trio.SocketListener],
    *,
    settings: ServerSettings | None = None,
    peer_handler: PeerHandler | None = None,
    on_refusal: RefusalObserver | None = None,
    drain: ApiDrain | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve `handler` on `listeners` forever; `task_status.started()` once accepting.

    With a `peer_handler`, it answers the requests it claims (`POST /_peer`) instead of `handler`,
    and their connections count against `settings.peer_connections_max`. `on_refusal` hears of
    every request the server refused itself (its status). `drain` lets the caller stop accepting
    and wait for the API requests under way (see ApiDrain); serving goes on until cancelled."""
    server = ApiServer(
        handler, settings or ServerSettings(), peer_handler=peer_handler, on_refusal=on_refusal
    )
    accepting = trio.CancelScope()
    accepting_stopped = trio.Event()

    async def accept(
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with accepting:  # serve_listeners closes each listener as its accept loop ends
            await trio.serve_listeners(
                server.serve_connection,
                listeners,
                handler_nursery=connections,
                task_status=task_status,
            )
        accepting_stopped.set()

    async with trio.open_nursery() as connections:
        await connections.start(accept)
        if drain is not None:
            drain.attach(server, accepting, accepting_stopped)
        task_status.started()
        await trio.sleep_forever()
    raise AssertionError("unreachable: serving ends only when cancelled")


class ApiDrain:
    """Stops an API server gracefully, for a node shutting down.

    `stop_accepting` closes the listeners (new connections are refused) and the idle API
    connections; a connection with a request under way gets its answer (with `Connection:
    close`) and is closed after it. Peer connections (`POST /_peer`) stay open: the peers'
    acknowledgements of copies still come in on them while the node drains. Give it to
    `serve_api` and use it once that has started."""

    def __init__(self) -> None:
        self._server: ApiServer | None = None
        self._accepting: trio.CancelScope | None = None
        self._accepting_stopped: trio.Event | None = None

    def attach(
        self, server: ApiServer, accepting: trio.CancelScope, accepting_stopped: trio.Event
    ) -> None:
        self._server = server
        self._accepting = accepting
        self._accepting_stopped = accepting_stopped

    async def stop_accepting(self) -> None:
        """Return once the listeners are closed."""
        assert self._accepting is not None and self._accepting_stopped is not None
        assert self._server is not None, "stop_accepting before serve_api started"
        self._accepting.cancel()
        await self._accepting_stopped.wait()
        self._server.close_api_connections()

    @property
    def api_requests_under_way(self) -> int:
        """API connections with a request being read, answered or sent."""
        assert self._server is not None
        return self._server.api_requests_under_way

    async def api_requests_answered(self) -> None:
        """Return once every API connection is closed, each having had its answer."""
        assert self._server is not None
        await self._server.api_connections_closed.wait()


class ApiServer:
    """Serves connections; one per `serve_connection` call, each in its own task."""

    def __init__(
        self,
        handler: RequestHandler,
        settings: ServerSettings,
        *,
        peer_handler: PeerHandler | None = None,
        on_refusal: RefusalObserver | None = None,
    ) -> None:
        self._handler = handler
        self._settings = settings
        self.peers = _PeerBudget(peer_handler, settings) if peer_handler is not None else None
        self._on_refusal = on_refusal
        self.connections = 0
        """Connections being served right now."""
        self._open: dict[_ApiConnection, _RoutedConnection | None] = {}
        self._closing = False
        self.api_connections_closed = trio.Event()
        """Set once, after `close_api_connections`, no API connection is left."""

    @property
    def api_connections_open(self) -> int:
        return sum(1 for routed in self._open.values() if not _is_peer(routed))

    @property
    def api_requests_under_way(self) -> int:
        return sum(
            1
            for connection, routed in self._open.items()
            if not _is_peer(routed) and not connection.is_idle
        )

    def close_api_connections(self) -> None:
        """Close idle API connections now and the others after their answer; accept none."""
        self._closing = True
        for connection, routed in self._open.items():
            if not _is_peer(routed):
                connection.close_when_answered()
        self._note_closed()

    def _note_closed(self) -> None:
        if self._closing and not self.api_connections_open:
            self.api_connections_closed.set()

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection until it closes. Never raises (except Cancelled)."""
        settings = self._settings
        reserve = 0 if self.peers is None else settings.peer_connections_max
        if self.connections >= settings.connections_max + reserve:
            if self._on_refusal is not None:
                self._on_refusal(503)
            await _refuse_busy(stream, settings.connections_max)
            return
        self.connections += 1
        routed = None if self.peers is None else self.peers.route(self._handler)
        connection = _ApiConnection(stream, routed or self._handler, settings, self._on_refusal)
        self._open[connection] = routed
        if self._closing:
            connection.close_when_answered()
        try:
            await connection.serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; nothing to answer
        except Exception:
            # A bug (ours or the handler's): say so loudly, lose only this connection.
            log.exception("error serving an API connection; closing it")
        finally:
            self.connections -= 1
            del self._open[connection]
            self._note_closed()
            if self.peers is not None and routed is not None:
                self.peers.closed(routed)


def _is_peer(routed: _RoutedConnection | None) -> bool:
    return routed is not None and routed.is_peer is True


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerHandler:
    """The shell's own answer to peer requests (`peer_endpoint.PeerEndpoint`)."""

    claims: Callable[[HttpRequest], bool]
    """Whether a request is a peer's (`POST /_peer`)."""
    answer: Callable[[HttpRequest], HttpResponse]


class _PeerBudget:
    """Routes peer requests to the peer handler and counts API and peer connections apart.

    A connection is counted as the API's until its first request; if that is a peer's, the
    connection is the peers' for good. An API request on a connection admitted past the API's
    budget (into the peers' reserve) gets 503, so API connections never use the reserve."""

    def __init__(self, peer_handler: PeerHandler, settings: ServerSettings) -> None:
        self._peer = peer_handler
        self._settings = settings
        self.api_connections = 0
        self.peer_connections = 0

    def route(self, api_handler: RequestHandler) -> _RoutedConnection:
        """The handler of one new connection."""
        self.api_connections += 1
        over_budget = self.api_connections > self._settings.connections_max
        return _RoutedConnection(self, api_handler, over_budget=over_budget)

    def closed(self, connection: _RoutedConnection) -> None:
        if connection.is_peer:
            self.peer_connections -= 1
        else:
            self.api_connections -= 1

    def answer(
        self, connection: _RoutedConnection, request: HttpRequest
    ) -> HttpResponse | Awaitable[HttpResponse]:
        is_peer = self._peer.claims(request)
        if connection.is_peer is None:
            connection.is_peer = is_peer
            if is_peer:
                self.api_connections -= 1
                self.peer_connections += 1
        if is_peer:
            return self._peer.answer(request)
        if connection.over_budget and not connection.is_peer:
            limit = self._settings.connections_max
            return error_response(
                503, f"this node serves {limit} API connections at once, its limit; retry later"
            )
        return connection.api_handler(request)


class _RoutedConnection:
    """One connection's `RequestHandler` when the server has a peer handler."""

    __slots__ = ("api_handler", "budget", "is_peer", "over_budget")

    def __init__(
        self, budget: _PeerBudget, api_handler: RequestHandler, *, over_budget: bool
    ) -> None:
        self.budget = budget
        self.api_handler = api_handler
        self.over_budget = over_budget
        """Admitted into the peers' reserve: only peer requests are answered."""
        self.is_peer: bool | None = None
        """What the first request said; None before it."""

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        return self.budget.answer(self, request)


async def _refuse_busy(stream: trio.SocketStream, connections_max: int) -> None:
    """Answer 503 without reading anything, then close: cheap, and bounded in time."""
    response = error_response(
        503, f"this node serves {connections_max} connections at once, its limit; retry later"
    )
    connection = h11.Connection(h11.SERVER)
    data = _encode_response(connection, response, close=True, head_only=False)
    with trio.move_on_after(1.0), suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


class _Refusal(Exception):
    """A request we answer with an error and then close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ApiConnection:
    """One connection's request/response cycles.

    The read and send timeouts share one cancel scope per connection whose deadline moves with
    the phase (idle, reading a request, sending), instead of a `move_on_after` per phase: entering
    and leaving a scope costs about 5 us and moving a deadline under 2 us, and with three scopes a
    request this was about a tenth of serving a small enqueue.
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        handler: RequestHandler,
        settings: ServerSettings,
        on_refusal: RefusalObserver | None = None,
    ) -> None:
        self._on_refusal = on_refusal
        self._stream = stream
        self._handler = handler
        self._settings = settings
        self._limits = settings.limits
        # h11 refuses (431) a request head that grows past this before it is complete.
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=settings.limits.request_headers_bytes_max
        )
        self._timeouts = trio.CancelScope()
        self._request_started_s: float | None = None
        """When the first byte of the request being read arrived; None while idle."""
        self._request_deadline_set = False
        self._sending = False
        self._waiting_for_request = True
        self._closing = False
        """The server is shutting down: close after the answer under way, if any."""

    @property
    def is_idle(self) -> bool:
        """Waiting for a request of which no byte has come."""
        return self._waiting_for_request and self._request_started_s is None

    def close_when_answered(self) -> None:
        """Close now if no request is under way, else once its answer is sent."""
        self._closing = True
        if self.is_idle:
            self._timeouts.cancel()  # closed silently, as an idle keep-alive that timed out

    async def serve(self) -> None:
        refusal: _Refusal | None = None
        with self._timeouts:
            refusal = await self._serve_requests()
        if self._timeouts.cancelled_caught:
            # An idle keep-alive is closed silently, and so is a client that does not read its
            # response (there is nothing more to tell it); a slow request gets its 408.
            if self._sending or self._request_started_s is None:
                return
            timeout_s = self._settings.request_timeout_s
            refusal = _Refusal(408, f"the request did not arrive within {timeout_s:g} s")
        if refusal is not None:
            if self._on_refusal is not None:
                self._on_refusal(refusal.status)
            await self._refuse(refusal.status, refusal.message)

    async def _serve_requests(self) -> _Refusal | None:
        """Serve requests until the connection is to be closed; the refusal to send, if any."""
        settings = self._settings
        while True:
            now_s = trio.current_time()
            if self._h11.trailing_data[0]:  # pipelined: the next request has begun already
                self._request_started_s = now_s
            else:
                self._request_started_s = None
            self._request_deadline_set = False
            self._sending = False
            self._timeouts.deadline = now_s + settings.keep_alive_timeout_s
            self._waiting_for_request = True
            try:
                request = await self._read_request()
            except _Refusal as refusal:
                return refusal
            except h11.RemoteProtocolError as error:
                if error.error_status_hint == 431:
                    return _Refusal(431, self._headers_too_large())
                return _Refusal(400, f"malformed HTTP request: {error}")
            if request is None:
                return None
            self._waiting_for_request = False
            head_only = request.method == "HEAD"
            response, close = await self._answer(_as_get(request) if head_only else request)
            self._sending = True
            self._timeouts.deadline = trio.current_time() + settings.send_timeout_s
            close = close or self._closing
            data = _encode_response(self._h11, response, close=close, head_only=head_only)
            await self._stream.send_all(data)
            if close or self._h11.our_state is not h11.DONE:
                return None  # e.g. the client sent Connection: close, or spoke HTTP/1.0
            self._h11.start_next_cycle()

    async def _read_request(self) -> HttpRequest | None:
        """The next complete request, or None when the client closed the connection."""
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request), event
        body_max = self._limits.request_body_bytes_max
        too_large = f"the request body is over the limit of {body_max} bytes"
        # h11 bounds only an incomplete head; one that arrived whole in one read is checked here.
        head_bytes = len(event.method) + len(event.target)
        announced_too_large = False
        headers: list[tuple[str, str]] = []
        for name, value in event.headers:
            head_bytes += len(name) + len(value) + 4
            # h11 has validated the value as digits and refused conflicting ones.
            if name == b"content-length" and int(value) > body_max:
                announced_too_large = True
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if head_bytes > self._limits.request_headers_bytes_max:
            raise _Refusal(431, self._headers_too_large())
        _refuse_ambiguous_framing(event.headers)
        if announced_too_large:
            raise _Refusal(413, too_large)  # before 100 Continue: the body never comes
        parts: list[bytes] = []
        size = 0
        while True:
            part = await self._next_event()
            if isinstance(part, h11.Data):
                parts.append(part.data)
                size += len(part.data)
                if size > body_max:  # chunked bodies announce no length
                    raise _Refusal(413, too_large)
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"h11 gave {part!r} inside a request body")
        return HttpRequest(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            headers=tuple(headers),
            body=parts[0] if len(parts) == 1 else b"".join(parts),
        )

    async def _next_event(self) -> h11.Event:
        while True:
            event = self._h11.next_event()
            if isinstance(event, h11.Event):
                return event
            # Not PAUSED: that comes only after a complete request, and we read one at a time.
            assert event is h11.NEED_DATA, event
            started_s = self._request_started_s
            if started_s is not None and not self._request_deadline_set:
                # The idle wait is over: the whole request has request_timeout_s from its first
                # byte. Set only now, before waiting again: most requests arrive in one read.
                self._request_deadline_set = True
                self._timeouts.deadline = started_s + self._settings.request_timeout_s
            if self._h11.they_are_waiting_for_100_continue:
                # The client (curl, for bodies over 1 KiB) waits for this before sending the body.
                go_ahead = h11.InformationalResponse(
                    status_code=100, headers=_basic_headers(), reason=b"Continue"
                )
                await self._stream.send_all(self._h11.send(go_ahead))
            data = await self._stream.receive_some(RECEIVE_BYTES_MAX)
            if data and started_s is None:
                self._request_started_s = trio.current_time()
            self._h11.receive_data(data)

    async def _answer(self, request: HttpRequest) -> tuple[HttpResponse, bool]:
        """The handler's response, and whether to close the connection after it."""
        timeout_s = self._settings.handler_timeout_s
        try:
            answer = self._handler(request)
            if isinstance(answer, HttpResponse):
                return answer, False  # answered at once: no waiting, so no timeout to arm
            # The handler's own timeout applies while it waits, not the connection's.
            self._timeouts.deadline = math.inf
            with trio.move_on_after(timeout_s):
                return await answer, False
        except Exception:
            # Without the query: it may carry a token, and logs never show one.
            path = request.target.partition("?")[0]
            log.exception("error answering %s %s", request.method, path)
            return error_response(500, "internal error; the node logged it"), True
        return error_response(503, f"the node did not answer within {timeout_s:g} s"), False

    def _headers_too_large(self) -> str:
        limit = self._limits.request_headers_bytes_max
        return f"the request line and headers are over the limit of {limit} bytes"

    async def _refuse(self, status: int, message: str) -> None:
        """Answer `status` (if the connection is still in a state to) and close gently."""
        settings = self._settings
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            data = _encode_response(
                self._h11, error_response(status, message), close=True, head_only=False
            )
            with trio.move_on_after(settings.send_timeout_s) as scope:
                await self._stream.send_all(data)
            if scope.cancelled_caught:
                return  # the client does not read: nothing more to do for it
        # Closing with unread input makes the kernel send a reset, which can destroy the response
        # before the client reads it; so stop writing, then drain for a bounded time.
        try:
            await self._stream.send_eof()
            with trio.move_on_after(settings.close_linger_s):
                while await self._stream.receive_some(RECEIVE_BYTES_MAX):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _refuse_ambiguous_framing(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Content-Length and Transfer-Encoding together: a proxy in front of us may have framed the
    body by the other one, so where this request ends is ambiguous (request smuggling). RFC 9112
    section 6.1 lets a server refuse it, and then it must close the connection: we do both."""
    names = {name for name, _ in headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        raise _Refusal(400, "a request must not carry both Content-Length and Transfer-Encoding")


def _as_get(request: HttpRequest) -> HttpRequest:
    """HEAD is answered as GET is (RFC 9110 section 9.3.2): same status and headers, the body
    left out when sending."""
    return HttpRequest(
        method="GET", target=request.target, headers=request.headers, body=request.body
    )


def _encode_response(
    connection: h11.Connection, response: HttpResponse, *, close: bool, head_only: bool
) -> bytes:
    """The bytes of `response`: its headers plus Content-Length, Date, Server (and Connection)."""
    status = response.status
    has_body = status >= 200 and status not in (204, 304)
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers
        if name.lower() not in _HEADERS_WE_SET
    ]
    headers += _basic_headers()
    if has_body:
        headers.append((b"content-length", b"%d" % len(response.body)))
    if close:
        headers.append((b"connection", b"close"))
    reason = _REASONS.get(status)
    if reason is None:
        reason = _REASONS[status] = _reason(status)
    data = connection.send(h11.Response(status_code=status, headers=headers, reason=reason))
    if has_body and not head_only and response.body:
        data += connection.send(h11.Data(data=response.body))
    data += connection.send(h11.EndOfMessage())
    return data


_REASONS: dict[int, bytes] = {}
"""Reason phrases by status (bounded: h11 accepts only three-digit statuses)."""


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""  # a status without a standard phrase; the reason is optional anyway


_HEADERS_WE_SET = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})

_date_cache: tuple[int, bytes] = (0, b"")


_SERVER_HEADER_BYTES = SERVER_HEADER.encode("ascii")


def _basic_headers() -> list[tuple[bytes, bytes]]:
    global _date_cache
    now_s = int(time.time())
    if _date_cache[0] != now_s:  # formatting a date per response is measurable; once a second
        _date_cache = (now_s, formatdate(now_s, usegmt=True).encode("ascii"))
    return [(b"date", _date_cache[1]), (b"server", _SERVER_HEADER_BYTES)]
