"""The API server on 127.0.0.1 against a fake handler: framing, limits, timeouts, errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio

from miyamoto.io.http_server import ServerSettings, open_api_listeners, serve_api
from miyamoto.logic.http import HttpRequest, HttpResponse, json_response
from miyamoto.logic.limits import Limits

from .io_raw_http import ByteReader, RawMessage, exchange, request_bytes

TEST_TIMEOUT_S = 10


@dataclass
class EchoHandler:
    """Answers every request with a JSON echo of what the server made of it."""

    requests: list[HttpRequest] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        if self.fail:
            raise RuntimeError("a bug in the handler")
        return json_response(
            200,
            {
                "method": request.method,
                "target": request.target,
                "headers": [list(h) for h in request.headers],
                "body": request.body.decode("latin-1"),
            },
        )


@asynccontextmanager
async def running_server(
    handler: EchoHandler | None = None, **settings: object
) -> AsyncIterator[int]:
    """Serve `handler` on a free port for the duration of the block; yields the port."""
    limits = Limits(request_body_bytes_max=1000, request_headers_bytes_max=2048)
    server_settings = ServerSettings(limits=limits, **settings)  # type: ignore[arg-type]
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            listeners, port = await open_api_listeners("127.0.0.1", 0)
            await nursery.start(
                lambda task_status: serve_api(
                    handler or EchoHandler(),
                    listeners,
                    settings=server_settings,
                    task_status=task_status,
                )
            )
            yield port
            nursery.cancel_scope.cancel()


def assert_json_error(response: RawMessage, status: int, *words: str) -> None:
    assert response.status == status, response
    assert response.header("content-type") == "application/json"
    payload = response.json()
    assert payload["status"] == "error"
    for word in words:
        assert word in payload["error"], payload


async def test_a_request_reaches_the_handler_with_lower_case_headers_and_its_body() -> None:
    handler = EchoHandler()
    async with running_server(handler) as port:
        request = request_bytes(
            "POST", "/queue?x=1", b"foo=bar", headers=(("X-Custom", "Yes"), ("Connection", "close"))
        )
        (response,) = await exchange(port, request)
    assert response.status == 200
    assert response.start == "HTTP/1.1 200 OK"
    assert response.header("server") == "miyamoto/0.1.0"
    assert response.header("content-length") == str(len(response.body))
    assert response.header("date") is not None
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["target"] == "/queue?x=1"
    assert ["x-custom", "Yes"] in echoed["headers"]
    assert echoed["body"] == "foo=bar"


async def test_keep_alive_serves_two_requests_on_one_connection() -> None:
    handler = EchoHandler()
    async with running_server(handler) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        reader = ByteReader(stream)
        await stream.send_all(request_bytes("GET", "/one"))
        first = await reader.read_message()
        await stream.send_all(request_bytes("GET", "/two"))
        second = await reader.read_message()
        await stream.aclose()
    assert first is not None and first.json()["target"] == "/one"
    assert second is not None and second.json()["target"] == "/two"


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with running_server() as port:
        both = request_bytes("GET", "/a") + request_bytes(
            "GET", "/b", headers=(("Connection", "close"),)
        )
        responses = await exchange(port, both)
    assert [r.json()["target"] for r in responses] == ["/a", "/b"]


async def test_expect_100_continue_gets_the_go_ahead_and_the_body_is_read() -> None:
    body = b"x" * 900
    async with running_server() as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        reader = ByteReader(stream)
        head = request_bytes(
            "POST", "/queue", headers=(("Expect", "100-continue"), ("Content-Length", "900"))
        ).replace(b"Content-Length: 0\r\n", b"")
        await stream.send_all(head)
        interim = await reader.read_until(b"\r\n\r\n")
        assert interim is not None and interim.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(body)
        response = await reader.read_message()
        await stream.aclose()
    assert response is not None and response.status == 200
    assert response.json()["body"] == body.decode()


async def test_a_body_over_the_limit_by_content_length_is_413_and_the_connection_closed() -> None:
    handler = EchoHandler()
    async with running_server(handler) as port:
        responses = await exchange(port, request_bytes("POST", "/queue", b"y" * 1001))
    (response,) = responses  # and then the server closed the connection
    assert_json_error(response, 413, "1000 bytes")
    assert response.header("connection") == "close"
    assert handler.requests == []


async def test_an_announced_body_over_the_limit_is_refused_before_100_continue() -> None:
    headers = (("Expect", "100-continue"), ("Content-Length", "10000000"))
    head = request_bytes("POST", "/queue", headers=headers).replace(b"Content-Length: 0\r\n", b"")
    async with running_server() as port:
        (response,) = await exchange(port, head)  # the body is never sent
    assert_json_error(response, 413, "1000 bytes")


async def test_a_chunked_body_over_the_limit_is_413() -> None:
    handler = EchoHandler()
    chunk = b"z" * 600
    request = (
        b"POST /queue HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
        + b"0\r\n\r\n"
    )
    async with running_server(handler) as port:
        (response,) = await exchange(port, request)
    assert_json_error(response, 413, "1000 bytes")
    assert handler.requests == []


async def test_a_chunked_body_within_the_limit_is_accepted() -> None:
    request = (
        b"POST /queue HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with running_server() as port:
        (response,) = await exchange(port, request)
    assert response.json()["body"] == "hello world"


async def test_headers_over_the_limit_are_431() -> None:
    big = (("X-Big", "a" * 3000),)
    async with running_server() as port:
        (response,) = await exchange(port, request_bytes("GET", "/", headers=big))
    assert_json_error(response, 431, "2048 bytes")


async def test_an_endless_request_head_is_431_before_it_completes() -> None:
    async with running_server() as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: test\r\nX-Long: " + b"b" * 4000)
        response = await ByteReader(stream).read_message()
        await stream.aclose()
    assert response is not None
    assert_json_error(response, 431, "2048 bytes")


@pytest.mark.parametrize(
    "garbage",
    [
        b"hello there\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: nope\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    ],
)
async def test_malformed_http_is_a_400_json_error_and_the_connection_closed(
    garbage: bytes,
) -> None:
    handler = EchoHandler()
    async with running_server(handler) as port:
        (response,) = await exchange(port, garbage)
    assert_json_error(response, 400, "malformed HTTP request")
    assert handler.requests == []


async def test_a_request_that_trickles_in_too_slowly_is_408() -> None:
    async with running_server(request_timeout_s=0.2) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: te")  # ... and nothing more
        response = await ByteReader(stream).read_message()
        await stream.aclose()
    assert response is not None
    assert_json_error(response, 408, "0.2 s")


async def test_an_idle_keep_alive_connection_is_closed_silently() -> None:
    async with running_server(keep_alive_timeout_s=0.2) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        reader = ByteReader(stream)
        await stream.send_all(request_bytes("GET", "/"))
        assert await reader.read_message() is not None
        start = trio.current_time()
        assert await reader.read_to_eof() == b""
        idle_s = trio.current_time() - start
        await stream.aclose()
    assert 0.15 <= idle_s < 2


async def test_a_handler_bug_is_a_500_logged_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = EchoHandler(fail=True)
    async with running_server(handler) as port:
        with caplog.at_level(logging.ERROR, logger="miyamoto.io"):
            (response,) = await exchange(port, request_bytes("GET", "/"))
        handler.fail = False
        (after,) = await exchange(
            port, request_bytes("GET", "/", headers=(("Connection", "close"),))
        )
    assert_json_error(response, 500, "internal error")
    assert "a bug in the handler" in caplog.text  # with its traceback
    assert after.status == 200


async def test_connections_beyond_the_cap_get_503() -> None:
    async with running_server(connections_max=1) as port:
        held = await trio.open_tcp_stream("127.0.0.1", port)
        reader = ByteReader(held)
        await held.send_all(request_bytes("GET", "/held"))
        assert await reader.read_message() is not None  # the first connection is being served
        (refused,) = await exchange(port, b"")
        await held.aclose()
    assert_json_error(refused, 503, "1 connections")


async def test_head_gets_headers_without_a_body() -> None:
    async with running_server() as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request_bytes("HEAD", "/", headers=(("Connection", "close"),)))
        raw = await ByteReader(stream).read_to_eof()
        await stream.aclose()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: " in head.lower()
    assert rest == b""
