"""The webhook client against raw sockets on 127.0.0.1: outcomes, pooling, stale connections."""

from __future__ import annotations

import errno
import socket

import trio

from miyamoto.io.webhook_client import WebhookClient, classify_connect_error
from miyamoto.logic.actions import OutboundRequest, StartDelivery
from miyamoto.logic.events import DeliveryError, DeliveryFailed, DeliveryResponded

from .io_raw_http import (
    RawMessage,
    RawReceiver,
    Reply,
    always,
    http_response,
    start_receiver,
)

TEST_TIMEOUT_S = 10


def delivery(
    port: int,
    *,
    body: bytes = b"foo=bar",
    scheme: str = "http",
    timeout_ms: int = 5_000,
    excerpt_bytes_max: int = 1024,
    delivery_id: int = 1,
) -> StartDelivery:
    headers = (
        ("host", f"127.0.0.1:{port}"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("content-length", str(len(body))),
        ("x-task-id", "task-1"),
    )
    request = OutboundRequest(
        scheme=scheme,
        host="127.0.0.1",
        port=port,
        method="POST",
        target="/worker?x=1",
        headers=headers,
        body=body,
    )
    return StartDelivery(
        delivery_id=delivery_id,
        request=request,
        timeout_ms=timeout_ms,
        excerpt_bytes_max=excerpt_bytes_max,
    )


def client(
    *, connections_per_destination_max: int = 4, response_body_bytes_reuse_max: int = 1 << 20
) -> WebhookClient:
    return WebhookClient(
        connections_per_destination_max=connections_per_destination_max,
        response_body_bytes_reuse_max=response_body_bytes_reuse_max,
    )


async def test_a_200_answer_is_reported_with_status_headers_and_body() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, always(200, b"done"))
            outcome = await client().deliver(delivery(receiver.port, delivery_id=7))
            nursery.cancel_scope.cancel()
    assert isinstance(outcome, DeliveryResponded)
    assert (outcome.delivery_id, outcome.status, outcome.body_excerpt) == (7, 200, b"done")
    assert ("content-length", "4") in outcome.headers
    (request,) = receiver.requests
    assert request.start == "POST /worker?x=1 HTTP/1.1"
    assert request.header("x-task-id") == "task-1"
    assert request.header("host") == f"127.0.0.1:{receiver.port}"
    assert request.body == b"foo=bar"


async def test_a_500_answer_is_a_response_not_a_failure() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, always(500, b"boom"))
            outcome = await client().deliver(delivery(receiver.port))
            nursery.cancel_scope.cancel()
    assert isinstance(outcome, DeliveryResponded)
    assert (outcome.status, outcome.body_excerpt) == (500, b"boom")


async def test_a_redirect_is_not_followed() -> None:
    async def redirect(request: RawMessage, receiver: RawReceiver) -> bytes:
        return http_response(302, extra="Location: /elsewhere\r\n")

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, redirect)
            outcome = await client().deliver(delivery(receiver.port))
            nursery.cancel_scope.cancel()
    assert isinstance(outcome, DeliveryResponded)
    assert outcome.status == 302
    assert len(receiver.requests) == 1


def closed_port() -> int:
    """A port nothing listens on: bound, then released (the kernel will not reuse it at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_closed_port_is_refused() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        outcome = await client().deliver(delivery(closed_port()))
    assert isinstance(outcome, DeliveryFailed)
    assert outcome.error is DeliveryError.REFUSED
    assert "refused" in outcome.detail


async def test_a_receiver_that_never_answers_times_out_and_costs_one_connection() -> None:
    accepted: list[int] = []
    closed_by_client = trio.Event()

    async def like_nc(stream: trio.SocketStream) -> None:
        accepted.append(1)
        while await stream.receive_some(65536):  # reads the request, answers nothing
            pass
        closed_by_client.set()

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await nursery.start(trio.serve_listeners, like_nc, listeners)
            webhooks = client()
            start = trio.current_time()
            outcome = await webhooks.deliver(delivery(port, timeout_ms=200))
            elapsed_s = trio.current_time() - start
            await closed_by_client.wait()
            nursery.cancel_scope.cancel()
    assert isinstance(outcome, DeliveryFailed)
    assert outcome.error is DeliveryError.TIMEOUT
    assert "200 ms" in outcome.detail
    assert 0.2 <= elapsed_s < 2
    assert len(accepted) == 1
    assert webhooks.pool.idle_count == 0  # the connection was closed, not pooled


async def test_two_deliveries_reuse_one_connection() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, always(200))
            webhooks = client()
            first = await webhooks.deliver(delivery(receiver.port, delivery_id=1))
            second = await webhooks.deliver(delivery(receiver.port, delivery_id=2))
            nursery.cancel_scope.cancel()
    assert isinstance(first, DeliveryResponded) and isinstance(second, DeliveryResponded)
    assert [r.connection for r in receiver.requests] == [0, 0]
    assert receiver.connections_accepted == 1


async def test_a_stale_keep_alive_is_retried_once_on_a_fresh_connection() -> None:
    async def keep_alive_then_close(request: RawMessage, receiver: RawReceiver) -> bytes | Reply:
        if request.connection == 0:
            # Answers without "Connection: close", then closes: as a server's idle timeout does.
            return Reply(http_response(200, b"first"), close=True)
        return http_response(200, b"second")

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, keep_alive_then_close)
            webhooks = client()
            first = await webhooks.deliver(delivery(receiver.port, delivery_id=1))
            assert webhooks.pool.idle_count == 1
            await receiver.wait_for(lambda: receiver.connections_closed == 1)
            second = await webhooks.deliver(delivery(receiver.port, delivery_id=2))
            nursery.cancel_scope.cancel()
    assert isinstance(first, DeliveryResponded) and first.body_excerpt == b"first"
    assert isinstance(second, DeliveryResponded) and second.body_excerpt == b"second"
    assert [r.connection for r in receiver.requests] == [0, 1]


async def test_a_request_read_on_a_reused_connection_then_closed_is_not_sent_again() -> None:
    # The receiver may have acted on the request before it hung up: a second send would be a
    # duplicate with the same X-Task-Retry-Count. The failure goes to the node instead, which
    # counts the attempt.
    async def answer_first_then_hang_up(
        request: RawMessage, receiver: RawReceiver
    ) -> bytes | None:
        return http_response(200, b"first") if len(receiver.requests) == 1 else None

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, answer_first_then_hang_up)
            webhooks = client()
            first = await webhooks.deliver(delivery(receiver.port, delivery_id=1))
            second = await webhooks.deliver(delivery(receiver.port, delivery_id=2))
            nursery.cancel_scope.cancel()
    assert isinstance(first, DeliveryResponded) and first.body_excerpt == b"first"
    assert isinstance(second, DeliveryFailed), second
    assert second.error is DeliveryError.RESET
    assert [r.connection for r in receiver.requests] == [0, 0]  # sent once, on the reused one
    assert receiver.connections_accepted == 1


async def test_the_excerpt_is_truncated_and_the_connection_still_reused() -> None:
    body = bytes(range(256)) * 20  # 5120 bytes
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, always(200, body))
            webhooks = client()
            first = await webhooks.deliver(delivery(receiver.port, excerpt_bytes_max=100))
            second = await webhooks.deliver(delivery(receiver.port, excerpt_bytes_max=0))
            nursery.cancel_scope.cancel()
    assert isinstance(first, DeliveryResponded) and first.body_excerpt == body[:100]
    assert isinstance(second, DeliveryResponded) and second.body_excerpt == b""
    assert receiver.connections_accepted == 1


async def test_a_huge_response_body_is_not_read_to_its_end_and_the_connection_is_closed() -> None:
    body = b"x" * 200_000
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, always(200, body))
            webhooks = client(response_body_bytes_reuse_max=10_000)
            first = await webhooks.deliver(delivery(receiver.port, excerpt_bytes_max=10))
            second = await webhooks.deliver(delivery(receiver.port, excerpt_bytes_max=10))
            nursery.cancel_scope.cancel()
    assert isinstance(first, DeliveryResponded) and first.body_excerpt == b"x" * 10
    assert isinstance(second, DeliveryResponded) and second.status == 200
    assert receiver.connections_accepted == 2


async def test_an_answer_that_is_not_http_is_a_protocol_failure() -> None:
    async def garbage(request: RawMessage, receiver: RawReceiver) -> bytes:
        return b"SSH-2.0-OpenSSH_9.6\r\n\r\n"

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, garbage)
            outcome = await client().deliver(delivery(receiver.port))
            nursery.cancel_scope.cancel()
    assert isinstance(outcome, DeliveryFailed)
    assert outcome.error is DeliveryError.PROTOCOL


async def test_a_connection_closed_without_an_answer_is_a_reset() -> None:
    async def hang_up(request: RawMessage, receiver: RawReceiver) -> None:
        return None

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, hang_up)
            outcome = await client().deliver(delivery(receiver.port))
            nursery.cancel_scope.cancel()
    assert isinstance(outcome, DeliveryFailed)
    assert outcome.error is DeliveryError.RESET
    assert receiver.connections_accepted == 1  # a fresh connection is not retried


async def test_https_to_a_plain_http_receiver_is_a_tls_failure() -> None:
    async def answer_hello_with_http(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)  # the TLS ClientHello
        await stream.send_all(http_response(400, close=True))

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await nursery.start(trio.serve_listeners, answer_hello_with_http, listeners)
            outcome = await client().deliver(delivery(port, scheme="https"))
            nursery.cancel_scope.cancel()
    assert isinstance(outcome, DeliveryFailed)
    assert outcome.error is DeliveryError.TLS
    assert "TLS" in outcome.detail


async def test_connections_per_destination_are_capped_and_waiters_reuse_them() -> None:
    async def slow_first(request: RawMessage, receiver: RawReceiver) -> bytes:
        if len(receiver.requests) == 1:
            # Hold the first answer until a second request arrives, or 0.3 s: with a cap of one
            # connection the second request cannot arrive meanwhile.
            with trio.move_on_after(0.3):
                await receiver.wait_for(lambda: len(receiver.requests) > 1)
        return http_response(200)

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, slow_first)
            webhooks = client(connections_per_destination_max=1)
            outcomes: list[object] = []

            async def run(delivery_id: int) -> None:
                outcomes.append(
                    await webhooks.deliver(delivery(receiver.port, delivery_id=delivery_id))
                )

            async with trio.open_nursery() as deliveries:
                deliveries.start_soon(run, 1)
                deliveries.start_soon(run, 2)
            nursery.cancel_scope.cancel()
    assert all(isinstance(o, DeliveryResponded) and o.status == 200 for o in outcomes)
    assert len(outcomes) == 2
    assert receiver.connections_open_max == 1
    assert receiver.connections_accepted == 1


def test_dns_failures_and_refusals_are_told_apart() -> None:
    dns = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert classify_connect_error(dns, "nowhere.invalid", 80)[0] is DeliveryError.DNS
    refused = OSError("all attempts to connect to 127.0.0.1:1 failed")
    refused.__cause__ = ExceptionGroup(
        "attempts", [ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")]
    )
    error, detail = classify_connect_error(refused, "127.0.0.1", 1)
    assert error is DeliveryError.REFUSED and detail == "connection to 127.0.0.1:1 refused"
    unreachable = OSError("all attempts to connect to 10.0.0.1:80 failed")
    unreachable.__cause__ = ExceptionGroup(
        "attempts", [OSError(errno.EHOSTUNREACH, "No route to host")]
    )
    error, detail = classify_connect_error(unreachable, "10.0.0.1", 80)
    assert error is DeliveryError.REFUSED and "No route to host" in detail
