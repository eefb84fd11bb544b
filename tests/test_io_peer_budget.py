"""Peers have their own connection budget: 1,000 idle API connections that fill a node's API
budget neither keep other nodes from joining through it nor start an election in a 3-node
cluster on 127.0.0.1, while one more API connection gets the 503 that states the limit.

Before the peer budget, the joins were answered 503 like any other connection past the limit
and the two nodes never joined (see docs/cluster.md, "Connection budgets", for the numbers)."""

from __future__ import annotations

import resource
from functools import partial
from typing import Any

import trio

from miyamoto.io.http_server import ServerSettings
from miyamoto.io.node import serve_node
from miyamoto.logic.node import NodeConfig

from .io_raw_http import RawMessage, exchange, request_bytes

IDLE_CONNECTIONS = 1_000
TEST_TIMEOUT_S = 60
QUIET_S = 4.0
"""Two to four election timeouts (1-2 s each): long enough for an election to start if
heartbeats were starved."""


def idle_connections_possible() -> int:
    """As many of the 1,000 as this process may open (two sockets each: ours and the node's),
    after raising the soft limit on open files as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * IDLE_CONNECTIONS + 500
    if soft < wanted and (hard == resource.RLIM_INFINITY or hard > soft):
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return min(IDLE_CONNECTIONS, (soft - 500) // 2)


async def get(port: int, target: str) -> RawMessage:
    (reply,) = await exchange(
        port, request_bytes("GET", target, headers=(("Connection", "close"),))
    )
    return reply


async def cluster_view(port: int) -> dict[str, Any]:
    reply = await get(port, "/_cluster")
    assert reply.status == 200, reply.body
    view: dict[str, Any] = reply.json()
    return view


async def test_idle_api_connections_starve_neither_joins_nor_heartbeats() -> None:
    idle = idle_connections_possible()
    assert idle >= 200, "cannot open enough sockets for this test"
    flooded_settings = ServerSettings(connections_max=idle, peer_connections_max=16)
    streams: list[trio.SocketStream] = []
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            seed_port = await nursery.start(
                partial(
                    serve_node,
                    NodeConfig(node_id="127.0.0.1:0"),
                    server_settings=flooded_settings,
                )
            )
            seed = f"127.0.0.1:{seed_port}"
            for _ in range(idle):
                streams.append(await trio.open_tcp_stream("127.0.0.1", seed_port))
            # The flood holds the whole API budget: one more API request is refused.
            probe = await get(seed_port, "/_health")
            while probe.status == 200:  # until the node has accepted every idle connection
                await trio.sleep(0.05)
                probe = await get(seed_port, "/_health")
            ports = [
                await nursery.start(
                    partial(serve_node, NodeConfig(node_id="127.0.0.1:0", seed_id=seed))
                )
                for _ in range(2)
            ]
            while len((await cluster_view(ports[0]))["members"]) < 3:
                await trio.sleep(0.1)
            before = [await cluster_view(port) for port in ports]
            await trio.sleep(QUIET_S)
            after = [await cluster_view(port) for port in ports]
            still_refused = await get(seed_port, "/_health")
            nursery.cancel_scope.cancel()
    for stream in streams:
        stream.socket.close()
    assert probe.status == 503 and f"serves {idle} API connections" in probe.json()["error"]
    assert still_refused.status == 503  # the idle connections were there all along
    for old, new in zip(before, after, strict=True):
        assert new["leader"] == seed and new["term"] == old["term"]
        assert new["stats"]["elections_started"] == old["stats"]["elections_started"] == 0
        assert new["stats"]["pre_votes_started"] == old["stats"]["pre_votes_started"] == 0
        assert len(new["members"]) == 3
