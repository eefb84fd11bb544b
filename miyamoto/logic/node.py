"""The Miyamoto node as one sans-I/O state machine.

`Node.handle(event, now_ms, mono_ms=...)` takes what happened (an API request, a webhook's
answer, a peer's message, a timer) and returns the actions for the shell: responses to send,
deliveries to start, messages to send to peers. `Node.next_deadline_ms()` says when to call it
with `TimerExpired` at the latest.

Two clocks (docs/cluster.md, "Clocks"): `now_ms` is the wall clock (ETAs, timestamps, retention:
moments other nodes and the disk see), `mono_ms` a monotonic clock for every duration (membership
timers, leases, standing, claim renewals, request and question timeouts, repair retries), so that
a stepped wall clock moves no lease and no timeout.

A node on its own is a cluster of one: the same code places each task's copies on up to R
members (here: itself), so there is one path to test, not two.

This class is the composition root: it feeds each event to the part whose job it is, then
runs what follows every step (member list changes, standing, due deliveries, questions).
The parts, one job each:
- `api`: routing, fan-out to the members, requests waiting for answers, replies;
- `coordinator`: an enqueue's placement, its acknowledgements, reconcile and unconfirm;
- `replica_store`: the copies this node keeps and what their holders tell it about them;
- `dispatcher`: due deliveries, their claims and outcomes;
- `sync_records`: copies that ask the members before they fire (rules in `copy_sync`);
- `repair`: keeping R copies while members come and go.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import assert_never

from .actions import Action
from .api import Api
from .config import NodeConfig
from .coordinator import Coordinator, new_task_id
from .core import MembershipLayer, NodeCore
from .dispatcher import Dispatcher
from .events import (
    ApiRequestReceived,
    DeliveryFailed,
    DeliveryResponded,
    Event,
    PeerMessageReceived,
    QueuesReconfigured,
    TimerExpired,
)
from .leave import Leave
from .local_tasks import WAITING, LocalTasks, TaskChanges, is_primary
from .membership import Membership
from .messages import MEMBERSHIP_MESSAGE_TYPES, Envelope
from .pending import Placement
from .queue_listing import list_queues
from .queue_ops import queue_command, queue_stats
from .queues import Queues
from .repair import Repair
from .replica_messages import (
    CancelResult,
    CancelTask,
    Claim,
    Finished,
    Holders,
    HoldersChanged,
    QueryResult,
    QueryTask,
    QueueCommand,
    QueueCommandDone,
    QueuesListed,
    QueuesQuery,
    QueueStats,
    QueueStatsQuery,
    ReplicaMessage,
    RerunResult,
    RerunTask,
    StoreAck,
    StoreCopy,
    TaskCopy,
    Unconfirmed,
)
from .replica_store import ReplicaStore
from .sync_records import SyncRecords
from .task import Task, TaskSpec

__all__ = ["MembershipLayer", "Node", "NodeConfig", "new_task_id"]


class Node:
    def __init__(
        self,
        config: NodeConfig,
        rng: random.Random,
        now_ms: int = 0,
        *,
        membership: MembershipLayer | None = None,
        mono_ms: int | None = None,
    ) -> None:
        mono_ms = now_ms if mono_ms is None else mono_ms
        self.core = NodeCore(
            config=config,
            rng=rng,
            tasks=LocalTasks(retention_ms=config.retention_ms),
            queues=Queues(config.queues_config),
            membership=membership
            or Membership(
                self_id=config.node_id,
                seed_id=config.seed_id or config.node_id,
                config=config.timing,
                rng=rng,
                now_ms=mono_ms,
            ),
        )
        self.core.mono_ms = mono_ms
        self._now_ms = now_ms
        self._epoch_seen = -1
        self.repair = Repair(self.core)
        self.syncs = SyncRecords(self.core, self.repair)
        self.store = ReplicaStore(self.core, self.syncs, self.repair)
        self.dispatcher = Dispatcher(self.core, self.syncs)
        self.coordinator = Coordinator(
            self.core,
            place=self._place,
            store_copy=self._store_copy,
            deliver_locally=self._replica_message,
        )
        self.leave = Leave(self.core, self.repair, self.coordinator)
        self.coordinator.enqueue_refusal = self.leave.refusal
        self.api = Api(self.core, self.coordinator, self.store, self.repair, leave=self.leave)
        self.tasks.on_copy_ended = self._copy_ended
        self.tasks.on_queue_settled = self._queue_settled
        self.queues.pending_copies = self.tasks.pending_copies
        self.tasks.on_placed = self.repair.placed

    # The shared state, readable and replaceable as before the split (the simulator's
    # canaries swap the queues).

    @property
    def config(self) -> NodeConfig:
        return self.core.config

    @property
    def rng(self) -> random.Random:
        return self.core.rng

    @property
    def tasks(self) -> LocalTasks:
        return self.core.tasks

    @property
    def queues(self) -> Queues:
        return self.core.queues

    @queues.setter
    def queues(self, queues: Queues) -> None:
        queues.pending_copies = self.tasks.pending_copies
        self.core.queues = queues

    @property
    def membership(self) -> MembershipLayer:
        return self.core.membership

    @property
    def members(self) -> tuple[str, ...]:
        """The current member list (sorted ids); copies are placed on these."""
        return self.core.members

    # -- the state machine's whole interface ---------------------------------------------------

    def handle(self, event: Event, now_ms: int, *, mono_ms: int | None = None) -> list[Action]:
        """`now_ms`: the wall clock; `mono_ms`: the monotonic clock (None: the same as `now_ms`,
        for drivers with one clock that never steps)."""
        actions: list[Action] = []
        mono_ms = now_ms if mono_ms is None else mono_ms
        if mono_ms - self.core.mono_ms >= self.config.timing.member_timeout_ms:
            # Nothing reached us for a member timeout: this process was paused. It may have
            # been removed meanwhile, whatever stale messages say next. (A stepped wall clock
            # is no pause: hence the monotonic clock.)
            self.syncs.out_of_standing = True
        self._now_ms = now_ms
        self.core.mono_ms = mono_ms
        self._sync_members(now_ms, actions)
        match event:
            case ApiRequestReceived(request_id=request_id, request=request):
                self.api.request(request_id, request, now_ms, actions)
            case DeliveryResponded() | DeliveryFailed():
                self.dispatcher.delivery_finished(event, now_ms, actions)
            case PeerMessageReceived(envelope=envelope):
                self._peer_message(envelope, now_ms, actions)
            case TimerExpired():
                self._timers(now_ms, actions)
            case QueuesReconfigured(config=config):
                self.queues.reconfigure(config, now_ms)
            case _:
                assert_never(event)
        self._after(now_ms, actions)
        return actions

    def next_deadline_ms(self) -> int | None:
        """When to feed `TimerExpired` at the latest, on the MONOTONIC clock (`mono_ms`). The
        wall-clock deadlines (ETAs, retention, queue rates) are converted with the offset between
        the clocks seen at the last event; a shell whose wall clock steps meanwhile must feed an
        event (any) to have them converted afresh."""
        mono_deadlines = [
            self.membership.next_deadline_ms(),
            self.repair.retry_at_ms,
            self.dispatcher.claims_renew_at_ms,
            *self.api.deadlines_ms(),
            *self.syncs.deadlines_ms(),
            *self.leave.deadlines_ms(),
        ]
        wall_deadlines = [self.tasks.store.next_expiry_ms()]
        if not self.leave.holds_deliveries:
            # A node whose copies are handed off starts no delivery: its due copies and queue
            # lines would be due at once, forever.
            wall_deadlines += [
                self.dispatcher.slots_wake_ms,
                self.queues.next_wake_ms(self._now_ms),
                # Due tasks move into their queue's line even when no slot is free (they claim
                # there).
                self.tasks.timers.next_due_ms(),
            ]
        wall_ahead_ms = self._now_ms - self.core.mono_ms
        return min(
            [d for d in mono_deadlines if d is not None]
            + [d - wall_ahead_ms for d in wall_deadlines if d is not None],
            default=None,
        )

    # -- durability (docs/durability.md): the shell writes what changed, and restores it -------

    def keep_changes(self) -> None:
        """From now on, remember what changed for `take_changes` (a durable node)."""
        self.tasks.keeps_changes = True

    def take_changes(self) -> TaskChanges | None:
        """The copies and queues changed since the last call (None: nothing did, or
        `keep_changes` was not called). The shell calls it after every `handle` and holds that
        call's actions until they are on disk."""
        return self.tasks.take_changes()

    def restore(self, tasks: Iterable[Task], paused_queues: Iterable[str], now_ms: int) -> None:
        """Takes back what the last run left on disk, before the first event. A copy that has
        other holders asks them before it fires (they may have delivered or cancelled the task
        meanwhile), as a late copy does; copies past the first always ask."""
        restored = list(tasks)
        for task in restored:
            task.holders = self.core.intern(task.holders)
        self.tasks.restore(restored)
        for task in restored:
            if task.state in WAITING:
                if is_primary(task):
                    self.queues.get(task.queue, now_ms).note_waiting(task)
                if task.holders:
                    self.syncs.ask_when_due(task.queue, task.id)
        for name in paused_queues:
            self.queues.get(name, now_ms).paused = True

    def check_invariants(self) -> None:
        """Raises AssertionError unless what must hold between events holds. The simulator and
        the node tests call it after every event, so it walks only small tables (deliveries in
        flight, copies that sync, acknowledgements awaited, queues), never every task."""
        self.tasks.check_invariants()
        self.queues.check_invariants()
        self.dispatcher.check_invariants()
        self.syncs.check_invariants()
        self.repair.check_invariants()
        self.coordinator.check_invariants(self.api.enqueue_waiting)
        self.leave.check_invariants()

    # -- the seams the simulator's canaries bend ------------------------------------------------

    def _store_copy(self, copy: TaskCopy, now_ms: int) -> tuple[bool, str, Holders]:
        return self.store.store_copy(copy, now_ms)

    def _place(
        self, spec: TaskSpec, request_id: int, index: int, now_ms: int, actions: list[Action]
    ) -> Placement:
        return self.coordinator.place(spec, request_id, index, now_ms, actions)

    def _copy_ended(self, task: Task) -> None:
        self.syncs.forget(task.queue, task.id)
        self.repair.forget(task.queue, task.id)
        self.leave.forget(task.queue, task.id)

    def _queue_settled(self, queue: str) -> None:
        self.queues.note_maybe_idle(queue)

    # -- around every event ----------------------------------------------------------------------

    def _timers(self, now_ms: int, actions: list[Action]) -> None:
        self.tasks.expire(now_ms)
        self.core.send(self.membership.handle_timer(self.core.mono_ms), actions)
        self.api.on_timer(now_ms, actions)
        self.syncs.on_timer(now_ms, actions)
        self.repair.on_timer(now_ms, actions)
        self.dispatcher.on_timer(now_ms, actions)
        self.leave.on_timer(now_ms, actions)

    def _after(self, now_ms: int, actions: list[Action]) -> None:
        self._sync_members(now_ms, actions)
        core = self.core
        core.standing = self.membership.in_standing(core.mono_ms)
        self.syncs.note_standing(was_member=core.is_member or bool(core.members))
        if core.standing:
            self.repair.heal(now_ms, actions)
        self.leave.after(now_ms, actions)
        if not self.leave.holds_deliveries:
            self.dispatcher.start_due_deliveries(now_ms, actions)
        self.syncs.ask_pending(now_ms, actions)

    def _sync_members(self, now_ms: int, actions: list[Action]) -> None:
        core = self.core
        if self.membership.epoch != self._epoch_seen:
            self._epoch_seen = self.membership.epoch
            members = self.membership.members
            core.is_member = core.me in members
            restarted = self.repair.restarted(self.membership.member_list)
            if members != core.members or restarted:
                # Copies on members that left, or that restarted without their disk, must be
                # made again; any member may now be the lowest surviving holder of some task.
                core.members = members
                self.queues.set_members(len(members), now_ms)
                self.repair.forget_holders(restarted)
                self.repair.repair(now_ms, actions)

    # -- peer messages: each to the part whose job it is -----------------------------------------

    def _peer_message(self, envelope: Envelope, now_ms: int, actions: list[Action]) -> None:
        message = envelope.message
        if isinstance(message, MEMBERSHIP_MESSAGE_TYPES):
            self.core.send(self.membership.handle_message(envelope, self.core.mono_ms), actions)
        elif self.membership.admit(envelope, self.core.mono_ms):
            self._replica_message(envelope.sender, message, now_ms, actions)
            if isinstance(message, StoreCopy) and envelope.epoch < self.membership.epoch:
                # Sent under an older member list (delayed, or from a node cut off or paused):
                # the task may have been repaired, finished or cancelled since.
                self.syncs.ask_when_due(message.copy.queue, message.copy.id)

    def _replica_message(
        self, sender: str, message: ReplicaMessage, now_ms: int, actions: list[Action]
    ) -> None:
        core, store, tell = self.core, self.store, self.core.tell
        match message:
            case StoreCopy() if self.leave.active:
                pass  # leaving: it takes no new copy (no answer, as from a node removed)
            case StoreCopy() if not core.is_member or not self.membership.in_standing(core.mono_ms):
                # A restarted process not let in yet (the member list names the process before
                # it), or a node that may have been removed: a copy here would not be one the
                # members count. No answer: the enqueue says 503, and the client retries.
                pass
            case StoreCopy(ref=ref, copy=copy):
                stored, state, existing = self._store_copy(copy, now_ms)
                ack = StoreAck(ref=ref, queue=copy.queue, task_id=copy.id, stored=stored,
                               state=state, holders=existing)  # fmt: skip
                tell(sender, ack, actions)
            case StoreAck():
                self.repair.acknowledged(sender, message.queue, message.task_id)
                self.leave.acknowledged(sender, message)
                settled = self.coordinator.acknowledged(sender, message, self.api.enqueue_waiting)
                if settled is not None:
                    self.api.reply(settled, now_ms, actions)
            case Claim():
                store.claimed(message, now_ms)
            case Finished():
                store.finished_elsewhere(sender, message, now_ms, actions)
            case Unconfirmed(queue=queue, task_id=task_id):
                self.syncs.ask_when_due(queue, task_id)
                if (task := core.tasks.get(queue, task_id)) is not None:
                    self.repair.verify_copies(task, now_ms, actions)
            case HoldersChanged(queue=queue, task_id=task_id, holders=holders):
                store.holders_changed(queue, task_id, holders)
            case CancelTask(ref=ref, queue=queue, task_id=task_id):
                tell(sender, store.cancel_copy(ref, queue, task_id, now_ms), actions)
            case QueryTask(ref=ref, queue=queue, task_id=task_id):
                tell(sender, store.query_result(ref, queue, task_id), actions)
            case QueueStatsQuery():
                tell(sender, queue_stats(core.tasks, core.queues, message, now_ms), actions)
            case QueueCommand():
                tell(sender, queue_command(core.tasks, core.queues, message, now_ms), actions)
            case QueuesQuery():
                queues_max = core.config.limits.active_queues_max
                listed = list_queues(core.tasks, core.queues, message, now_ms, queues_max)
                tell(sender, listed, actions)
            case RerunTask(ref=ref, queue=queue, task_id=task_id):
                tell(sender, store.rerun_copy(ref, queue, task_id, now_ms), actions)
            case QueryResult(ref=ref) if ref < 0:
                self.syncs.take_answer(sender, message, now_ms, actions)
            case CancelResult() | QueryResult() | QueueStats() | QueueCommandDone() | RerunResult():
                self.api.member_answered(sender, message, now_ms, actions)
            case QueuesListed():
                self.api.member_answered(sender, message, now_ms, actions)
            case _:
                assert_never(message)
