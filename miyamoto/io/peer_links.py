"""The peer transport: carry out `SendPeerMessage` by POSTing encoded envelopes to `/_peer`.

`PeerLinks.send(to, envelope)` never waits and never raises: it encodes the envelope with the
codec and queues the bytes for their destination. One sender task per destination (started when
there is something to send, ended after it has been idle a while) takes everything queued, up to
a batch cap, and POSTs it to `http://{to}/_peer` as the encoded envelopes joined by b"\\n" (the
JSON encoding never contains a raw newline), over a keep-alive connection.

Every failure ends in a drop that is counted, never in a wait that grows: a full queue refuses
new messages; a POST that fails is retried once after a backoff, then its batch is dropped; a
batch not sent within its deadline is dropped. The protocols above survive loss, and a stale
heartbeat is worth less than a fresh one. Each destination has its own queue, task and
connection, so a dead or slow peer delays only the messages addressed to it.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import assert_never

import trio

from ..logic import codec
from ..logic.actions import OutboundRequest, StartDelivery
from ..logic.events import DeliveryFailed, DeliveryResponded
from ..logic.messages import Envelope, is_node_id
from .peer_auth import PeerSigner
from .webhook_client import WebhookClient

log = logging.getLogger("miyamoto.io.peer_links")

PEER_PATH = "/_peer"
PEER_CONTENT_TYPE = "application/x-miyamoto-peer"
MESSAGE_SEPARATOR = b"\n"

_RETRYABLE_4XX = frozenset({408, 429})
"""Client errors that say "not now" rather than "never": worth the one retry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerLinkSettings:
    queue_bytes_max: int = 16 * 1024 * 1024
    """Encoded bytes waiting for one destination; a message past it is dropped."""
    queue_messages_max: int = 50_000
    """Messages waiting for one destination; a message past it is dropped."""
    batch_bytes_max: int = 3 * 1024 * 1024
    """One POST body, under the API's 4 MiB request limit. A bigger single message goes alone."""
    batch_deadline_s: float = 5.0
    """A batch not acknowledged within this (retry and backoff included) is dropped."""
    backoff_min_s: float = 0.1
    backoff_max_s: float = 2.0
    """After a failed POST the next one to that destination waits this long, doubling from min
    to max while failures go on (times a random factor in [0.5, 1])."""
    idle_s_max: float = 10.0
    """A sender task with nothing to send for this long ends; its connection is closed later."""
    links_max: int = 1024
    """Destinations tracked at once; idle ones are forgotten first to make room."""
    error_excerpt_bytes_max: int = 200
    """How much of a refusing peer's answer `last_error` keeps."""

    def __post_init__(self) -> None:
        assert self.queue_bytes_max >= 1 and self.queue_messages_max >= 1, self
        assert self.batch_bytes_max >= 1, self
        for name in ("batch_deadline_s", "backoff_min_s", "backoff_max_s", "idle_s_max"):
            value = getattr(self, name)
            assert math.isfinite(value) and value > 0, (name, value)
        assert self.backoff_min_s <= self.backoff_max_s, self
        assert self.links_max >= 1, self


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStats:
    """What happened to the messages for one destination since this process started."""

    queued: int
    """Messages waiting now (not yet taken into a batch)."""
    queued_bytes: int
    sent: int
    """Messages in batches the peer answered with a 2xx."""
    posts: int
    """Batches the peer answered with a 2xx."""
    dropped_queue_full: int
    """Messages refused because the queue was full (or could not be queued at all)."""
    dropped_send_failed: int
    """Messages in batches dropped after their retry failed, or refused by the peer."""
    last_error: str | None
    """Why the last failed POST failed; None if none has."""


class _Link:
    """One destination: its queue, its sender task's state and its counters."""

    __slots__ = (
        "backoff_s",
        "dropped_queue_full",
        "dropped_send_failed",
        "failing",
        "has_messages",
        "host",
        "last_error",
        "port",
        "posts",
        "queue",
        "queued_bytes",
        "retry_at_s",
        "sender_running",
        "sent",
        "to",
    )

    def __init__(self, to: str, host: str, port: int) -> None:
        self.to = to
        self.host = host
        self.port = port
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.has_messages = trio.Event()
        """Set when a message is queued; the sender replaces it before it waits."""
        self.sender_running = False
        self.backoff_s = 0.0
        """The current backoff; 0 while the link works."""
        self.retry_at_s = 0.0
        """trio time before which no new POST starts (after a failure)."""
        self.failing = False
        """The last POST failed; logged once when it starts and once when it ends."""
        self.sent = 0
        self.posts = 0
        self.dropped_queue_full = 0
        self.dropped_send_failed = 0
        self.last_error: str | None = None

    def snapshot(self) -> LinkStats:
        return LinkStats(
            queued=len(self.queue),
            queued_bytes=self.queued_bytes,
            sent=self.sent,
            posts=self.posts,
            dropped_queue_full=self.dropped_queue_full,
            dropped_send_failed=self.dropped_send_failed,
            last_error=self.last_error,
        )


class _Refused(Exception):
    """The peer answered, and retrying the same bytes would get the same answer."""


class PeerLinks:
    """Queues and sends peer messages; `run` hosts the sender tasks, `send` feeds them."""

    def __init__(
        self,
        *,
        rng: random.Random,
        settings: PeerLinkSettings | None = None,
        signer: PeerSigner | None = None,
    ) -> None:
        self._rng = rng
        self._signer = signer
        """Signs every POST (afresh for a retry: a new sequence number); None: no cluster key."""
        """Backoff jitter only. The shell seeds it from os.urandom; nothing replays here."""
        self._settings = settings or PeerLinkSettings()
        self._links: dict[str, _Link] = {}
        self._nursery: trio.Nursery | None = None
        self._client = WebhookClient(
            # One sender task per destination: it never needs a second connection.
            connections_per_destination_max=1,
            idle_s_max=self._settings.idle_s_max,
            idle_connections_max=self._settings.links_max,
        )
        self.unaddressable = 0
        """Messages to a destination that is not a host:port, or when no link could be made."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the sender tasks until cancelled; `started()` once `send` works."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._client.aclose()

    def send(self, to: str, envelope: Envelope) -> None:
        """Queue `envelope` for node `to`. Never waits, never raises; a drop is counted."""
        link = self._link(to)
        if link is None:
            self.unaddressable += 1
            return
        settings = self._settings
        try:
            data = codec.encode(envelope)
        except Exception as error:
            # A message our own codec cannot carry is a bug; lose the message, not the node.
            log.exception("cannot encode a %s for %s", type(envelope.message).__name__, to)
            link.dropped_send_failed += 1
            link.last_error = f"cannot encode: {error!r}"
            return
        if (
            len(link.queue) >= settings.queue_messages_max
            or link.queued_bytes + len(data) > settings.queue_bytes_max
        ):
            link.dropped_queue_full += 1
            return
        nursery = self._nursery
        if nursery is None:
            link.dropped_queue_full += 1
            link.last_error = "the peer transport is not running"
            return
        link.queue.append(data)
        link.queued_bytes += len(data)
        link.has_messages.set()
        if not link.sender_running:
            link.sender_running = True
            nursery.start_soon(self._run_sender, link, name=f"peer sender to {to}")

    def stats(self) -> dict[str, LinkStats]:
        """Each destination's counts, sorted by destination."""
        return {to: self._links[to].snapshot() for to in sorted(self._links)}

    # -- the sender task of one destination ------------------------------------------------------

    def _link(self, to: str) -> _Link | None:
        link = self._links.get(to)
        if link is not None:
            return link
        if not is_node_id(to):
            if not self.unaddressable:  # once: the node would repeat it at every message
                log.warning("not sending to %r: not a host:port", to[:100])
            return None
        if len(self._links) >= self._settings.links_max and not self._forget_an_idle_link():
            if not self.unaddressable:
                log.warning("not sending to %s: %d busy links already", to, len(self._links))
            return None
        host, _, port = to.rpartition(":")
        link = self._links[to] = _Link(to, host.removeprefix("[").removesuffix("]"), int(port))
        return link

    def _forget_an_idle_link(self) -> bool:
        for to, link in self._links.items():  # oldest first: dicts keep insertion order
            if not link.sender_running and not link.queue:
                del self._links[to]
                return True
        return False

    async def _run_sender(self, link: _Link) -> None:
        try:
            while True:
                if not link.queue:
                    link.has_messages = trio.Event()
                    with trio.move_on_after(self._settings.idle_s_max):
                        await link.has_messages.wait()
                    if not link.queue:
                        return  # idle: `send` starts a new task when there is work again
                await trio.sleep_until(link.retry_at_s)  # a past time: returns at once
                await self._send_batch(link, self._take_batch(link))
        finally:
            link.sender_running = False

    def _take_batch(self, link: _Link) -> list[bytes]:
        """The oldest queued messages, as many as fit in one POST (at least one)."""
        cap = self._settings.batch_bytes_max
        batch = [link.queue.popleft()]
        size = len(batch[0])
        while link.queue and size + len(MESSAGE_SEPARATOR) + len(link.queue[0]) <= cap:
            message = link.queue.popleft()
            batch.append(message)
            size += len(MESSAGE_SEPARATOR) + len(message)
        link.queued_bytes -= sum(len(message) for message in batch)
        return batch

    async def _send_batch(self, link: _Link, batch: list[bytes]) -> None:
        """POST `batch`; once more after a backoff if that fails; else drop it and count."""
        body = MESSAGE_SEPARATOR.join(batch)
        deadline_s = trio.current_time() + self._settings.batch_deadline_s
        for attempt in range(2):
            if attempt:
                with trio.move_on_at(deadline_s):
                    await trio.sleep(self._next_backoff_s(link))
            timeout_s = deadline_s - trio.current_time()
            if timeout_s <= 0:  # only after a failure, which `last_error` already tells
                deadline = self._settings.batch_deadline_s
                link.last_error = f"{link.last_error}; no time left to retry within {deadline:g} s"
                break
            try:
                error = await self._post(link, body, timeout_s)
            except _Refused as refused:
                # The peer read the batch and refused it: resending the same bytes cannot help
                # (and would repeat whatever part of it was accepted). The link itself works.
                self._failed(link, str(refused), link_works=True)
                link.dropped_send_failed += len(batch)
                return
            if error is None:
                link.sent += len(batch)
                link.posts += 1
                self._recovered(link)
                return
            self._failed(link, error)
        link.dropped_send_failed += len(batch)
        link.retry_at_s = trio.current_time() + self._next_backoff_s(link)

    async def _post(self, link: _Link, body: bytes, timeout_s: float) -> str | None:
        """POST `body` to the link's peer: None on a 2xx, else what went wrong.

        Raises _Refused when the peer answered with a client error that a retry would repeat.
        """
        headers: tuple[tuple[str, str], ...] = (
            ("Host", link.to),
            ("Content-Type", PEER_CONTENT_TYPE),
            ("Content-Length", str(len(body))),
        )
        if self._signer is not None:
            headers += (self._signer.header(link.to, body),)
        request = OutboundRequest(
            scheme="http",
            host=link.host,
            port=link.port,
            method="POST",
            target=PEER_PATH,
            headers=headers,
            body=body,
        )
        # The webhook client is a plain HTTP/1.1 client with keep-alive connections, already
        # careful about stale connections and connect errors; a peer is one more destination.
        start = StartDelivery(
            delivery_id=0,
            request=request,
            timeout_ms=max(1, math.ceil(timeout_s * 1000)),
            excerpt_bytes_max=self._settings.error_excerpt_bytes_max,
        )
        try:
            outcome = await self._client.deliver(start)
        except Exception as bug:
            log.exception("error posting to peer %s", link.to)
            return f"internal error in the peer client: {bug!r}"
        match outcome:
            case DeliveryResponded(status=status, body_excerpt=excerpt):
                if 200 <= status < 300:
                    return None
                text = excerpt.decode("utf-8", "replace")
                answer = f"the peer answered {status}: {text}"
                if 400 <= status < 500 and status not in _RETRYABLE_4XX:
                    raise _Refused(answer)
                return answer
            case DeliveryFailed(error=kind, detail=detail):
                return f"{kind.value}: {detail}"
            case _:
                assert_never(outcome)

    def _next_backoff_s(self, link: _Link) -> float:
        settings = self._settings
        doubled_s = max(link.backoff_s * 2, settings.backoff_min_s)
        link.backoff_s = min(doubled_s, settings.backoff_max_s)
        return link.backoff_s * self._rng.uniform(0.5, 1.0)

    def _failed(self, link: _Link, error: str, *, link_works: bool = False) -> None:
        repeated = error == link.last_error
        link.last_error = error
        if link_works:
            # Once per reason: a peer with another cluster key refuses every heartbeat.
            if not repeated:
                log.warning("peer %s refused a batch: %s", link.to, error)
            return
        if not link.failing:
            link.failing = True
            log.warning("peer %s unreachable (%s); retrying with backoff", link.to, error)

    def _recovered(self, link: _Link) -> None:
        link.backoff_s = 0.0
        link.retry_at_s = 0.0
        if link.failing:
            link.failing = False
            log.info(
                "peer %s reachable again; %d messages dropped so far",
                link.to,
                link.dropped_send_failed + link.dropped_queue_full,
            )
