"""The peer transport on 127.0.0.1: batching and order, bounded queues, slow and dead peers,
retry once then drop, reconnect after a restart, and a real node's `/_peer` on the other end."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from miyamoto.io.http_server import open_api_listeners, serve_api
from miyamoto.io.node import serve_node
from miyamoto.io.peer_links import PEER_CONTENT_TYPE, PeerLinks, PeerLinkSettings
from miyamoto.logic import codec
from miyamoto.logic.http import HttpRequest, HttpResponse, error_response
from miyamoto.logic.messages import Envelope, HeartbeatAck, PeerMessage
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.replica_messages import QueryResult

from .io_raw_http import exchange, request_bytes

TEST_TIMEOUT_S = 10
FAST = PeerLinkSettings(backoff_min_s=0.01, backoff_max_s=0.05, batch_deadline_s=2.0)
"""Short backoffs, so failure tests take milliseconds; the defaults are what production uses."""


def envelope(message: PeerMessage) -> Envelope:
    return Envelope(
        sender="127.0.0.1:1", incarnation=7, cluster_id=3, term=1, epoch=1, message=message
    )


def numbered(n: int) -> Envelope:
    """A small message carrying `n`, so a test can read the order messages arrived in."""
    return envelope(HeartbeatAck(epoch_term=1, epoch=n))


def number_of(received: Envelope) -> int:
    message = received.message
    assert isinstance(message, HeartbeatAck), message
    return message.epoch


Answer = Callable[[HttpRequest], Awaitable[HttpResponse]]


async def accept(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


@dataclass
class FakePeer:
    """The API server with a handler standing in for a node: records every POST and decodes it
    the way the node's `/_peer` route does."""

    answer: Answer = accept
    port: int = 0
    posts: list[HttpRequest] = field(default_factory=list)
    received: list[Envelope] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        self.posts.append(request)
        self.changed.set()
        self.changed = trio.Event()
        response = await self.answer(request)
        if 200 <= response.status < 300:
            self.received.extend(codec.decode(line) for line in request.body.split(b"\n"))
            self.changed.set()
            self.changed = trio.Event()
        return response

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.changed.wait()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on `port` (a free one the first time) until `stop()`."""
        listeners, self.port = await open_api_listeners("127.0.0.1", self.port)
        with self.scope:
            await serve_api(self.handle, listeners, task_status=task_status)

    def stop(self) -> None:
        self.scope.cancel()
        self.scope = trio.CancelScope()

    @property
    def node_id(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_peer(nursery: trio.Nursery, answer: Answer = accept) -> FakePeer:
    peer = FakePeer(answer=answer)
    await nursery.start(peer.serve)
    return peer


async def start_links(nursery: trio.Nursery, settings: PeerLinkSettings = FAST) -> PeerLinks:
    links = PeerLinks(rng=random.Random(5), settings=settings)
    await nursery.start(links.run)
    return links


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def eventually(condition: Callable[[], bool]) -> None:
    while not condition():
        await trio.sleep(0.005)


# -- batching and order ---------------------------------------------------------------------------


async def test_messages_queued_together_go_in_one_post_in_order() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            links = await start_links(nursery)
            for n in range(500):
                links.send(peer.node_id, numbered(n))
            await peer.wait_for(lambda: len(peer.received) == 500)
            await eventually(lambda: links.stats()[peer.node_id].sent == 500)  # the 204 came back
            stats = links.stats()[peer.node_id]
            nursery.cancel_scope.cancel()
    assert [number_of(e) for e in peer.received] == list(range(500))
    (post,) = peer.posts
    assert (post.method, post.target) == ("POST", "/_peer")
    assert post.header("content-type") == PEER_CONTENT_TYPE
    assert post.header("host") == peer.node_id
    assert post.body == b"\n".join(codec.encode(numbered(n)) for n in range(500))
    assert (stats.sent, stats.posts, stats.queued, stats.queued_bytes) == (500, 1, 0, 0)
    assert stats.dropped_queue_full == stats.dropped_send_failed == 0
    assert stats.last_error is None


async def test_messages_sent_while_a_post_is_in_flight_go_together_in_the_next() -> None:
    release = trio.Event()

    async def slow_first(request: HttpRequest) -> HttpResponse:
        await release.wait()
        return HttpResponse(status=204)

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, slow_first)
            links = await start_links(nursery)
            links.send(peer.node_id, numbered(0))
            await peer.wait_for(lambda: len(peer.posts) == 1)
            for n in range(1, 301):
                links.send(peer.node_id, numbered(n))
            release.set()
            await peer.wait_for(lambda: len(peer.received) == 301)
            nursery.cancel_scope.cancel()
    assert [number_of(e) for e in peer.received] == list(range(301))
    assert len(peer.posts) == 2  # one connection, one request at a time: the rest waited as one


async def test_batches_stay_under_the_byte_cap_and_a_bigger_message_goes_alone() -> None:
    cap = 2_000
    view = {"id": "t", "state": "scheduled", "attempts": 0, "eta": 1.0, "finished": None}
    big = envelope(
        QueryResult(ref=1, task_json=json.dumps({**view, "holders": [], "x": "x" * 5_000}))
    )
    settings = PeerLinkSettings(batch_bytes_max=cap)
    small_size = len(codec.encode(numbered(0)))
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            links = await start_links(nursery, settings)
            for n in range(100):
                links.send(peer.node_id, numbered(n))
            links.send(peer.node_id, big)
            for n in range(100, 200):
                links.send(peer.node_id, numbered(n))
            await peer.wait_for(lambda: len(peer.received) == 201)
            nursery.cancel_scope.cancel()
    received = peer.received
    assert received[100] == big
    assert [number_of(e) for e in received[:100] + received[101:]] == list(range(200))
    big_posts = [p for p in peer.posts if len(p.body) > cap]
    assert [p.body for p in big_posts] == [codec.encode(big)]
    assert all(len(p.body) <= cap for p in peer.posts if p not in big_posts)
    per_post = (cap + 1) // (small_size + 1)  # messages of this size that fit in one POST
    assert len(peer.posts) == 1 + 2 * -(-100 // per_post)  # full batches, nothing wasted


# -- bounded queues -------------------------------------------------------------------------------


async def test_a_full_queue_drops_new_messages_and_counts_them() -> None:
    settings = PeerLinkSettings(queue_messages_max=10)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            links = await start_links(nursery, settings)
            for n in range(15):  # no checkpoint: the sender cannot take any before all 15 come
                links.send(peer.node_id, numbered(n))
            while_full = links.stats()[peer.node_id]
            await peer.wait_for(lambda: len(peer.received) == 10)
            links.send(peer.node_id, numbered(99))  # room again once the batch is taken
            await eventually(lambda: links.stats()[peer.node_id].sent == 11)
            after = links.stats()[peer.node_id]
            nursery.cancel_scope.cancel()
    assert (while_full.queued, while_full.dropped_queue_full) == (10, 5)
    assert [number_of(e) for e in peer.received] == [*range(10), 99]  # the oldest ones kept
    assert (after.sent, after.dropped_queue_full, after.queued) == (11, 5, 0)


async def test_the_queue_is_bounded_by_bytes_too() -> None:
    size = len(codec.encode(numbered(0)))
    settings = PeerLinkSettings(queue_bytes_max=3 * size + 1)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            links = await start_links(nursery, settings)
            for n in range(5):
                links.send(peer.node_id, numbered(n))
            while_full = links.stats()[peer.node_id]
            await peer.wait_for(lambda: len(peer.received) == 3)
            nursery.cancel_scope.cancel()
    assert (while_full.queued, while_full.queued_bytes) == (3, 3 * size)
    assert while_full.dropped_queue_full == 2
    assert [number_of(e) for e in peer.received] == [0, 1, 2]


# -- failures -------------------------------------------------------------------------------------


async def test_a_dead_and_a_hung_peer_do_not_delay_messages_to_another() -> None:
    hung_forever = trio.Event()

    async def never_answer(request: HttpRequest) -> HttpResponse:
        await hung_forever.wait()
        raise AssertionError("unreachable")

    dead = f"127.0.0.1:{closed_port()}"
    settings = PeerLinkSettings(backoff_min_s=0.01, backoff_max_s=0.05, batch_deadline_s=5.0)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            good = await start_peer(nursery)
            hung = await start_peer(nursery, never_answer)
            links = await start_links(nursery, settings)
            started_s = trio.current_time()
            for n in range(20):
                for to in (dead, hung.node_id, good.node_id):
                    links.send(to, numbered(n))
                await trio.sleep(0.01)  # sends spread over time, not one batch
            await good.wait_for(lambda: len(good.received) == 20)
            good_done_s = trio.current_time() - started_s
            await eventually(lambda: links.stats()[dead].dropped_send_failed == 20)
            stats = links.stats()
            nursery.cancel_scope.cancel()
    assert [number_of(e) for e in good.received] == list(range(20))
    assert good_done_s < 1.5  # 20 x 10 ms of sending, plus scheduling; not the hung peer's 5 s
    assert stats[good.node_id].dropped_send_failed == 0
    assert stats[hung.node_id].sent == 0 and len(hung.posts) == 1  # still waiting on the first
    dead_error = stats[dead].last_error
    assert stats[dead].sent == 0
    assert dead_error is not None and "refused" in dead_error


async def test_a_batch_not_answered_within_its_deadline_is_dropped() -> None:
    async def never_answer(request: HttpRequest) -> HttpResponse:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    settings = PeerLinkSettings(batch_deadline_s=0.3, backoff_min_s=0.01, backoff_max_s=0.05)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, never_answer)
            links = await start_links(nursery, settings)
            links.send(peer.node_id, numbered(0))
            started_s = trio.current_time()
            await eventually(lambda: links.stats()[peer.node_id].dropped_send_failed == 1)
            dropped_after_s = trio.current_time() - started_s
            stats = links.stats()[peer.node_id]
            nursery.cancel_scope.cancel()
    assert 0.3 <= dropped_after_s < 1.5
    assert stats.last_error is not None and "timeout" in stats.last_error
    assert len(peer.posts) == 1  # the deadline covers the retry too: no time was left for it


async def test_a_failed_post_is_retried_once_then_dropped() -> None:
    failing = True

    async def unavailable(request: HttpRequest) -> HttpResponse:
        if failing:
            return error_response(503, "busy")
        return HttpResponse(status=204)

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, unavailable)
            links = await start_links(nursery)
            for n in range(3):
                links.send(peer.node_id, numbered(n))
            await eventually(lambda: links.stats()[peer.node_id].dropped_send_failed == 3)
            dropped = links.stats()[peer.node_id]
            failing = False
            links.send(peer.node_id, numbered(3))
            await eventually(lambda: links.stats()[peer.node_id].sent == 1)
            recovered = links.stats()[peer.node_id]
            nursery.cancel_scope.cancel()
    first, retry, _later = peer.posts  # the dropped batch is never sent a third time
    assert first.body == retry.body == b"\n".join(codec.encode(numbered(n)) for n in range(3))
    assert [number_of(e) for e in peer.received] == [3]
    assert dropped.last_error is not None
    assert "503" in dropped.last_error and "busy" in dropped.last_error
    assert (recovered.sent, recovered.posts, recovered.dropped_send_failed) == (1, 1, 3)


async def test_a_post_that_fails_once_arrives_on_the_retry() -> None:
    async def fail_first(request: HttpRequest) -> HttpResponse:
        if len(peer.posts) == 1:
            return error_response(500, "hiccup")
        return HttpResponse(status=204)

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, fail_first)
            links = await start_links(nursery)
            links.send(peer.node_id, numbered(1))
            await eventually(lambda: links.stats()[peer.node_id].sent == 1)
            stats = links.stats()[peer.node_id]
            nursery.cancel_scope.cancel()
    assert len(peer.posts) == 2
    assert (stats.sent, stats.dropped_send_failed) == (1, 0)
    assert stats.last_error is not None and "hiccup" in stats.last_error


async def test_a_batch_the_peer_refuses_as_malformed_is_not_resent() -> None:
    async def refuse(request: HttpRequest) -> HttpResponse:
        return error_response(400, "refused 1 of 1 messages: unknown message type")

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, refuse)
            links = await start_links(nursery)
            links.send(peer.node_id, numbered(1))
            await eventually(lambda: links.stats()[peer.node_id].dropped_send_failed == 1)
            await trio.sleep(0.2)  # room for a retry that must not come
            stats = links.stats()[peer.node_id]
            nursery.cancel_scope.cancel()
    assert len(peer.posts) == 1  # a 400 would repeat, and the accepted part would arrive twice
    assert stats.last_error is not None and "unknown message type" in stats.last_error


async def test_messages_flow_again_after_the_peer_restarts() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            links = await start_links(nursery)
            links.send(peer.node_id, numbered(1))
            await peer.wait_for(lambda: len(peer.received) == 1)
            peer.stop()  # closes the listener and the kept-alive connection
            links.send(peer.node_id, numbered(2))
            await eventually(lambda: links.stats()[peer.node_id].dropped_send_failed == 1)
            down = links.stats()[peer.node_id]
            await nursery.start(peer.serve)  # the same port again
            links.send(peer.node_id, numbered(3))
            await eventually(lambda: links.stats()[peer.node_id].sent == 2)
            up = links.stats()[peer.node_id]
            nursery.cancel_scope.cancel()
    assert [number_of(e) for e in peer.received] == [1, 3]
    assert down.last_error is not None and "refused" in down.last_error
    assert (up.sent, up.posts, up.dropped_send_failed) == (2, 2, 1)


# -- send never raises ----------------------------------------------------------------------------


async def test_send_counts_what_it_cannot_queue_instead_of_raising() -> None:
    links = PeerLinks(rng=random.Random(1), settings=FAST)
    links.send("127.0.0.1:9", numbered(0))  # not running yet
    assert links.stats()["127.0.0.1:9"].dropped_queue_full == 1
    assert links.stats()["127.0.0.1:9"].last_error == "the peer transport is not running"
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(links.run)
            links.send("no port here", numbered(0))
            links.send("127.0.0.1:0", numbered(0))
            nursery.cancel_scope.cancel()
    assert links.unaddressable == 2
    assert list(links.stats()) == ["127.0.0.1:9"]


async def test_idle_links_are_forgotten_to_bound_the_destinations_tracked() -> None:
    settings = PeerLinkSettings(links_max=2, idle_s_max=0.05)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            first, second, third = [await start_peer(nursery) for _ in range(3)]
            links = await start_links(nursery, settings)
            links.send(first.node_id, numbered(1))
            links.send(second.node_id, numbered(2))
            links.send(third.node_id, numbered(3))  # both links busy: no room
            refused = links.unaddressable
            await eventually(lambda: all(s.sent == 1 for s in links.stats().values()))
            await trio.sleep(0.2)  # both senders idle past idle_s_max, and end
            links.send(third.node_id, numbered(4))
            await third.wait_for(lambda: len(third.received) == 1)
            tracked = list(links.stats())
            nursery.cancel_scope.cancel()
    assert refused == 1
    assert [number_of(e) for e in third.received] == [4]
    assert tracked == sorted([second.node_id, third.node_id])  # the oldest idle one went


# -- against a real node --------------------------------------------------------------------------


async def test_a_real_node_accepts_what_the_links_send_and_refuses_garbage() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            config = NodeConfig(node_id="127.0.0.1:0")
            port = await nursery.start(partial(serve_node, config, rng=random.Random(2)))
            node_id = f"127.0.0.1:{port}"
            links = await start_links(nursery)
            for n in range(50):
                links.send(node_id, numbered(n))
            await eventually(lambda: links.stats()[node_id].posts == 1)
            stats = links.stats()[node_id]
            headers = (("Content-Type", PEER_CONTENT_TYPE), ("Connection", "close"))
            (garbage,) = await exchange(port, request_bytes("POST", "/_peer", b"{}\n", headers))
            nursery.cancel_scope.cancel()
    assert (stats.sent, stats.dropped_send_failed, stats.last_error) == (50, 0, None)
    assert garbage.status == 400
    assert garbage.json()["status"] == "error"
