"""Run a node state machine for real: feed it events with both clocks, carry out its actions.

`NodeRuntime` owns one node. `feed(event)` calls `node.handle(event, now_ms, mono_ms=...)` (the
wall clock for moments, a monotonic clock for durations: docs/cluster.md, "Clocks") and carries out
every action at once: a `SendApiResponse` answers the request handler waiting for it, a
`StartDelivery` goes to the delivery queue (a few workers per destination), a `SendPeerMessage`
goes to the peer transport (`send_peer`: `PeerLinks.send`, or nowhere while a node has none).
A timer task sleeps until `node.next_deadline_ms()` (monotonic) and feeds `TimerExpired()`. trio
runs one task at a time and `feed` never awaits, so any task may call it: the node never sees two
events at once.

An exception out of `node.handle` is a bug, and the node's state may no longer match the actions
it lost: `feed` logs the event and the traceback, refuses every later event, and `run` raises
`NodeCrashed`, which ends the daemon with `EXIT_NODE_CRASHED` (a supervisor restarts it) instead
of running on.

With a `gate` (a durable node, durable/commit_gate.py) each turn's actions are handed to the gate
instead, which carries them out once what the turn changed is on disk (persist before acting).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol, assert_never

import trio

from ..logic.actions import Action, SendApiResponse, SendPeerMessage, StartDelivery
from ..logic.events import (
    ApiRequestReceived,
    DeliveryError,
    DeliveryFailed,
    DeliveryResponded,
    Event,
    TimerExpired,
)
from ..logic.http import HttpRequest, HttpResponse, error_response
from ..logic.limits import Limits
from ..logic.messages import Envelope
from .delivery_queue import DeliveryQueue

log = logging.getLogger("miyamoto.io.runtime")

TIMER_SLEEP_S_MAX = 1.0
"""The node's deadline is monotonic, but the wall-clock deadlines in it (ETAs) were converted
with the clocks' offset at the last event: waking at least this often notices a wall clock that
was stepped since, within a second."""

WALL_STEP_NOTICED_MS = 2
"""A change of (wall - monotonic) this large since the last feed is a stepped (or slewed) wall
clock: the timer feeds `TimerExpired` so that the node converts its ETAs afresh. (Both clocks are
read in whole ms: 1 ms is rounding.)"""


class NodeCrashed(Exception):
    """`Node.handle` raised: the node is stopped (the traceback is in the log)."""


class NodeMachine(Protocol):
    """What the runtime needs of a node: the sans-I/O interface of `miyamoto.logic.node.Node`."""

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]: ...

    def next_deadline_ms(self) -> int | None: ...


Deliver = Callable[[StartDelivery], Awaitable[DeliveryResponded | DeliveryFailed]]
"""Carries out one delivery and reports its outcome (`WebhookClient.deliver`)."""

Observer = Callable[[Event, list[Action], int], None]
"""Sees each event the node handled, the actions it returned and the feed's now_ms, after the
actions were carried out (metrics and logs read the node there). It runs inside `feed`, so it
must be cheap and must not await; an exception it raises is logged and goes no further."""

class TurnGate(Protocol):
    """Holds a turn's actions until its changes are durable (`commit_gate.CommitGate`)."""

    def after_turn(self, carry_out: Callable[[str | None, bool], None]) -> None: ...


SendPeer = Callable[[str, Envelope], None]
"""Hands (destination, envelope) to the peer transport without waiting (`PeerLinks.send`; peer
messages are best effort)."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_clock_ms(start_ms: int) -> Callable[[], int]:
    """A monotonic clock in ms that reads `start_ms` now and never steps. Started at the wall
    time, both clocks agree until the wall clock is stepped, so a node built with a wall time
    (its membership's first timers) needs no conversion."""
    start_ns = time.monotonic_ns()

    def read() -> int:
        return start_ms + (time.monotonic_ns() - start_ns) // 1_000_000

    return read


class _ResponseWaiter:
    __slots__ = ("arrived", "response")

    def __init__(self) -> None:
        self.arrived: trio.Event | None = None
        """Made only when the answer has to be waited for: most come within the feed."""
        self.response: HttpResponse | None = None


class NodeRuntime:
    def __init__(
        self,
        node: NodeMachine,
        *,
        deliver: Deliver,
        send_peer: SendPeer | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        mono_clock_ms: Callable[[], int] | None = None,
        deliveries_per_destination_max: int = Limits().connections_per_destination_max,
        observe: Observer | None = None,
        gate: TurnGate | None = None,
    ) -> None:
        self._node = node
        self._gate = gate
        self._observe = observe
        self._deliver = deliver
        self._deliveries = DeliveryQueue(
            self._deliver_reporting_bugs,
            self._feed_outcome,
            per_destination_max=deliveries_per_destination_max,
        )
        self._send_peer = send_peer
        self.peer_messages_dropped = 0
        """SendPeerMessage actions with no peer transport to carry them."""
        self._clock_ms = clock_ms
        self._mono_clock_ms = mono_clock_ms or monotonic_clock_ms(clock_ms())
        """Durations: `clock_ms` (the wall clock) may be stepped (NTP, an operator)."""
        self._wall_ahead_ms = 0
        """wall - monotonic at the last feed: the offset the node converted its ETAs with."""
        self._nursery: trio.Nursery | None = None
        self._request_ids = itertools.count(1)
        self._waiters: dict[int, _ResponseWaiter] = {}
        """Request handlers waiting for their SendApiResponse, by request id."""
        self._deadline_may_have_changed = trio.Event()
        self._armed_deadline_ms: int | None = None
        """The deadline the timer task sleeps towards; None while it waits for any feed."""
        self._crash: NodeCrashed | None = None
        self._crashed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the timer and host deliveries until cancelled; `started()` once `feed` works."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._deliveries.run)
            self._nursery = nursery
            nursery.start_soon(self._stop_on_crash)
            task_status.started()
            try:
                await self._run_timer()
            finally:
                self._nursery = None

    async def _stop_on_crash(self) -> None:
        await self._crashed.wait()
        assert self._crash is not None
        raise self._crash

    def feed(self, event: Event) -> None:
        """Hand `event` to the node now and carry out every action it returns."""
        if self._crash is not None:
            raise self._crash
        nursery = self._nursery
        assert nursery is not None, "feed() before run() started"
        now_ms, mono_ms = self._clock_ms(), self._mono_clock_ms()
        self._wall_ahead_ms = now_ms - mono_ms
        try:
            actions = self._node.handle(event, now_ms, mono_ms=mono_ms)
        except Exception as bug:
            log.critical("the node raised on %r; stopping it", event, exc_info=True)
            self._crash = NodeCrashed(f"the node raised {bug!r} on a {type(event).__name__}")
            self._crashed.set()
            raise self._crash from bug
        # Wake the timer only for an earlier deadline: a later one it notices when it wakes.
        deadline_ms = self._node.next_deadline_ms()
        armed_ms = self._armed_deadline_ms
        if deadline_ms is not None and (armed_ms is None or deadline_ms < armed_ms):
            self._deadline_may_have_changed.set()
        if self._gate is None:
            self._carry_out(actions, None, False)
        else:
            self._gate.after_turn(partial(self._carry_out, actions))
        if self._observe is not None:
            try:
                self._observe(event, actions, now_ms)
            except Exception:
                log.exception("the node observer failed on %s", type(event).__name__)

    def _carry_out(self, actions: list[Action], store_error: str | None, changed: bool) -> None:
        """`store_error`: the commit this turn waited for failed. Then nothing the turn changed
        is confirmed: its answers become 507 if it changed anything, its peer messages are
        dropped (peers retry); deliveries go ahead (their outcome is committed later)."""
        for action in actions:
            match action:
                case SendApiResponse(request_id=request_id, response=response):
                    if store_error is not None and changed:
                        response = error_response(507, f"not stored: {store_error}")
                    waiter = self._waiters.pop(request_id, None)
                    if waiter is not None:  # None: the client went away meanwhile
                        waiter.response = response
                        if waiter.arrived is not None:
                            waiter.arrived.set()
                case StartDelivery():
                    self._deliveries.submit(action)
                case SendPeerMessage():
                    if store_error is None:
                        self._carry_out_peer_message(action)
                case _:
                    assert_never(action)

    async def handle_api_request(self, request: HttpRequest) -> HttpResponse:
        """Feed `request` to the node and wait for its answer."""
        answer = self.answer_api_request(request)
        if isinstance(answer, HttpResponse):
            return answer
        return await answer

    def answer_api_request(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        """Feed `request` to the node: its answer, or (when it waits for peers) an awaitable of
        it. An `http_server.RequestHandler`: an answer that comes at once costs no task switch
        and no timeout scope, about 9 of the 160 us of CPU a small enqueue took."""
        request_id = next(self._request_ids)
        waiter = self._waiters[request_id] = _ResponseWaiter()  # before feed: it may answer at once
        try:
            self.feed(ApiRequestReceived(request_id=request_id, request=request))
        except BaseException:
            self._waiters.pop(request_id, None)
            raise
        if waiter.response is not None:
            return waiter.response  # feed has taken the waiter out already
        waiter.arrived = trio.Event()
        return self._wait_for_response(request_id, waiter)

    async def _wait_for_response(self, request_id: int, waiter: _ResponseWaiter) -> HttpResponse:
        assert waiter.arrived is not None
        try:
            await waiter.arrived.wait()
        finally:
            self._waiters.pop(request_id, None)
        assert waiter.response is not None
        return waiter.response

    def _carry_out_peer_message(self, send: SendPeerMessage) -> None:
        if self._send_peer is not None:
            self._send_peer(send.to, send.envelope)
            return
        # A node alone never addresses peers; if it does without a transport, say so once.
        if not self.peer_messages_dropped:
            log.warning("no peer transport: dropping messages to peers, first to %s", send.to)
        self.peer_messages_dropped += 1

    async def _deliver_reporting_bugs(
        self, start: StartDelivery
    ) -> DeliveryResponded | DeliveryFailed:
        try:
            return await self._deliver(start)
        except Exception as error:
            # A bug in the client. Report a failure anyway, or the task would wait forever.
            # Not the target: its query may carry a token, and logs never show one.
            log.exception("error delivering to %s:%d", start.request.host, start.request.port)
            return DeliveryFailed(
                delivery_id=start.delivery_id,
                error=DeliveryError.RESET,
                detail=f"internal error in the webhook client: {error!r}",
            )

    def _feed_outcome(self, outcome: DeliveryResponded | DeliveryFailed) -> None:
        with contextlib.suppress(NodeCrashed):  # logged in feed; `run` raises it
            self.feed(outcome)

    async def _run_timer(self) -> None:
        while True:
            self._deadline_may_have_changed = trio.Event()
            deadline_ms = self._armed_deadline_ms = self._node.next_deadline_ms()
            if deadline_ms is None:
                await self._deadline_may_have_changed.wait()
                continue
            mono_ms = self._mono_clock_ms()
            wall_stepped_ms = self._clock_ms() - mono_ms - self._wall_ahead_ms
            wait_ms = deadline_ms - mono_ms
            if wait_ms > 0 and abs(wall_stepped_ms) < WALL_STEP_NOTICED_MS:
                with trio.move_on_after(min(wait_ms / 1000, TIMER_SLEEP_S_MAX)):
                    await self._deadline_may_have_changed.wait()
                continue  # whether woken or timed out, look at the deadline afresh
            try:
                self.feed(TimerExpired())
            except NodeCrashed:
                await trio.sleep_forever()  # logged in feed; `_stop_on_crash` raises it
            # A node that keeps a past deadline must not starve every other task.
            await trio.lowlevel.checkpoint()
