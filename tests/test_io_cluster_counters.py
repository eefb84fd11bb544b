"""GET /_cluster on a real node on 127.0.0.1 shows the shell's `/_peer` counters."""

from __future__ import annotations

import random
from functools import partial

import trio

from miyamoto.io.node import serve_node
from miyamoto.logic.api_tokens import parse_api_tokens
from miyamoto.logic.node import NodeConfig

from .io_raw_http import RawMessage, exchange, request_bytes

TEST_TIMEOUT_S = 15


async def call(
    port: int, method: str, target: str, body: bytes = b"", token: str = ""
) -> RawMessage:
    headers: tuple[tuple[str, str], ...] = (("Connection", "close"),)
    if token:
        headers += (("Authorization", f"Bearer {token}"),)
    (reply,) = await exchange(port, request_bytes(method, target, body, headers))
    return reply


async def test_cluster_shows_the_peer_batches_the_shell_took_and_refused() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            config = NodeConfig(node_id="127.0.0.1:0")
            port = await nursery.start(partial(serve_node, config, rng=random.Random(1)))
            before = (await call(port, "GET", "/_cluster")).json()
            assert (await call(port, "POST", "/_peer", b"not an envelope\n")).status == 400
            assert (await call(port, "POST", "/_peer", b"")).status == 200
            after = await call(port, "GET", "/_cluster/")
            nursery.cancel_scope.cancel()
    assert before["peer_endpoint"] == {
        "batches": 0, "messages": 0, "batches_malformed": 0, "authenticated": False,
    }  # fmt: skip
    assert after.status == 200
    body = after.json()
    assert body["peer_endpoint"]["batches"] == 1
    assert body["peer_endpoint"]["batches_malformed"] == 1
    assert body["node"] == before["node"]  # the node's own answer is all still there


async def test_a_cluster_request_the_token_check_refuses_shows_no_counters() -> None:
    tokens = parse_api_tokens(f"dashboard {'r' * 32} read\n")
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            config = NodeConfig(node_id="127.0.0.1:0")
            port = await nursery.start(
                partial(serve_node, config, rng=random.Random(1), api_tokens=tokens)
            )
            anonymous = await call(port, "GET", "/_cluster")
            read = await call(port, "GET", "/_cluster", token="r" * 32)
            nursery.cancel_scope.cancel()
    assert anonymous.status == 401 and "peer_endpoint" not in anonymous.json()
    assert read.status == 200 and read.json()["peer_endpoint"]["batches"] == 0
