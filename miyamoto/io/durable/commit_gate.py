"""Persist before acting: what a turn of the node says or does waits until its changes are on disk.

A turn is one `node.handle` call and the actions it returned. The runtime hands each turn to
`after_turn` as a function that carries the actions out. When the turn changed something that
must be durable (the membership's hard state: Raft's rule, etcd's Ready; or task copies and
queue pause state: an enqueue is answered `scheduled`, and a holder acknowledges its copy, only
once the copy is committed), the turn is held, a commit is started, and the turn is carried out
once it is done. A turn that changed nothing is carried out at once, unless turns before it are
still held: order is kept, so nothing leaves that depends on a state not yet on disk.

Group commit: a commit writes everything changed up to the moment it starts, in one transaction
and one fsync; turns that arrive while it runs share the next one. Commits run in a worker
thread, one at a time, so the trio thread never waits for fsync.

A failed commit (disk full, I/O error) fails the turns that waited for it: their API answers
become 507 if the turn changed something (nothing unconfirmed is acknowledged), their peer
messages are dropped (peers retry), and their deliveries go ahead (an outcome is written by a
later commit). What did not reach the disk is written by the next commit, retried every second.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable
from typing import Final

import trio

from ...logic.local_tasks import TaskChanges
from ...logic.pending_writes import PendingWrites
from ...logic.persistence import MembershipHardState, encode_task
from ...logic.task import Task
from .store import Commit, Store, StoreUnavailable

log = logging.getLogger("miyamoto.io.durable")

HELD_TURNS_MAX: Final = 100_000
"""Turns waiting for a commit; beyond this a new turn fails at once (a store that cannot keep
up must not grow memory without bound)."""
RETRY_AFTER_ERROR_S: Final = 1.0

CarryOut = Callable[[str | None, bool], None]
"""Carries out a turn's actions: (why its commit failed, or None; whether the turn changed
anything)."""


class CommitGate:
    def __init__(
        self,
        store: Store,
        hard_state: Callable[[], MembershipHardState],
        *,
        committed: MembershipHardState,
        take_changes: Callable[[], TaskChanges | None] = lambda: None,
        find_task: Callable[[str, str], Task | None] = lambda queue, task_id: None,
    ) -> None:
        """`committed`: the state already on disk (the caller committed it before serving).
        `take_changes`: the node's changed copies since the last call; `find_task` the copy
        held now under a key (None: dropped)."""
        self._store = store
        self._hard_state = hard_state
        self._take_changes = take_changes
        self._find_task = find_task
        self._pending = PendingWrites(committed)
        self._held: collections.deque[tuple[int, bool, CarryOut]] = collections.deque()
        """(generation that must be settled first, whether the turn changed anything, its
        actions), oldest first."""
        self._work = trio.Event()
        self._released = trio.Event()
        """Set (and replaced) each time a commit is done or has failed."""
        self._limiter = trio.CapacityLimiter(1)
        self.turns_failed = 0
        self.last_error: str | None = None
        """Why the last commit failed, None once one succeeds."""

    @property
    def turns_held(self) -> int:
        return len(self._held)

    def after_turn(self, carry_out: CarryOut) -> None:
        """Carry out a turn now, or once what it changed (and what turns before it changed) is
        on disk."""
        changed = self._notice_changes()
        if not self._held and self._pending.settled:
            carry_out(None, False)
            return
        if len(self._held) >= HELD_TURNS_MAX:
            self.turns_failed += 1
            carry_out(f"{HELD_TURNS_MAX} turns are waiting for the store: try again", changed)
            return
        self._held.append((self._pending.generation, changed, carry_out))

    async def flushed(self) -> None:
        """Return once every change made so far is on disk and every held turn carried out
        (a node draining before it exits). While the store fails this waits for its retries:
        bound it with a timeout."""
        self._notice_changes()
        while self._held or self._pending.dirty or not self._pending.settled:
            await self._released.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit changes as they come, until cancelled."""
        task_status.started()
        while True:
            pending = self._pending
            with trio.move_on_after(RETRY_AFTER_ERROR_S if pending.dirty else math.inf):
                await self._work.wait()
            self._work = trio.Event()
            self._notice_changes()
            if pending.settled and pending.dirty:
                pending.generation += 1  # what a failed commit left, retried on its own
            while not pending.settled:
                await self._commit_newest()

    def _notice_changes(self) -> bool:
        changed = self._pending.notice(self._hard_state(), self._take_changes())
        if changed:
            self._work.set()
        return changed

    async def _commit_newest(self) -> None:
        unwritten = self._pending.take()
        # Encoded here, on the trio thread: the copies change as soon as the next turn runs.
        rows, deleted = [], []
        for key in unwritten.keys:
            task = self._find_task(*key)
            if task is None:
                deleted.append(key)
            else:
                rows.append(encode_task(task))
        commit = Commit(
            hard_state=unwritten.hard_state,
            tasks=rows,
            deleted=deleted,
            paused=list(unwritten.paused.items()),
        )
        try:
            await trio.to_thread.run_sync(self._store.commit, commit, limiter=self._limiter)
        except StoreUnavailable as error:
            if self.last_error != str(error):
                log.error("cannot commit, answering 507 and dropping peer messages: %s", error)
            self.last_error = str(error)
            self._pending.put_back(unwritten)  # not on disk: written by the next commit
            self._release(unwritten.generation, str(error))
            return
        if self.last_error is not None:
            log.info("the store commits again")
            self.last_error = None
        self._release(unwritten.generation, None)

    def _release(self, generation: int, error: str | None) -> None:
        self._pending.settle(generation)
        self._released.set()
        self._released = trio.Event()
        while self._held and self._held[0][0] <= generation:
            _, changed, carry_out = self._held.popleft()
            if error is not None:
                self.turns_failed += 1
            carry_out(error, changed)
