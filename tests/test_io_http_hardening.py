"""HTTP hardening of the API server: ambiguous request framing is refused; HEAD answers as GET."""

from __future__ import annotations

import trio

from .io_raw_http import ByteReader, exchange, request_bytes
from .test_io_http_server import EchoHandler, assert_json_error, running_server


async def test_content_length_with_transfer_encoding_is_400_and_the_connection_closed() -> None:
    handler = EchoHandler()
    smuggled = (
        b"POST /q HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        # What a front end framing by Content-Length would take for a second request:
        + request_bytes("POST", "/q/_purge")
    )
    async with running_server(handler) as port:
        responses = await exchange(port, smuggled)
    (response,) = responses  # one answer, then the server closed the connection
    assert_json_error(response, 400, "Content-Length", "Transfer-Encoding")
    assert response.header("connection") == "close"
    assert handler.requests == []


async def test_transfer_encoding_alone_is_still_served() -> None:
    handler = EchoHandler()
    chunked = (
        b"POST /q HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    async with running_server(handler) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(chunked)
        response = await ByteReader(stream).read_message()
        await stream.aclose()
    assert response is not None and response.status == 200
    assert [r.body for r in handler.requests] == [b"hi"]


async def test_head_is_answered_as_get_with_the_same_status_and_headers_and_no_body() -> None:
    handler = EchoHandler()
    async with running_server(handler) as port:
        (get,) = await exchange(
            port, request_bytes("GET", "/q/t1", headers=(("Connection", "close"),))
        )
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request_bytes("HEAD", "/q/t1", headers=(("Connection", "close"),)))
        raw = await ByteReader(stream).read_to_eof()
        await stream.aclose()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert rest == b""
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"content-length: {len(get.body)}".encode() in head.lower()
    assert [r.method for r in handler.requests] == ["GET", "GET"]  # the handler sees a GET
