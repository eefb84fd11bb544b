"""Carry out `StartDelivery`: send one webhook request with h11 and report what came back.

The outcome is always an event for the node, never an exception: `DeliveryResponded` with the
status, headers and a bounded excerpt of the body, or `DeliveryFailed` saying why there was no
complete answer. Connections are pooled per destination and reused (keep-alive). Redirects are
never followed: a 3xx is an answer like any other, for the node to judge.

A request is sent once. A pooled connection the receiver closed while it sat idle is found
closed before any byte is written to it, and the request goes on a fresh connection instead; a
connection that breaks after the request was written is the webhook's failure (RESET), however
little came back: the receiver may have acted on the request, so the node counts the attempt
and the next one says so in `X-Task-Retry-Count`.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
from collections.abc import Callable

import h11
import trio

from ..logic.actions import OutboundRequest, StartDelivery
from ..logic.destinations import DestinationPolicy
from ..logic.events import DeliveryError, DeliveryFailed, DeliveryResponded
from ..logic.http import Headers
from .connection_pool import ConnectionPool, Destination, Lease, PooledConnection
from .ssrf_guard import DestinationDenied, SsrfGuard

Sign = Callable[[OutboundRequest], OutboundRequest]
"""Adds signature headers to a request just before it is sent (`signing.DeliverySigner.sign`)."""

DeliveryOutcome = DeliveryResponded | DeliveryFailed

RECEIVE_BYTES_MAX = 64 * 1024


class _Failure(Exception):
    def __init__(self, error: DeliveryError, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


class WebhookClient:
    def __init__(
        self,
        *,
        connections_per_destination_max: int,
        response_body_bytes_reuse_max: int = 1024 * 1024,
        idle_connections_max: int = 1024,
        idle_s_max: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        guard: SsrfGuard | None = None,
        sign: Sign | None = None,
    ) -> None:
        self._pool = ConnectionPool(
            connections_per_destination_max=connections_per_destination_max,
            idle_connections_max=idle_connections_max,
            idle_s_max=idle_s_max,
        )
        self._response_body_bytes_reuse_max = response_body_bytes_reuse_max
        """A response body longer than this is not read to its end: the connection is closed."""
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._guard = guard or SsrfGuard(DestinationPolicy())
        """Every connection is opened through it: only to addresses the policy allows."""
        self._sign = sign

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def deliver(self, start: StartDelivery) -> DeliveryOutcome:
        """Send `start.request` and wait, within `start.timeout_ms`, for the complete answer."""
        delivery_id = start.delivery_id
        with trio.move_on_after(start.timeout_ms / 1000):
            try:
                status, headers, excerpt = await self._send(start.request, start.excerpt_bytes_max)
            except _Failure as failure:
                return DeliveryFailed(
                    delivery_id=delivery_id, error=failure.error, detail=failure.detail
                )
            return DeliveryResponded(
                delivery_id=delivery_id, status=status, headers=headers, body_excerpt=excerpt
            )
        return DeliveryFailed(
            delivery_id=delivery_id,
            error=DeliveryError.TIMEOUT,
            detail=f"no complete answer within {start.timeout_ms} ms",
        )

    async def _send(
        self, request: OutboundRequest, excerpt_bytes_max: int
    ) -> tuple[int, Headers, bytes]:
        destination = (request.scheme, request.host, request.port)
        async with self._pool.lease(destination) as lease:
            if self._sign is not None:
                # Signed once a slot is ours: the timestamp is the send time, not the time the
                # delivery began waiting for a free connection.
                request = self._sign(request)
            connection = lease.take_idle()
            if connection is not None and _closed_while_idle(connection.stream):
                # Receivers close idle keep-alives. Nothing was written to this one: no
                # receiver has seen this request, so a fresh connection is no duplicate.
                await trio.aclose_forcefully(connection.stream)
                connection = None
            if connection is None:
                connection = await self._connect(destination)
            return await self._exchange(lease, connection, request, excerpt_bytes_max)

    async def _connect(self, destination: Destination) -> PooledConnection:
        scheme, host, port = destination
        try:
            if scheme == "http":
                stream: trio.abc.Stream = await self._guard.open_stream(host, port)
            elif scheme == "https":
                # What trio.open_ssl_over_tcp_stream does, over a connection the guard opened.
                ssl_stream = trio.SSLStream(
                    await self._guard.open_stream(host, port),
                    self._ssl_context,
                    server_hostname=host,
                    https_compatible=True,
                )
                stream = ssl_stream
                try:
                    # Handshake now, so that its failures are told apart from later ones.
                    await ssl_stream.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(ssl_stream)
                    raise
            else:
                raise _Failure(DeliveryError.PROTOCOL, f"unsupported scheme {scheme!r}")
        except DestinationDenied as denied:
            raise _Failure(DeliveryError.REFUSED, str(denied)) from None
        except OSError as error:
            raise _Failure(*classify_connect_error(error, host, port)) from None
        except trio.BrokenResourceError as error:
            if isinstance(error.__cause__, ssl.SSLError):
                raise _Failure(
                    DeliveryError.TLS, f"TLS handshake failed: {error.__cause__}"
                ) from None
            raise _Failure(DeliveryError.RESET, f"connection broke: {error.__cause__}") from None
        return PooledConnection(stream, destination)

    async def _exchange(
        self,
        lease: Lease,
        connection: PooledConnection,
        request: OutboundRequest,
        excerpt_bytes_max: int,
    ) -> tuple[int, Headers, bytes]:
        """One request and its response over `connection`, pooled afterwards when reusable."""
        reusable = False
        try:
            try:
                data = _encode_request(connection.h11, request)
            except (h11.LocalProtocolError, UnicodeEncodeError) as error:
                raise _Failure(
                    DeliveryError.PROTOCOL, f"cannot send this request: {error}"
                ) from None
            try:
                await connection.stream.send_all(data)
            except trio.BrokenResourceError as error:
                # Part of the request may have reached the receiver: not sent again.
                raise _broken(error, "while sending") from None
            status, headers, excerpt, complete = await self._receive_response(
                connection, excerpt_bytes_max
            )
            h = connection.h11
            if complete and h.our_state is h11.DONE and h.their_state is h11.DONE:
                h.start_next_cycle()
                reusable = True
            return status, headers, excerpt
        finally:
            if reusable:
                lease.give_back(connection)
            else:
                await trio.aclose_forcefully(connection.stream)

    async def _receive_response(
        self, connection: PooledConnection, excerpt_bytes_max: int
    ) -> tuple[int, Headers, bytes, bool]:
        """Status, headers, excerpt, and whether the body was read to its end."""
        h = connection.h11
        eof = False
        response: h11.Response | None = None
        excerpt = bytearray()
        body_bytes = 0
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = await connection.stream.receive_some(RECEIVE_BYTES_MAX)
                    except trio.BrokenResourceError as error:
                        raise _broken(error, "before a complete response") from None
                    if not data:
                        eof = True
                    h.receive_data(bytes(data))  # SSLStream gives bytearray
                elif isinstance(event, h11.InformationalResponse):
                    continue  # 100 Continue and friends: the real answer follows
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    assert response is not None
                    body_bytes += len(event.data)
                    if len(excerpt) < excerpt_bytes_max:
                        excerpt += event.data[: excerpt_bytes_max - len(excerpt)]
                    if body_bytes > self._response_body_bytes_reuse_max:
                        return response.status_code, _headers(response), bytes(excerpt), False
                elif isinstance(event, h11.EndOfMessage):
                    assert response is not None
                    return response.status_code, _headers(response), bytes(excerpt), True
                else:
                    raise _Failure(DeliveryError.PROTOCOL, f"unexpected {event!r}")
        except h11.RemoteProtocolError as error:
            if eof:
                raise _Failure(
                    DeliveryError.RESET, "connection closed before a complete response"
                ) from None
            raise _Failure(
                DeliveryError.PROTOCOL, f"not a valid HTTP/1.1 response: {error}"
            ) from None


def _closed_while_idle(stream: trio.abc.Stream) -> bool:
    """Whether an idle pooled connection is unusable: its socket is readable, so the receiver
    closed it (EOF), reset it, or sent bytes no request asked for. Polled without waiting and
    without reading; a stream with no socket of its own is taken as open."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return False
    poller = select.poll()
    poller.register(stream.socket.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _encode_request(connection: h11.Connection, request: OutboundRequest) -> bytes:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in request.headers]
    data = connection.send(
        h11.Request(method=request.method, target=request.target, headers=headers)
    )
    if request.body:
        data += connection.send(h11.Data(data=request.body))
    return data + connection.send(h11.EndOfMessage())


def _headers(response: h11.Response) -> Headers:
    return tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers
    )


def _broken(error: trio.BrokenResourceError, when: str) -> _Failure:
    if isinstance(error.__cause__, ssl.SSLError):
        return _Failure(DeliveryError.TLS, f"TLS error {when}: {error.__cause__}")
    return _Failure(DeliveryError.RESET, f"connection broke {when}: {error.__cause__ or error}")


def classify_connect_error(error: OSError, host: str, port: int) -> tuple[DeliveryError, str]:
    """Why a connection to host:port could not be opened, as a DeliveryError and a detail."""
    if isinstance(error, socket.gaierror):
        return DeliveryError.DNS, f"cannot resolve {host!r}: {error.strerror or error}"
    # trio tries every address; the reasons are in the group it raises from.
    attempts: list[BaseException] = [error]
    if isinstance(error.__cause__, BaseExceptionGroup):
        attempts = list(error.__cause__.exceptions)
    reasons = "; ".join(sorted({_reason(attempt) for attempt in attempts}))
    if all(isinstance(a, OSError) and a.errno == errno.ECONNREFUSED for a in attempts):
        return DeliveryError.REFUSED, f"connection to {host}:{port} refused"
    # Unreachable networks and the like: the receiver could not be reached at all either.
    return DeliveryError.REFUSED, f"cannot connect to {host}:{port}: {reasons}"


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
