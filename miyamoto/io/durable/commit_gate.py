"""Persist before send: peer messages wait until the membership state they follow is on disk.

Raft's rule (etcd's Ready): a vote, an acknowledgement or a heartbeat may only leave once the
term, vote and member list it reflects are durable, or a crash right after sending could make
the node take it back (vote twice in a term, forget a list it acknowledged). The gate stands
between the runtime and the peer transport: `send` is the runtime's `send_peer`. The runtime
sends a node's messages right after `node.handle` returned, so when `send` finds the hard state
changed since it last looked, that message and every later one are held, a commit of the new
state is started, and they leave, in order, once it is done.

Group commit: a commit writes the newest state; changes made while it runs go into the next
one, and messages wait only for the commit of the state they were sent after. Commits run in a
worker thread, one at a time, so the trio thread never waits for fsync.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Final

import trio

from ...logic.messages import Envelope
from ...logic.persistence import MembershipHardState
from .store import Store, StoreUnavailable

log = logging.getLogger("miyamoto.io.durable")

HELD_MESSAGES_MAX: Final = 10_000
"""Messages waiting for a commit; beyond this new ones are dropped (peer messages are best
effort, and a store that cannot commit must not grow memory without bound)."""
RETRY_AFTER_ERROR_S: Final = 1.0
CHECK_INTERVAL_S: Final = 1.0
"""A change that no message followed is committed at the latest this much later."""

SendPeer = Callable[[str, Envelope], None]


class CommitGate:
    def __init__(
        self,
        store: Store,
        hard_state: Callable[[], MembershipHardState],
        send_peer: SendPeer,
        *,
        committed: MembershipHardState,
    ) -> None:
        """`committed`: the state already on disk (the caller committed it before serving)."""
        self._store = store
        self._hard_state = hard_state
        self._send_peer = send_peer
        self._seen = committed
        self._generation = 0
        """Counts changes of the hard state seen so far."""
        self._durable_generation = 0
        self._held: collections.deque[tuple[int, str, Envelope]] = collections.deque()
        """(generation that must be durable first, destination, envelope), oldest first."""
        self._work = trio.Event()
        self._limiter = trio.CapacityLimiter(1)
        self.messages_dropped = 0
        self.last_error: str | None = None
        """Why the last commit failed, None once one succeeds."""

    def send(self, to: str, envelope: Envelope) -> None:
        """The runtime's `send_peer`: send now, or hold until the state before it is durable."""
        self._notice_change()
        if not self._held and self._durable_generation == self._generation:
            self._send_peer(to, envelope)
            return
        if len(self._held) >= HELD_MESSAGES_MAX:
            self.messages_dropped += 1
            return
        self._held.append((self._generation, to, envelope))

    @property
    def messages_held(self) -> int:
        return len(self._held)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit changes as they come, until cancelled."""
        task_status.started()
        while True:
            with trio.move_on_after(CHECK_INTERVAL_S):
                await self._work.wait()
            self._work = trio.Event()
            self._notice_change()
            while self._durable_generation < self._generation:
                await self._commit_newest()

    def _notice_change(self) -> None:
        state = self._hard_state()
        if state is not self._seen and state != self._seen:
            self._seen = state
            self._generation += 1
            self._work.set()

    async def _commit_newest(self) -> None:
        state, generation = self._seen, self._generation
        try:
            await trio.to_thread.run_sync(
                self._store.commit_hard_state, state, limiter=self._limiter
            )
        except StoreUnavailable as error:
            if self.last_error != str(error):
                log.error("cannot commit the membership state, holding peer messages: %s", error)
            self.last_error = str(error)
            await trio.sleep(RETRY_AFTER_ERROR_S)
            self._notice_change()
            return
        if self.last_error is not None:
            log.info("the membership state is committed again")
            self.last_error = None
        self._durable_generation = generation
        while self._held and self._held[0][0] <= generation:
            _, to, envelope = self._held.popleft()
            self._send_peer(to, envelope)
