"""Shutting a node down gracefully (SIGTERM or Ctrl-C): finish what is under way, then exit.

The drain, in order (docs/durability.md, "Shutdown"):

1. Stop accepting: the listeners close, so new connections are refused; idle API connections
   close; requests under way keep going.
2. Hold new deliveries: a task that falls due from now on is not sent. Its copy stays on disk
   as it is and fires again after the restart (or from another holder), as after a crash.
3. Wait, up to the drain timeout, for the API requests under way to be answered (an enqueue
   waiting for its commit or its replicas gets its answer) and for the deliveries under way
   to finish.
4. (`--leave-on-exit`, when it lands, hands this node's copies to other members here: after
   the last outcome is known, before the final commit.)
5. Commit: every outcome and change is on disk before the process exits.

A delivery still under way at the drain timeout is abandoned: its outcome is not recorded, so
the task is delivered again after the restart (at least once, as after a crash). Nothing that was
acknowledged is lost, by the drain or by a second signal, which stops the node at once: an
acknowledgement is only sent once what it acknowledges is committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import trio

from ..logic.actions import StartDelivery
from ..logic.events import DeliveryFailed, DeliveryResponded
from .durable.commit_gate import CommitGate
from .http_server import ApiDrain
from .runtime import Deliver

log = logging.getLogger("miyamoto")

FINAL_COMMIT_TIMEOUT_S: Final = 10.0
"""How long the last commit may take, beyond the drain timeout (a commit takes milliseconds; a
store failing to write is retried every second until this)."""


class Drain:
    """Asked for by the daemon on its first SIGTERM or SIGINT; `serve_node` then drains and
    returns. `committed` says whether the final commit was done (exit status 0) or not."""

    def __init__(self, *, timeout_s: float) -> None:
        assert timeout_s >= 0, timeout_s
        self.timeout_s = timeout_s
        self.requested = trio.Event()
        self.committed = True


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainReport:
    requests_answered: int
    requests_cut: int
    deliveries_finished: int
    deliveries_cut: int
    committed: bool


class DeliveriesUnderWay:
    """Wraps the node's `Deliver`: counts the deliveries under way, and once `hold_new` is called
    starts no more (a held delivery waits until the node exits, sending nothing)."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self.under_way = 0
        self._holding = False
        self._none_left = trio.Event()

    async def __call__(self, start: StartDelivery) -> DeliveryResponded | DeliveryFailed:
        if self._holding:
            await trio.sleep_forever()
        self.under_way += 1
        try:
            return await self._deliver(start)
        finally:
            # The outcome is fed to the node as this returns, before the waiter wakes.
            self.under_way -= 1
            if self._holding and not self.under_way:
                self._none_left.set()

    def hold_new(self) -> None:
        self._holding = True
        if not self.under_way:
            self._none_left.set()

    async def finished(self) -> None:
        await self._none_left.wait()


async def drain_node(
    drain: Drain,
    *,
    api: ApiDrain,
    deliveries: DeliveriesUnderWay,
    gate: CommitGate | None,
) -> DrainReport:
    """Carry out the drain (the steps in this module's docstring); what happened."""
    await api.stop_accepting()
    deliveries.hold_new()
    requests = api.api_requests_under_way
    under_way = deliveries.under_way
    log.info(
        "draining: listener closed; waiting up to %g s for %d API requests and %d deliveries "
        "under way",
        drain.timeout_s,
        requests,
        under_way,
    )
    with trio.move_on_after(drain.timeout_s):
        await api.api_requests_answered()
        await deliveries.finished()
    requests_cut = api.api_requests_under_way
    deliveries_cut = deliveries.under_way
    committed = True
    if gate is not None:
        with trio.move_on_after(FINAL_COMMIT_TIMEOUT_S) as final_commit:
            await gate.flushed()
        committed = not final_commit.cancelled_caught
    drain.committed = committed
    return DrainReport(
        requests_answered=max(requests - requests_cut, 0),
        requests_cut=requests_cut,
        deliveries_finished=max(under_way - deliveries_cut, 0),
        deliveries_cut=deliveries_cut,
        committed=committed,
    )


def log_drained(report: DrainReport) -> None:
    if report.committed:
        log.info(
            "drained: %d API requests answered, %d deliveries finished and recorded; "
            "%d requests and %d deliveries cut off by the drain timeout (those deliveries are "
            "made again after a restart)",
            report.requests_answered,
            report.deliveries_finished,
            report.requests_cut,
            report.deliveries_cut,
        )
    else:
        log.error(
            "drained, but the last commit did not finish within %g s: the outcomes of %d "
            "deliveries are not on disk (those tasks are delivered again after a restart; "
            "nothing acknowledged is lost)",
            FINAL_COMMIT_TIMEOUT_S,
            report.deliveries_finished,
        )
