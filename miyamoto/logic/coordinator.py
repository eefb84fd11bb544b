"""The coordinator of an enqueue: places each task's R copies, waits for their holders'
acknowledgements, and when the enqueue ends makes the copies one task (reconcile) or warns
the holders that their copy may be one the others never heard of (unconfirm).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .actions import Action
from .core import NodeCore
from .destinations import denied_literal
from .enqueue_parse import parse_enqueue_with_warnings
from .enqueue_warnings import narrowing_warnings
from .errors import ClientError
from .http import HttpRequest, HttpResponse
from .pending import PendingEnqueue, Placement
from .replica_messages import (
    Finished,
    Holders,
    HoldersChanged,
    ReplicaMessage,
    StoreAck,
    StoreCopy,
    TaskCopy,
    Unconfirmed,
)
from .task import TaskSpec, TaskState
from .urls import parse_webhook_url

StoreCopyFn = Callable[[TaskCopy, int], tuple[bool, str, Holders]]
"""Keeps a copy here: (stored, state of our copy, holders of the copy we had already)."""
PlaceFn = Callable[[TaskSpec, int, int, int, list[Action]], Placement]
"""Places one task of an enqueue: (spec, request id, index in the request, now, actions)."""
DeliverLocallyFn = Callable[[str, ReplicaMessage, int, list[Action]], None]
"""Hands a replica message this node sends itself to its own handlers."""


def new_task_id(rng: random.Random) -> str:
    """A random (version 4) UUID drawn from the injected rng, so simulations replay."""
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Coordinator:
    def __init__(
        self,
        core: NodeCore,
        *,
        place: PlaceFn,
        store_copy: StoreCopyFn,
        deliver_locally: DeliverLocallyFn,
    ) -> None:
        self.core = core
        self._place = place
        self._store_copy = store_copy
        self._deliver_locally = deliver_locally
        self._destinations = core.config.destinations.for_node(core.config.node_id)
        """Where webhooks may point: a literal address denied here is a 400 at enqueue."""
        self._refs: dict[int, tuple[int, int]] = {}
        """StoreCopy ref -> (API request id, index of the task in that request)."""
        self._refs_by_request: dict[int, list[int]] = {}
        """API request id -> the StoreCopy refs it sent, so that an enqueue that ends forgets
        its own without a look at anyone else's."""
        self._next_ref = 1
        self.enqueue_refusal: Callable[[], ClientError | None] = lambda: None
        """Why this node takes no enqueue now, besides not being a member (it is leaving the
        cluster: logic/leave.py)."""

    def acks_awaited(self) -> int:
        """Copies sent by enqueues still waiting whose acknowledgement has not come."""
        return len(self._refs)

    def check_invariants(self, find: Callable[[int], PendingEnqueue | None]) -> None:
        """Every acknowledgement awaited belongs to a task of an enqueue still waiting, and that
        task still waits for a holder."""
        for ref, (request_id, index) in self._refs.items():
            pending = find(request_id)
            assert pending is not None, (ref, request_id)
            assert ref in self._refs_by_request[request_id], (ref, request_id)
            placement_ = pending.placements[index]
            assert isinstance(placement_, Placement) and placement_.waiting, (ref, request_id)
        for request_id in self._refs_by_request:
            assert find(request_id) is not None, request_id

    def enqueue(
        self, request_id: int, queue: str, request: HttpRequest, now_ms: int,
        actions: list[Action],
    ) -> HttpResponse | PendingEnqueue:  # fmt: skip
        """The response, or the enqueue that now waits for its holders' acknowledgements."""
        core = self.core
        queues_max = core.config.limits.active_queues_max
        if not core.queues.room_for(queue, queues_max):
            raise ClientError(507, f"this node has {queues_max} active queues, its limit")
        parsed, read_as = parse_enqueue_with_warnings(
            queue, request.header("content-type"), request.body, now_ms, core.config.limits
        )
        parsed_specs = [parsed] if isinstance(parsed, TaskSpec) else parsed
        specs = [self._allowed(spec) for spec in parsed_specs]
        if isinstance(parsed, TaskSpec) and isinstance(specs[0], ClientError):
            raise specs[0]
        if (refusal := self.enqueue_refusal()) is not None:
            raise refusal  # (after the parse: bad input gets its 4xx)
        if not core.is_member:
            raise core.not_a_member()
        pending = PendingEnqueue(
            request_id=request_id,
            deadline_ms=core.mono_ms + core.config.placement_timeout_ms,
            placements=[],
            batch=not isinstance(parsed, TaskSpec),
            epoch=core.membership.epoch,
        )
        settings = core.queues.config.for_queue(queue)
        for index, spec in enumerate(specs):
            narrowed = (
                ()
                if isinstance(spec, ClientError)
                else narrowing_warnings(queue, settings, spec.retry)
            )
            pending.warnings.append(read_as + narrowed)
            if isinstance(spec, ClientError):
                pending.placements.append((spec.status, {"status": "error",
                                                         "error": spec.message}))
            else:
                pending.placements.append(self._place(spec, request_id, index, now_ms, actions))
        if pending.settled():
            self._forget_refs(request_id)
            self._reconcile(pending, now_ms, actions)
            return pending.response(core.config.limits)
        return pending

    def _allowed(self, spec: TaskSpec | ClientError) -> TaskSpec | ClientError:
        """`spec`, or the 400 for a url whose literal address the destination rules deny."""
        if isinstance(spec, ClientError):
            return spec
        url = parse_webhook_url(spec.url, self.core.config.limits)
        return denied_literal(url, self._destinations) or spec

    def place(
        self, spec: TaskSpec, request_id: int, index: int, now_ms: int, actions: list[Action]
    ) -> Placement:
        core = self.core
        task_id = spec.client_id or new_task_id(core.rng)
        nodes = core.placement(f"{spec.queue}/{task_id}")[: core.config.replicas]
        holders = core.intern(tuple((node, k) for k, node in enumerate(nodes)))
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
        me = core.me
        known = core.tasks.get(spec.queue, task_id) if spec.client_id else None
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
                self._refs_by_request.setdefault(request_id, []).append(ref)
                core.tell(node, StoreCopy(ref=ref, copy=copy), actions)
        return result

    def acknowledged(
        self, sender: str, ack: StoreAck, find: Callable[[int], PendingEnqueue | None]
    ) -> int | None:
        """Takes a holder's acknowledgement; returns the enqueue's request id when that settled
        it. `find`: the enqueue still waiting under a request id, if any."""
        where = self._refs.pop(ack.ref, None)
        if where is None:
            return None
        request_id, index = where
        pending = find(request_id)
        if pending is None:
            return None
        placement_ = pending.placements[index]
        if isinstance(placement_, Placement):
            placement_.acknowledge(
                sender, stored=ack.stored, state=ack.state, holders=ack.holders
            )
        return request_id if pending.settled() else None

    def settle(self, pending: PendingEnqueue, now_ms: int, actions: list[Action]) -> HttpResponse:
        """The enqueue's answer, now that every holder answered or its time is up."""
        core = self.core
        self._reconcile(pending, now_ms, actions)
        response = pending.response(core.config.limits)
        moved = pending.epoch != core.membership.epoch
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
        # Out of time: forget the acknowledgements still awaited, or every lost one would keep
        # its entry forever.
        self._forget_refs(pending.request_id)
        return response

    def _forget_refs(self, request_id: int) -> None:
        for ref in self._refs_by_request.pop(request_id, ()):
            self._refs.pop(ref, None)

    def _unconfirm(self, placement_: Placement, now_ms: int, actions: list[Action]) -> None:
        message = Unconfirmed(queue=placement_.queue, task_id=placement_.task_id)
        # The silent holders too: their answer may be what was lost, not their copy.
        for node in [*placement_.stored_on, *sorted(placement_.waiting)]:
            if node == self.core.me:
                self._deliver_locally(node, message, now_ms, actions)
            else:
                self.core.tell(node, message, actions)

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
                if node == self.core.me:
                    self._deliver_locally(node, message, now_ms, actions)
                else:
                    self.core.tell(node, message, actions)
