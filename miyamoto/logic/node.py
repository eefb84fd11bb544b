"""The Miyamoto node as one sans-I/O state machine.

`Node.handle(event, now_ms)` takes what happened (an API request, a webhook's answer, a peer's
message, a timer) and returns the actions for the shell: responses to send, deliveries to start,
messages to send to peers. `Node.next_deadline_ms()` says when to call it with `TimerExpired` at
the latest.

A node on its own is a cluster of one: the same code places each task's copies on up to R
members (here: itself), so there is one path to test, not two.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Protocol, assert_never

from .actions import Action, SendApiResponse, SendPeerMessage, StartDelivery
from .codec import PeerProtocolError, decode
from .config import NodeConfig
from .copy_sync import Question, Verdict
from .delivery import build_request, is_success, retry_after_ms
from .enqueue_parse import parse_enqueue, validate_queue_name
from .errors import ClientError
from .events import (
    ApiRequestReceived,
    DeliveryFailed,
    DeliveryResponded,
    Event,
    PeerMessageReceived,
    TimerExpired,
)
from .holders import joined, merged
from .http import HttpRequest, HttpResponse, error_response, json_response
from .local_tasks import WAITING, LocalTasks, is_primary
from .membership import ClusterView, Membership
from .messages import MEMBERSHIP_MESSAGE_TYPES, Envelope, Outgoing, PeerMessage
from .pending import PendingCancel, PendingEnqueue, PendingQuery, Placement
from .pending_queue import PendingQueueCommand, PendingQueueInfo, PendingRerun
from .queue_config import effective_deadline_ms, effective_retry
from .queue_ops import listing_query, queue_command, queue_stats, rerun_copy
from .queues import Queues, QueueState
from .render import cluster_json, task_json
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
    QueueCommandKind,
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
from .ring import placement
from .routes import Operation, Route, route
from .task import Task, TaskSpec, TaskState

__all__ = ["Node", "NodeConfig", "new_task_id"]


def new_task_id(rng: random.Random) -> str:
    """A random (version 4) UUID drawn from the injected rng, so simulations replay."""
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


Asked = PendingQuery | PendingCancel | PendingQueueInfo | PendingQueueCommand | PendingRerun
"""A request asked of every member."""
Pending = PendingEnqueue | Asked


class MembershipLayer(Protocol):
    """What the node uses of `Membership` (tests may stand in a fixed member list)."""

    @property
    def members(self) -> tuple[str, ...]: ...
    @property
    def epoch(self) -> int: ...
    def handle_message(self, envelope: Envelope, now_ms: int) -> list[Outgoing]: ...
    def handle_timer(self, now_ms: int) -> list[Outgoing]: ...
    def next_deadline_ms(self) -> int | None: ...
    def stamp(self, message: PeerMessage) -> Envelope: ...
    def admit(self, envelope: Envelope, now_ms: int) -> bool: ...
    def note_malformed(self) -> None: ...
    def unreachable(self) -> tuple[str, ...]: ...
    def in_standing(self, now_ms: int) -> bool: ...
    def view(self) -> ClusterView: ...


class Node:
    def __init__(
        self,
        config: NodeConfig,
        rng: random.Random,
        now_ms: int = 0,
        *,
        membership: MembershipLayer | None = None,
    ) -> None:
        self.config = config
        self.rng = rng
        self.tasks = LocalTasks(retention_ms=config.retention_ms)
        self.queues = Queues(config.queues_config)
        self._now_ms = now_ms
        self.membership: MembershipLayer = membership or Membership(
            self_id=config.node_id,
            seed_id=config.seed_id or config.node_id,
            config=config.timing,
            rng=rng,
            now_ms=now_ms,
        )
        self._now_ms = now_ms
        self._pending: dict[int, Pending] = {}
        """API request id -> the request waiting for peers."""
        self._refs: dict[int, tuple[int, int]] = {}
        """StoreCopy ref -> (API request id, index of the task in that request)."""
        self._next_ref = 1
        self._members_seen: tuple[str, ...] = ()
        self._epoch_seen = -1
        self._is_member = False
        self._out_of_standing = False
        """Set when this node found itself out of standing (cut off or paused past the member
        timeout): every replicated copy it holds is checked with the members once it is back."""
        self._unsynced: set[tuple[str, str]] = set()
        """Copies that may not fire before their sync settles."""
        self._held: dict[tuple[str, str], Task] = {}
        """Unsynced copies that came due: out of the timer heap until their sync settles."""
        self._asking: set[tuple[str, str]] = set()
        """Unsynced copies whose sync is in flight."""
        self._ask_first: set[tuple[str, str]] = set()
        """First copies (index 0) that must ask the members before they fire, as every later
        copy does: the task's other holders may not know them (an enqueue that ended without
        every holder's answer, a copy sent under an older member list)."""
        self._asked: set[tuple[str, str]] = set()
        """Copies whose members answered that they may fire: they do when next due."""
        self._syncs: dict[int, Question] = {}
        """Sync of a held copy with the other members, by (negative) QueryTask ref."""
        self._next_sync_ref = -1
        self._standing = False
        """Whether this node is in standing, computed once per dispatch (in `_after`)."""
        self._repair_at_ms: int | None = None
        self._unconfirmed_copies: dict[tuple[str, str], set[str]] = {}
        """Copies sent by a repair and not yet acknowledged, by (queue, task id)."""
        self._claims_renew_at_ms: int | None = None
        self._holders_cache: dict[Holders, Holders] = {}

    # -- the state machine's whole interface ---------------------------------------------------

    def handle(self, event: Event, now_ms: int) -> list[Action]:
        actions: list[Action] = []
        if now_ms - self._now_ms >= self.config.timing.member_timeout_ms:
            # Nothing reached us for a member timeout: this process was paused (or its clock
            # jumped). It may have been removed meanwhile, whatever stale messages say next.
            self._out_of_standing = True
        self._now_ms = now_ms
        self._sync_members(now_ms, actions)
        match event:
            case ApiRequestReceived(request_id=request_id, request=request):
                response = self._answer(request_id, request, now_ms, actions)
                if response is not None:
                    actions.append(SendApiResponse(request_id=request_id, response=response))
            case DeliveryResponded() | DeliveryFailed():
                self._delivery_finished(event, now_ms, actions)
            case PeerMessageReceived(envelope=envelope):
                self._peer_message(envelope, now_ms, actions)
            case TimerExpired():
                self._timers(now_ms, actions)
            case _:
                assert_never(event)
        self._after(now_ms, actions)
        return actions

    def next_deadline_ms(self) -> int | None:
        deadlines = [
            self.tasks.store.next_expiry_ms(),
            self.membership.next_deadline_ms(),
            self._repair_at_ms,
            self._claims_renew_at_ms,
            self.queues.next_wake_ms(self._now_ms),
        ]
        deadlines.extend(p.deadline_ms for p in self._pending.values())
        deadlines.extend(sync.deadline_ms for sync in self._syncs.values())
        # Due tasks move into their queue's line even when no slot is free (they claim there).
        deadlines.append(self.tasks.timers.next_due_ms())
        return min((d for d in deadlines if d is not None), default=None)

    @property
    def members(self) -> tuple[str, ...]:
        """The current member list (sorted ids); copies are placed on these."""
        return self._members_seen

    # -- around every event ----------------------------------------------------------------------

    def _timers(self, now_ms: int, actions: list[Action]) -> None:
        self.tasks.expire(now_ms)
        self._send(self.membership.handle_timer(now_ms), actions)
        for request_id, pending in list(self._pending.items()):
            if pending.deadline_ms <= now_ms:
                self._reply(request_id, now_ms, actions)
        for ref, sync in list(self._syncs.items()):
            if sync.deadline_ms <= now_ms:
                self._settle_sync(ref, now_ms, actions)
        if self._repair_at_ms is not None and self._repair_at_ms <= now_ms:
            self._repair(now_ms, actions)
        if self._claims_renew_at_ms is not None and self._claims_renew_at_ms <= now_ms:
            self._renew_claims(now_ms, actions)

    def _after(self, now_ms: int, actions: list[Action]) -> None:
        self._sync_members(now_ms, actions)
        self._standing = self.membership.in_standing(now_ms)
        if self._standing:
            if self._out_of_standing:
                self._out_of_standing = False
                self._unsynced.update(
                    (t.queue, t.id)
                    for tasks in self.tasks.store.by_queue()
                    for t in tasks
                    if t.state in WAITING and len(t.holders) > 1
                )
        elif self._is_member or self._members_seen:
            self._out_of_standing = True
        self._start_due_deliveries(now_ms, actions)
        if len(self._asking) < len(self._unsynced) and self._standing:
            self._sync_unsynced(now_ms, actions)

    def _sync_members(self, now_ms: int, actions: list[Action]) -> None:
        if self.membership.epoch != self._epoch_seen:
            self._epoch_seen = self.membership.epoch
            members = self.membership.members
            self._is_member = self.config.node_id in members
            if members != self._members_seen:
                # Copies on members that left must be made again elsewhere; any member may now
                # be the lowest surviving holder of some task.
                self._members_seen = members
                self.queues.set_members(len(members), now_ms)
                self._repair(now_ms, actions)

    def _send(self, outgoing: list[Outgoing], actions: list[Action]) -> None:
        for item in outgoing:
            actions.append(SendPeerMessage(to=item.to, envelope=item.envelope))

    def _tell(self, to: str, message: ReplicaMessage, actions: list[Action]) -> None:
        envelope = self.membership.stamp(message)
        actions.append(SendPeerMessage(to=to, envelope=envelope))

    def _peer_message(self, envelope: Envelope, now_ms: int, actions: list[Action]) -> None:
        message = envelope.message
        if isinstance(message, MEMBERSHIP_MESSAGE_TYPES):
            self._send(self.membership.handle_message(envelope, now_ms), actions)
        elif self.membership.admit(envelope, now_ms):
            self._replica_message(envelope.sender, message, now_ms, actions)
            if isinstance(message, StoreCopy) and envelope.epoch < self.membership.epoch:
                # Sent under an older member list (delayed, or from a node cut off or paused):
                # the task may have been repaired, finished or cancelled since.
                self._ask_before_firing(message.copy.queue, message.copy.id)

    def _peer_batch(self, body: bytes, now_ms: int, actions: list[Action]) -> HttpResponse:
        """`POST /_peer`: envelopes encoded by the codec, one per line."""
        refused: list[str] = []
        accepted = 0
        for line in body.split(b"\n"):
            if not line:
                continue
            try:
                envelope = decode(line)
            except PeerProtocolError as error:
                self.membership.note_malformed()
                refused.append(str(error))
                continue
            accepted += 1
            self._peer_message(envelope, now_ms, actions)
        if refused:
            message = f"refused {len(refused)} of {len(refused) + accepted} messages: {refused[0]}"
            return error_response(400, message)
        return json_response(200, {"status": "ok", "accepted": accepted})

    def _others(self, task: Task) -> list[str]:
        me = self.config.node_id
        return [node for node, _ in task.holders if node != me]

    # -- the API ---------------------------------------------------------------------------------

    def _answer(
        self, request_id: int, request: HttpRequest, now_ms: int, actions: list[Action]
    ) -> HttpResponse | None:
        """The response, or None when the request now waits for peers."""
        try:
            where = route(request.method, request.target)
            return self._operate(request_id, where, request, now_ms, actions)
        except ClientError as error:
            return error_response(error.status, error.message)

    def _operate(
        self,
        request_id: int,
        where: Route,
        request: HttpRequest,
        now_ms: int,
        actions: list[Action],
    ) -> HttpResponse | None:
        if where.operation is Operation.HEALTH:
            return json_response(200, {"status": "ok", "node": self.config.node_id})
        if where.operation is Operation.PEER:
            return self._peer_batch(request.body, now_ms, actions)
        if where.operation is Operation.CLUSTER:
            return json_response(200, cluster_json(self.membership.view(), len(self.tasks)))
        if not self._is_member and where.operation is not Operation.ENQUEUE:
            raise self._not_a_member()  # (an enqueue is parsed first: bad input gets its 4xx)
        queue = validate_queue_name(where.queue, self.config.limits)
        match where.operation:
            case Operation.ENQUEUE:
                return self._enqueue(request_id, queue, request, now_ms, actions)
            case Operation.QUEUE_INFO:
                state, limit = listing_query(where.query, self.config.limits)
                info = PendingQueueInfo(
                    request_id=request_id,
                    deadline_ms=now_ms + self.config.peer_answer_timeout_ms,
                    queue=queue,
                    state=state,
                    limit=limit,
                    rate_per_s=self.queues.config.for_queue(queue).rate_per_s,
                    waiting={self.config.node_id},
                )
                ask = QueueStatsQuery(ref=request_id, queue=queue, state=state, limit=limit)
                info.answer(self.config.node_id, queue_stats(self.tasks, self.queues, ask, now_ms))
                return self._fan_out(info, ask, actions)
            case Operation.QUEUE_COMMAND:
                command = QueueCommand(
                    ref=request_id, queue=queue, command=QueueCommandKind(where.command)
                )
                pending_command = PendingQueueCommand(
                    request_id=request_id,
                    deadline_ms=now_ms + self.config.peer_answer_timeout_ms,
                    queue=queue,
                    command=where.command,
                    waiting={self.config.node_id},
                )
                done = queue_command(self.tasks, self.queues, command, now_ms)
                pending_command.answer(self.config.node_id, done)
                return self._fan_out(pending_command, command, actions)
            case Operation.TASK_RERUN:
                rerun = PendingRerun(
                    request_id=request_id,
                    deadline_ms=now_ms + self.config.peer_answer_timeout_ms,
                    queue=queue,
                    task_id=where.task_id,
                    waiting={self.config.node_id},
                )
                rerun.answer(
                    self.config.node_id,
                    self._rerun_copy(request_id, queue, where.task_id, now_ms),
                )
                ask_rerun = RerunTask(ref=request_id, queue=queue, task_id=where.task_id)
                return self._fan_out(rerun, ask_rerun, actions)
            case Operation.TASK_INFO:
                query = PendingQuery(
                    request_id=request_id,
                    deadline_ms=now_ms + self.config.peer_answer_timeout_ms,
                    queue=queue,
                    task_id=where.task_id,
                    waiting={self.config.node_id},
                )
                query.answer(self.config.node_id, self._query_result(0, queue, where.task_id))
                ask_query = QueryTask(ref=request_id, queue=queue, task_id=where.task_id)
                return self._fan_out(query, ask_query, actions)
            case Operation.TASK_CANCEL:
                cancel = PendingCancel(
                    request_id=request_id,
                    deadline_ms=now_ms + self.config.peer_answer_timeout_ms,
                    queue=queue,
                    task_id=where.task_id,
                    waiting=set(),
                )
                result = self._cancel_copy(0, queue, where.task_id, now_ms, actions)
                cancel.add(self.config.node_id, result.state, result.holders)
                ask_cancel = CancelTask(ref=request_id, queue=queue, task_id=where.task_id)
                return self._fan_out(cancel, ask_cancel, actions)
            case Operation.HEALTH | Operation.PEER | Operation.CLUSTER:
                raise AssertionError("answered above")
            case _:
                assert_never(where.operation)

    def _not_a_member(self) -> ClientError:
        return ClientError(
            503,
            f"this node is not a cluster member yet (joining through {self.config.seed_id}); "
            "send the request to another node or retry shortly",
        )

    def _fan_out(
        self, pending: Asked, message: ReplicaMessage, actions: list[Action]
    ) -> HttpResponse | None:
        """Asks every other member (this node has answered already); answers at once when
        there is no other member."""
        pending.waiting.discard(self.config.node_id)
        others = [m for m in self.members if m != self.config.node_id]
        if not others:
            return pending.response()
        pending.waiting.update(others)
        self._pending[pending.request_id] = pending
        for member in others:
            self._tell(member, message, actions)
        return None

    def _reply(self, request_id: int, now_ms: int, actions: list[Action]) -> None:
        pending = self._pending.pop(request_id)
        if isinstance(pending, PendingEnqueue):
            self._reconcile(pending, now_ms, actions)
            response = pending.response(self.config.limits.tasks_max)
            moved = pending.epoch != self.membership.epoch
            for placement_ in pending.placements:
                if (
                    isinstance(placement_, Placement)
                    and placement_.existing_state is None
                    and (placement_.waiting or moved)
                ):
                    # A silent holder may have had the task already (its answer lost), or a
                    # repair made while the copies travelled may not list them: the copies
                    # stored may be ones the task's holders never hear of.
                    self._unconfirm(placement_, now_ms, actions)
            if not pending.settled():
                # Out of time: forget the acknowledgements still awaited, or every lost one
                # would keep its entry forever.
                self._refs = {r: w for r, w in self._refs.items() if w[0] != request_id}
        else:
            response = pending.response()
        actions.append(SendApiResponse(request_id=request_id, response=response))

    def _unconfirm(self, placement_: Placement, now_ms: int, actions: list[Action]) -> None:
        message = Unconfirmed(queue=placement_.queue, task_id=placement_.task_id)
        # The silent holders too: their answer may be what was lost, not their copy.
        for node in [*placement_.stored_on, *sorted(placement_.waiting)]:
            if node == self.config.node_id:
                self._replica_message(node, message, now_ms, actions)
            else:
                self._tell(node, message, actions)

    # -- enqueue: place R copies and answer when they are stored ------------------------------

    def _enqueue(
        self,
        request_id: int,
        queue: str,
        request: HttpRequest,
        now_ms: int,
        actions: list[Action],
    ) -> HttpResponse | None:
        queues_max = self.config.limits.active_queues_max
        if not self.queues.room_for(queue, queues_max):
            raise ClientError(507, f"this node has {queues_max} active queues, its limit")
        parsed = parse_enqueue(
            queue, request.header("content-type"), request.body, now_ms, self.config.limits
        )
        if not self._is_member:
            raise self._not_a_member()
        specs = [parsed] if isinstance(parsed, TaskSpec) else parsed
        pending = PendingEnqueue(
            request_id=request_id,
            deadline_ms=now_ms + self.config.placement_timeout_ms,
            placements=[],
            batch=not isinstance(parsed, TaskSpec),
            epoch=self.membership.epoch,
        )
        for index, spec in enumerate(specs):
            if isinstance(spec, ClientError):
                pending.placements.append((spec.status, {"status": "error",
                                                         "error": spec.message}))
            else:
                pending.placements.append(self._place(spec, request_id, index, now_ms, actions))
        if pending.settled():
            self._reconcile(pending, now_ms, actions)
            return pending.response(self.config.limits.tasks_max)
        self._pending[request_id] = pending
        return None

    def _place(
        self, spec: TaskSpec, request_id: int, index: int, now_ms: int, actions: list[Action]
    ) -> Placement:
        task_id = spec.client_id or new_task_id(self.rng)
        nodes = self._placement(f"{spec.queue}/{task_id}")[: self.config.replicas]
        holders = self._intern(tuple((node, k) for k, node in enumerate(nodes)))
        copy = TaskCopy(
            queue=spec.queue,
            id=task_id,
            method=spec.method,
            url=spec.url,
            headers=spec.headers,
            body=spec.body,
            eta_ms=spec.eta_ms,
            created_ms=now_ms,
            holders=holders,
            retry=spec.retry,
            client_id=spec.client_id is not None,
        )
        me = self.config.node_id
        known = self.tasks.get(spec.queue, task_id) if spec.client_id else None
        if known is not None and known.state.is_final:
            # This node saw the task finish: the repeat is a duplicate. Copies placed now
            # would be fresh ones, due at once, on holders the finished notices never reached.
            result = Placement(
                queue=spec.queue, task_id=task_id, eta_ms=spec.eta_ms, waiting={me}, copies=1
            )
            result.acknowledge(me, stored=False, state=known.state.value, holders=known.holders)
            return result
        result = Placement(
            queue=spec.queue,
            task_id=task_id,
            eta_ms=spec.eta_ms,
            waiting=set(nodes),
            copies=len(nodes),
        )
        for node in nodes:
            if node == me:
                stored, state, existing = self._store_copy(copy, now_ms)
                result.acknowledge(node, stored=stored, state=state, holders=existing)
            else:
                ref = self._next_ref
                self._next_ref += 1
                self._refs[ref] = (request_id, index)
                self._tell(node, StoreCopy(ref=ref, copy=copy), actions)
        return result

    def _placement(self, key: str) -> list[str]:
        """The members in the order `key` prefers them, without those the leader reports
        unreachable (a copy sent there would hold the enqueue up until the placement timeout)."""
        unreachable = self.membership.unreachable()
        return [m for m in placement(key, self.members) if m not in unreachable]

    def _store_copy(self, copy: TaskCopy, now_ms: int) -> tuple[bool, str, Holders]:
        """Keeps `copy` unless this node already has (or remembers) the task.

        Returns whether it stored it, the state of its copy and, when it had one already, that
        copy's holders."""
        existing = self.tasks.get(copy.queue, copy.id)
        if existing is not None:
            return False, existing.state.value, existing.holders
        if len(self.tasks) >= self.config.limits.tasks_max:
            return False, "full", ()
        me = self.config.node_id
        copy_index = next((k for node, k in copy.holders if node == me), 0)
        task = Task(
            id=copy.id,
            queue=copy.queue,
            method=copy.method,
            url=copy.url,
            headers=copy.headers,
            body=copy.body,
            eta_ms=copy.eta_ms,
            created_ms=copy.created_ms,
            retry=copy.retry,
            holders=self._intern(copy.holders),
            copy_index=copy_index,
        )
        task.attempts = copy.attempts
        task.executions = copy.executions
        task.due_ms = self._copy_due_ms(copy.eta_ms, copy.created_ms, copy_index)
        if copy.lease_ms:
            task.due_ms = max(task.due_ms, now_ms + copy.lease_ms)
        self.tasks.add(task)
        if is_primary(task):
            self.queues.get(task.queue, now_ms).note_waiting(task)
        soon = task.due_ms <= now_ms + self.config.placement_timeout_ms
        if copy.client_id and soon and len(task.holders) > 1:
            # Due before the enqueue that stored it may settle, and this may be a repeat of an
            # enqueue whose task lives (or was delivered, or cancelled) on the other holders:
            # they tell the coordinator, and it tells us, only after we would have fired.
            self._ask_before_firing(task.queue, task.id)
        return True, task.state.value, ()

    def _reconcile(self, pending: PendingEnqueue, now_ms: int, actions: list[Action]) -> None:
        """An id that some holders had already and others stored afresh (the member list moved
        since the first enqueue, or two enqueues raced): make the fresh copies part of the one
        task, so that claims and finished notices reach every copy."""
        for placement_ in pending.placements:
            if not isinstance(placement_, Placement):
                continue
            # A holder that did not answer may have stored a fresh copy (its answer lost).
            maybe_stored = [*placement_.stored_on, *sorted(placement_.waiting)]
            if placement_.existing_state is None or not maybe_stored:
                continue
            old = placement_.existing_holders
            old_nodes = {n for n, _ in old}
            fresh = [n for n in maybe_stored if n not in old_nodes]
            next_index = max((k for _, k in old), default=-1) + 1
            holders = old + tuple((n, next_index + i) for i, n in enumerate(fresh))
            message: ReplicaMessage = HoldersChanged(
                queue=placement_.queue, task_id=placement_.task_id, holders=holders
            )
            if placement_.existing_state == TaskState.CANCELLED.value:
                # A cancel holds for the copies that confirmed it, not for the task: a cancel
                # that raced a claim may have left a copy alive. Only the fresh copies learn
                # of it.
                holders = tuple((n, k) for n, k in holders if n not in old_nodes)
            if TaskState(placement_.existing_state).is_final:
                message = Finished(
                    queue=placement_.queue,
                    task_id=placement_.task_id,
                    state=placement_.existing_state,
                    attempts=0,
                    executions=0,
                    last_status=None,
                    last_error=None,
                    excerpt=None,
                )
            for node, _ in holders:
                if node == self.config.node_id:
                    self._replica_message(node, message, now_ms, actions)
                else:
                    self._tell(node, message, actions)

    def _set_holders(self, task: Task, holders: Holders) -> None:
        """Adopts a new holder list; a copy whose index moved is due no earlier than its index
        says, and a waiting copy that learns the task already finished elsewhere waits on."""
        if task.state.is_final or holders == task.holders:
            return
        old_index = task.copy_index
        holders, index = merged(
            task.holders, holders, members=set(self.members), me=self.config.node_id,
            my_index=old_index,
        )
        if holders == task.holders:
            return
        self.tasks.set_holders(task, self._intern(holders), index)
        if index != old_index:
            due_ms = self._copy_due_ms(task.eta_ms, task.created_ms, index)
            if task.state in WAITING and due_ms > task.due_ms:
                self.tasks.reschedule(task, due_ms, task.state)

    def _copy_due_ms(self, eta_ms: int, created_ms: int, index: int) -> int:
        """Copy `index` waits `index` replica delays after the ETA, or after the enqueue when
        the ETA was already past then: otherwise every copy of a task whose ETA lies more
        than a replica delay in the past would fire the moment it is stored, all at once,
        before any claim could arrive."""
        start_ms = max(eta_ms, created_ms)
        if index == 0:
            return start_ms  # the same int object as the ETA: 36 bytes less per task
        return start_ms + index * self.config.replica_delay_ms

    def _intern(self, holders: Holders) -> Holders:
        """One shared tuple per distinct holder list: millions of tasks share a handful."""
        if len(self._holders_cache) > 10_000:
            self._holders_cache.clear()
        return self._holders_cache.setdefault(holders, holders)

    # -- deliveries ------------------------------------------------------------------------------

    def _start_due_deliveries(self, now_ms: int, actions: list[Action]) -> None:
        """Starts what is due and allowed, oldest first: the queues' waiting lines, then the
        tasks whose time has come. A due task that may not start yet (its queue's rate or
        concurrency, or the node's in-flight cap) waits in its queue's line, and claims its
        task so that the other copies do not fire meanwhile."""
        slots = self.config.limits.deliveries_in_flight_max - len(self.tasks.in_flight)
        queues = self.queues
        for name in sorted(queues.blocked):  # sorted: the same order on every run
            queue = queues.get(name, now_ms)
            while queue.ready and slots > 0:
                task = queue.ready[0]
                if task.state not in WAITING or task.due_ms > now_ms:
                    queue.ready.popleft()  # cancelled, finished or claimed meanwhile
                    continue
                if not queue.admits(now_ms):
                    break
                queue.ready.popleft()
                if not self._must_hold(task, due=False):
                    slots -= self._start(task, queue, now_ms, actions)
            if not queue.ready:
                queues.blocked.discard(name)
        while (due := self.tasks.timers.pop_due(now_ms)) is not None:
            if self._must_hold(due, due=True):
                continue
            queue = queues.get(due.queue, now_ms)
            if slots <= 0 or queue.ready or not queue.admits(now_ms):
                queue.ready.append(due)  # keep the queue's order: wait behind the others
                queues.blocked.add(queue.name)
                if len(due.holders) > 1:
                    self._claim(due, self.config.claim_lease_ms, actions)
                    self._arm_claim_renewal(now_ms)
                continue
            slots -= self._start(due, queue, now_ms, actions)

    def _must_hold(self, task: Task, *, due: bool) -> bool:
        """Whether a replicated copy must wait for a sync (its question to the members):
        - a copy that comes `due` and has never been attempted here, unless it is the first
          copy that the other holders know of: the task may have finished on a holder whose
          finished notice was lost, or live on holders that do not know this copy;
        - any copy while this node is out of standing, or was since its last sync: it may
          have been removed and the task repaired elsewhere.
        Firing then could deliver the task twice. A copy already in its queue's line (not
        `due`) asked when it came due."""
        if len(task.holders) <= 1:
            return False
        key = (task.queue, task.id)
        if due and task.state is TaskState.SCHEDULED and key not in self._unsynced:
            if key in self._asked:
                self._asked.discard(key)
            elif task.copy_index > 0 or key in self._ask_first or not self._where_preferred(task):
                self._ask_first.discard(key)
                self._unsynced.add(key)
        if self._standing and key not in self._unsynced:
            return False
        self._unsynced.add(key)
        self._held[key] = task
        return True

    def _where_preferred(self, task: Task) -> bool:
        """Whether the task's copies include every member its key prefers now. If not, they
        were placed under another member list (members joined since) or by a coordinator that
        skipped members it took for unreachable; an enqueue of the same id through another
        coordinator then places fresh copies on the preferred members, which do not know
        ours and would fire too."""
        wanted = min(self.config.replicas, len(self.members))
        preferred = placement(f"{task.queue}/{task.id}", self.members)[:wanted]
        nodes = {node for node, _ in task.holders}
        return all(member in nodes for member in preferred)

    def _start(self, task: Task, queue: QueueState, now_ms: int, actions: list[Action]) -> int:
        """Starts one delivery of `task` (1), or puts it off while its destination asked us to
        wait (0)."""
        limits = self.config.limits
        request = build_request(task, user_agent=self.config.user_agent, limits=limits)
        destination = (request.host, request.port)
        hold_ms = self.queues.destination_hold_ms.get(destination)
        if hold_ms is not None:
            if hold_ms > now_ms:
                self.tasks.reschedule(task, hold_ms, task.state)
                if len(task.holders) > 1:
                    self._claim(task, hold_ms - now_ms + self.config.claim_lease_ms, actions)
                return 0
            del self.queues.destination_hold_ms[destination]
        delivery_id = self.tasks.start(task, now_ms)
        queue.in_flight += 1
        queue.rate.add(now_ms)
        actions.append(
            StartDelivery(
                delivery_id=delivery_id,
                request=request,
                timeout_ms=effective_deadline_ms(queue.config, task.retry),
                excerpt_bytes_max=limits.response_excerpt_bytes_max,
            )
        )
        if len(task.holders) > 1:
            self._claim(task, self.config.claim_lease_ms, actions)
            self._arm_claim_renewal(now_ms)
        return 1

    def _arm_claim_renewal(self, now_ms: int) -> None:
        if self._claims_renew_at_ms is None:
            self._claims_renew_at_ms = now_ms + self.config.claim_lease_ms // 3

    def _end_flight(self, delivery_id: int) -> Task | None:
        task = self.tasks.in_flight.pop(delivery_id, None)
        if task is not None:
            queue = self.queues.known(task.queue)
            if queue is not None and queue.in_flight > 0:
                queue.in_flight -= 1
        return task

    def _claim(self, task: Task, lease_ms: int, actions: list[Action]) -> None:
        claim = Claim(
            queue=task.queue,
            task_id=task.id,
            lease_ms=lease_ms,
            attempts=task.attempts,
            executions=task.executions,
            delivering=task.state is TaskState.DELIVERING,
        )
        for node in self._others(task):
            self._tell(node, claim, actions)

    def _renew_claims(self, now_ms: int, actions: list[Action]) -> None:
        """Holders keep their copies back while ours is in flight or waits its turn in a
        queue's line: renew the lease."""
        ours = itertools.chain(self.tasks.in_flight.values(), self.queues.waiting())
        replicated = [t for t in ours if len(t.holders) > 1 and not t.state.is_final]
        for task in replicated:
            self._claim(task, self.config.claim_lease_ms, actions)
        self._claims_renew_at_ms = (
            now_ms + self.config.claim_lease_ms // 3 if replicated else None
        )

    def _delivery_finished(
        self, event: DeliveryResponded | DeliveryFailed, now_ms: int, actions: list[Action]
    ) -> None:
        task = self._end_flight(event.delivery_id)
        if task is None or self.tasks.get(task.queue, task.id) is not task:
            return  # not ours, or purged while in flight: nothing to record
        if task.state is not TaskState.DELIVERING:
            return  # another holder finished the task while our copy was in flight
        task.attempts += 1
        wait_ms: int | None = None
        success = False
        if isinstance(event, DeliveryResponded):
            task.executions += 1
            task.last_status = event.status
            task.last_error = None
            task.last_response_excerpt = event.body_excerpt
            success = is_success(event.status)
            if not success:
                wait_ms = retry_after_ms(event.status, event.headers, now_ms)
        else:
            task.last_status = None
            detail = f": {event.detail}" if event.detail else ""
            task.last_error = f"{event.error.value}{detail}"
            task.last_response_excerpt = None
        if success:
            self.tasks.finish(task, TaskState.SUCCEEDED, now_ms)
            self._announce_finished(task, self._others(task), actions)
            return
        policy = effective_retry(self.queues.get(task.queue, now_ms).config, task.retry)
        retries_done = task.attempts - 1
        assert task.first_attempt_ms is not None
        if not policy.may_retry(retries_done, task.first_attempt_ms, now_ms):
            self.tasks.finish(task, TaskState.FAILED, now_ms)
            self._announce_finished(task, self._others(task), actions)
            return
        # A Retry-After is honoured up to how far ahead a task may be scheduled at all, and
        # holds back every task for that destination, not just this one.
        asked_ms = min(wait_ms or 0, self.config.limits.schedule_ahead_ms_max)
        if asked_ms:
            destination = build_request(
                task, user_agent=self.config.user_agent, limits=self.config.limits
            )
            key = (destination.host, destination.port)
            holds = self.queues.destination_hold_ms
            holds[key] = max(holds.get(key, 0), now_ms + asked_ms)
        delay_ms = max(policy.backoff_ms(retries_done), asked_ms)
        self.tasks.reschedule(task, now_ms + delay_ms, TaskState.RETRYING)
        if len(task.holders) > 1:
            self._claim(task, delay_ms + self.config.claim_lease_ms, actions)

    def _announce_finished(self, task: Task, to: list[str], actions: list[Action]) -> None:
        for node in to:
            message = Finished(
                queue=task.queue,
                task_id=task.id,
                state=task.state.value,
                attempts=task.attempts,
                executions=task.executions,
                last_status=task.last_status,
                last_error=task.last_error,
                excerpt=task.last_response_excerpt,
            )
            self._tell(node, message, actions)

    # -- messages from the other holders ---------------------------------------------------------

    def _replica_message(
        self, sender: str, message: ReplicaMessage, now_ms: int, actions: list[Action]
    ) -> None:
        match message:
            case StoreCopy() if not self._is_member or not self.membership.in_standing(now_ms):
                # A restarted process not let in yet (the member list names the process before
                # it), or a node that may have been removed: a copy here would not be one the
                # members count. No answer: the enqueue says 503, and the client retries.
                pass
            case StoreCopy(ref=ref, copy=copy):
                stored, state, existing = self._store_copy(copy, now_ms)
                ack = StoreAck(ref=ref, queue=copy.queue, task_id=copy.id, stored=stored,
                               state=state, holders=existing)
                self._tell(sender, ack, actions)
            case StoreAck():
                self._store_acknowledged(sender, message, now_ms, actions)
            case Claim():
                self._claimed(message, now_ms)
            case Finished():
                self._finished_elsewhere(sender, message, now_ms, actions)
            case Unconfirmed(queue=queue, task_id=task_id):
                self._ask_before_firing(queue, task_id)
            case HoldersChanged(queue=queue, task_id=task_id, holders=holders):
                task = self.tasks.get(queue, task_id)
                if task is not None:
                    self._set_holders(task, holders)
            case CancelTask(ref=ref, queue=queue, task_id=task_id):
                self._tell(sender, self._cancel_copy(ref, queue, task_id, now_ms, actions),
                           actions)
            case CancelResult(ref=ref):
                pending = self._pending.get(ref)
                if isinstance(pending, PendingCancel):
                    pending.answer(sender, message)
                    if pending.settled():
                        self._reply(ref, now_ms, actions)
            case QueryTask(ref=ref, queue=queue, task_id=task_id):
                self._tell(sender, self._query_result(ref, queue, task_id), actions)
            case QueueStatsQuery():
                self._tell(sender, queue_stats(self.tasks, self.queues, message, now_ms), actions)
            case QueueCommand():
                self._tell(sender, queue_command(self.tasks, self.queues, message, now_ms),
                           actions)
            case RerunTask(ref=ref, queue=queue, task_id=task_id):
                self._tell(sender, self._rerun_copy(ref, queue, task_id, now_ms), actions)
            case QueueStats() | QueueCommandDone() | RerunResult():
                self._answered(sender, message, now_ms, actions)
            case QueryResult(ref=ref) if ref < 0:
                self._sync_answer(sender, message, now_ms, actions)
            case QueryResult(ref=ref):
                pending = self._pending.get(ref)
                if isinstance(pending, PendingQuery):
                    pending.answer(sender, message)
                    if not pending.waiting:
                        self._reply(ref, now_ms, actions)
            case _:
                assert_never(message)

    def _answered(
        self,
        sender: str,
        message: QueueStats | QueueCommandDone | RerunResult,
        now_ms: int,
        actions: list[Action],
    ) -> None:
        pending = self._pending.get(message.ref)
        match pending, message:
            case PendingQueueInfo(), QueueStats():
                pending.answer(sender, message)
            case PendingQueueCommand(), QueueCommandDone():
                pending.answer(sender, message)
            case PendingRerun(), RerunResult():
                pending.answer(sender, message)
            case _:
                return  # late, duplicated, or not for a request of this kind
        if not pending.waiting:
            self._reply(message.ref, now_ms, actions)

    def _rerun_copy(self, ref: int, queue: str, task_id: str, now_ms: int) -> RerunResult:
        task = self.tasks.get(queue, task_id)
        index = 0 if task is None else task.copy_index
        due_ms = now_ms + index * self.config.replica_delay_ms
        return rerun_copy(self.tasks, self.queues, ref, queue, task_id, due_ms)

    def _store_acknowledged(
        self, sender: str, ack: StoreAck, now_ms: int, actions: list[Action]
    ) -> None:
        unconfirmed = self._unconfirmed_copies.get((ack.queue, ack.task_id))
        if unconfirmed is not None:
            unconfirmed.discard(sender)
            if not unconfirmed:
                del self._unconfirmed_copies[(ack.queue, ack.task_id)]
        where = self._refs.pop(ack.ref, None)
        if where is None:
            return
        request_id, index = where
        pending = self._pending.get(request_id)
        if not isinstance(pending, PendingEnqueue):
            return
        placement_ = pending.placements[index]
        if isinstance(placement_, Placement):
            placement_.acknowledge(
                sender, stored=ack.stored, state=ack.state, holders=ack.holders
            )
        if pending.settled():
            self._reply(request_id, now_ms, actions)

    def _claimed(self, claim: Claim, now_ms: int) -> None:
        task = self.tasks.get(claim.queue, claim.task_id)
        if task is None:
            return
        task.attempts = max(task.attempts, claim.attempts)
        task.executions = max(task.executions, claim.executions)
        # Copies stay staggered by their index after the lease, so that if the claimant dies
        # they do not all fire at once.
        # Only an attempt in flight makes our copy refuse a cancel: a task that waits for its
        # retry (or its turn) is cancelled on every copy, the claimant's included.
        task.claimed_until_ms = now_ms + claim.lease_ms if claim.delivering else None
        hold_ms = now_ms + claim.lease_ms + task.copy_index * self.config.replica_delay_ms
        if task.state in WAITING and task.due_ms < hold_ms:
            self.tasks.reschedule(task, hold_ms, task.state)

    def _finished_elsewhere(
        self, sender: str, message: Finished, now_ms: int, actions: list[Action]
    ) -> None:
        task = self.tasks.get(message.queue, message.task_id)
        if task is None or task.state.is_final:
            return
        task.attempts = max(task.attempts, message.attempts)
        task.executions = max(task.executions, message.executions)
        task.last_status = message.last_status
        task.last_error = message.last_error
        task.last_response_excerpt = message.excerpt
        # If our own attempt is in flight, it keeps its slot (the request is still open at the
        # destination, and the queue's concurrency cap counts it) until its answer comes; the
        # answer then changes nothing.
        self.tasks.finish(task, TaskState(message.state), now_ms)
        # Holders the sender may not know of (added by a repair it missed) hear it from us.
        forward = [n for n in self._others(task) if n != sender]
        self._announce_finished(task, forward, actions)

    def _cancel_copy(
        self, ref: int, queue: str, task_id: str, now_ms: int, actions: list[Action]
    ) -> CancelResult:
        task = self.tasks.get(queue, task_id)
        if task is None:
            return CancelResult(ref=ref, state=None, holders=())
        if task.state is TaskState.FAILED:
            self.tasks.drop(task)  # deleting a dead letter
            return CancelResult(ref=ref, state="deleted", holders=task.holders)
        claimed = task.claimed_until_ms is not None and task.claimed_until_ms > now_ms
        if claimed and task.state in WAITING:
            # Another holder is delivering it (or has it next in line): cancelling only our
            # copy would leave the task half cancelled. Say so, and change nothing.
            return CancelResult(ref=ref, state=TaskState.DELIVERING.value, holders=task.holders)
        if task.state in WAITING:
            self.tasks.finish(task, TaskState.CANCELLED, now_ms)
        return CancelResult(ref=ref, state=task.state.value, holders=task.holders)

    def _query_result(self, ref: int, queue: str, task_id: str) -> QueryResult:
        task = self.tasks.get(queue, task_id)
        return QueryResult(ref=ref, task_json=None if task is None else json.dumps(task_json(task)))

    # -- copies that ask the members before they fire ------------------------------------------

    def _ask_before_firing(self, queue: str, task_id: str) -> None:
        task = self.tasks.get(queue, task_id)
        if task is not None and (task.state is not TaskState.SCHEDULED or task.copy_index > 0):
            return  # attempted here already, or a later copy (those always ask)
        # No copy here (yet): its StoreCopy was lost or is late. A late one, or the fresh copy
        # a retry of the enqueue stores here, must ask too: another holder may have the task,
        # or have delivered it already.
        if len(self._ask_first) >= self.config.limits.tasks_max:
            # Entries of tasks that finished before they came due; rare, so swept rarely.
            self._ask_first = {
                key for key in self._ask_first
                if (t := self.tasks.get(*key)) is not None and t.state is TaskState.SCHEDULED
            }
        self._ask_first.add((queue, task_id))

    def _sync_unsynced(self, now_ms: int, actions: list[Action]) -> None:
        """In standing: ask the members about each unsynced copy before it may fire. Members
        the leader reports unreachable are not waited for (a dead holder is what a later copy
        asks about most often)."""
        unreachable = self.membership.unreachable()
        others = [m for m in self.members if m != self.config.node_id and m not in unreachable]
        for queue, task_id in sorted(self._unsynced - self._asking):
            task = self.tasks.get(queue, task_id)
            if task is None or task.state not in WAITING:
                self._unsynced.discard((queue, task_id))
                self._held.pop((queue, task_id), None)
                continue
            ref = self._next_sync_ref
            self._next_sync_ref -= 1
            self._syncs[ref] = Question(
                task=task,
                deadline_ms=now_ms + self.config.peer_answer_timeout_ms,
                waiting=set(others),
            )
            self._asking.add((queue, task_id))
            for member in others:
                self._tell(member, QueryTask(ref=ref, queue=queue, task_id=task_id), actions)
            if not others:
                self._settle_sync(ref, now_ms, actions)

    def _sync_answer(
        self, sender: str, result: QueryResult, now_ms: int, actions: list[Action]
    ) -> None:
        sync = self._syncs.get(result.ref)
        if sync is None or sender not in sync.waiting:
            return
        view = None if result.task_json is None else json.loads(result.task_json)
        sync.take(sender, view, self.config.node_id)
        if sync.decided():
            self._settle_sync(result.ref, now_ms, actions)

    def _settle_sync(self, ref: int, now_ms: int, actions: list[Action]) -> None:
        sync = self._syncs.pop(ref)
        task = sync.task
        key = (task.queue, task.id)
        self._asking.discard(key)
        if sync.must_ask_again():
            return  # it stays unsynced and is asked again
        self._unsynced.discard(key)
        due = self._held.pop(key, None) is not None
        if self.tasks.get(task.queue, task.id) is not task or task.state not in WAITING:
            return  # a finished notice or a cancel reached us meanwhile
        preferred = not sync.foreign_holders or self._where_preferred(task)
        verdict = sync.verdict(due=due, preferred=preferred)
        match verdict:
            case Verdict.FINISH:
                self.tasks.finish(task, TaskState(sync.finals[0]), now_ms)
            case Verdict.WAIT_TAKEN:
                turn_ms = task.copy_index * self.config.replica_delay_ms
                self._ask_again(task, now_ms + self.config.claim_lease_ms + turn_ms)
            case Verdict.WAIT_AHEAD:
                self._ask_again(task, now_ms + sync.ahead * self.config.replica_delay_ms)
            case Verdict.JOIN_FOREIGN:
                self._join(task, sync.foreign_holders, due, now_ms, actions)
            case Verdict.JOIN:
                self._join(task, sync.their_holders, due, now_ms, actions)
            case Verdict.FIRE | Verdict.FIRE_AND_REPAIR:
                self._asked.add(key)
                self.tasks.reschedule(task, max(task.due_ms, now_ms), task.state)
                if verdict is Verdict.FIRE_AND_REPAIR:
                    self._remake_copies(task, sync.without_copy, now_ms, actions)
            case Verdict.KEEP:
                pass
            case _:
                assert_never(verdict)

    def _join(
        self, task: Task, others: Holders, due: bool, now_ms: int, actions: list[Action]
    ) -> None:
        """Adds our copy to the holder list `others`, after them, and tells them."""
        holders = joined(others, self.config.node_id)
        self._set_holders(task, holders)
        for node, _ in holders:
            if node != self.config.node_id:
                message = HoldersChanged(queue=task.queue, task_id=task.id, holders=holders)
                self._tell(node, message, actions)
        if due:
            self.tasks.reschedule(task, max(task.due_ms, now_ms), task.state)

    def _ask_again(self, task: Task, at_ms: int) -> None:
        self._ask_first.add((task.queue, task.id))
        self.tasks.reschedule(task, max(task.due_ms, at_ms), task.state)

    # -- repair: keep R copies while members come and go ------------------------------------------

    def _repair(self, now_ms: int, actions: list[Action]) -> None:
        """Every pending task whose lowest live holder is this node gets back to R copies."""
        self._repair_at_ms = None
        members = set(self.members)
        me = self.config.node_id
        wanted = min(self.config.replicas, len(members))
        for tasks in list(self.tasks.store.by_queue()):
            for task in list(tasks):
                if task.state.is_final or not task.holders:
                    continue
                live = [(n, k) for n, k in task.holders if n in members]
                if not live or min(live, key=lambda h: h[1])[0] != me:
                    continue
                key = (task.queue, task.id)
                if len(live) < wanted:
                    self._add_copies(task, live, wanted, now_ms, actions)
                elif key in self._unconfirmed_copies:
                    for node in sorted(self._unconfirmed_copies[key]):
                        self._tell(node, StoreCopy(ref=0, copy=self._copy_of(task, now_ms)),
                                   actions)
        if self._unconfirmed_copies:
            self._repair_at_ms = now_ms + self.config.repair_retry_ms

    def _remake_copies(
        self, task: Task, without_copy: set[str], now_ms: int, actions: list[Action]
    ) -> None:
        """Makes the task's other copies again: on the members it prefers, after ours in line.
        A holder that answered it has no copy is no holder."""
        members = set(self.members)
        if self.config.node_id not in members:
            return  # (a node that is no member makes no copies: the members repair)
        live = [(n, k) for n, k in task.holders if n in members and n not in without_copy]
        wanted = min(self.config.replicas, len(members))
        if len(live) < wanted:
            self._add_copies(task, live, wanted, now_ms, actions)
        if self._unconfirmed_copies and self._repair_at_ms is None:
            self._repair_at_ms = now_ms + self.config.repair_retry_ms

    def _add_copies(
        self,
        task: Task,
        live: list[tuple[str, int]],
        wanted: int,
        now_ms: int,
        actions: list[Action],
    ) -> None:
        live_nodes = {n for n, _ in live}
        candidates = [
            m for m in self._placement(f"{task.queue}/{task.id}") if m not in live_nodes
        ]
        next_index = max(k for _, k in task.holders) + 1
        added = [(node, next_index + i) for i, node in enumerate(candidates[: wanted - len(live)])]
        self.tasks.set_holders(task, self._intern(tuple(live + added)), task.copy_index)
        me = self.config.node_id
        for node, _ in live:
            if node != me:
                message = HoldersChanged(queue=task.queue, task_id=task.id, holders=task.holders)
                self._tell(node, message, actions)
        if added:
            self._unconfirmed_copies[(task.queue, task.id)] = {n for n, _ in added}
        for node, _ in added:
            self._tell(node, StoreCopy(ref=0, copy=self._copy_of(task, now_ms)), actions)

    def _copy_of(self, task: Task, now_ms: int) -> TaskCopy:
        lease_ms = self.config.claim_lease_ms if task.state is TaskState.DELIVERING else 0
        if task.state is TaskState.RETRYING:
            lease_ms = max(0, task.due_ms - now_ms) + self.config.claim_lease_ms
        return TaskCopy(
            queue=task.queue,
            id=task.id,
            method=task.method,
            url=task.url,
            headers=task.headers,
            body=task.body,
            eta_ms=task.eta_ms,
            created_ms=task.created_ms,
            holders=task.holders,
            attempts=task.attempts,
            executions=task.executions,
            retry=task.retry,
            lease_ms=lease_ms,
        )
