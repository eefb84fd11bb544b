"""The ceiling for enqueue: a bare trio + h11 server that does no queue work.

It reads each request whole, as the node must, and answers it with the small JSON 200 an enqueue
gets: `{"status": "scheduled", "id": ...}`, the same bytes every time. A body that is a JSON array
(a batch) is parsed and answered with one such result per element: the least work the batch
contract allows. Whatever the node does per task on top of this is what the ratios measure.

    python -m bench.bare_server --port 8089
"""

from __future__ import annotations

import argparse
import contextlib
import json

import h11
import trio

TASK_ID = "7e998f34-bed7-44f4-80cd-49620b0ab562"
RESPONSE_BODY = json.dumps({"status": "scheduled", "id": TASK_ID}).encode()
_RECEIVE_BYTES = 64 * 1024
_REQUEST_HEAD_BYTES_MAX = 16 * 1024


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]


_SINGLE_HEADERS = _headers(RESPONSE_BODY)


def _batch_answer(request_body: bytes) -> bytes:
    try:
        tasks = json.loads(request_body)
    except ValueError:
        return RESPONSE_BODY
    results = [{"status": "scheduled", "id": TASK_ID} for _ in tasks]
    return json.dumps(results).encode()


async def serve_connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_REQUEST_HEAD_BYTES_MAX)
    chunks: list[bytes] = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(_RECEIVE_BYTES))
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                if chunks and chunks[0][:1] == b"[":
                    body = _batch_answer(b"".join(chunks))
                    headers = _headers(body)
                else:
                    body, headers = RESPONSE_BODY, _SINGLE_HEADERS
                chunks.clear()
                await stream.send_all(
                    conn.send(h11.Response(status_code=200, headers=headers))
                    + conn.send(h11.Data(data=body))
                    + conn.send(h11.EndOfMessage())
                )
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return
            # h11.Request: nothing to route; every path answers the same.
    except h11.RemoteProtocolError:
        return  # a benchmark client that sends garbage gets its connection closed
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await stream.aclose()


async def serve(port: int) -> None:
    await trio.serve_tcp(serve_connection, port, host="127.0.0.1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, args.port)


if __name__ == "__main__":
    main()
