"""The HTTP API of a node: routing, asking every member where a request needs their answers,
the requests waiting for those answers, and the replies.

An enqueue is handed to the `coordinator`; every other request about a queue or a task is
answered by this node's copy first (`replica_store`, `queue_ops`) and then by the other
members' (fan-out), merged by the `pending*` classes.
"""

from __future__ import annotations

from typing import assert_never

from .actions import Action, SendApiResponse
from .coordinator import Coordinator
from .core import NodeCore
from .destination_holds import destinations_json, parse_destination
from .enqueue_parse import validate_queue_name
from .errors import ClientError
from .http import HttpRequest, HttpResponse, error_response, json_response
from .leave import Leave
from .pending import PendingCancel, PendingEnqueue, PendingQuery
from .pending_queue import PendingQueueCommand, PendingQueueInfo, PendingRerun
from .queue_listing import PendingQueueList, list_queues
from .queue_ops import listing_query, queue_command, queue_stats
from .render import cluster_json
from .repair import Repair
from .replica_messages import (
    CancelResult,
    CancelTask,
    QueryResult,
    QueryTask,
    QueueCommand,
    QueueCommandDone,
    QueueCommandKind,
    QueuesListed,
    QueuesQuery,
    QueueStats,
    QueueStatsQuery,
    ReplicaMessage,
    RerunResult,
    RerunTask,
)
from .replica_store import ReplicaStore
from .routes import Operation, Route, route

Asked = (
    PendingQuery
    | PendingCancel
    | PendingQueueInfo
    | PendingQueueCommand
    | PendingRerun
    | PendingQueueList
)
"""A request asked of every member."""
Pending = PendingEnqueue | Asked

class Api:
    def __init__(
        self,
        core: NodeCore,
        coordinator: Coordinator,
        store: ReplicaStore,
        repair: Repair,
        *,
        leave: Leave,
    ) -> None:
        self.core = core
        self.leave = leave
        self.coordinator = coordinator
        self.store = store
        self.repair = repair
        self._pending: dict[int, Pending] = {}
        """API request id -> the request waiting for peers."""

    def deadlines_ms(self) -> list[int]:
        return [p.deadline_ms for p in self._pending.values()]

    def on_timer(self, now_ms: int, actions: list[Action]) -> None:
        for request_id, pending in list(self._pending.items()):
            if pending.deadline_ms <= self.core.mono_ms:
                self.reply(request_id, now_ms, actions)

    def request(
        self, request_id: int, request: HttpRequest, now_ms: int, actions: list[Action]
    ) -> None:
        """Answers the request now, or once the members it waits for have answered."""
        try:
            where = route(request.method, request.target)
            response = self._operate(request_id, where, request, now_ms, actions)
        except ClientError as error:
            response = error_response(error.status, error.message)
        if response is not None:
            actions.append(SendApiResponse(request_id=request_id, response=response))

    def enqueue_waiting(self, request_id: int) -> PendingEnqueue | None:
        pending = self._pending.get(request_id)
        return pending if isinstance(pending, PendingEnqueue) else None

    def _operate(
        self,
        request_id: int,
        where: Route,
        request: HttpRequest,
        now_ms: int,
        actions: list[Action],
    ) -> HttpResponse | None:
        core = self.core
        me = core.me
        if where.operation is Operation.HEALTH:
            return json_response(200, {"status": "ok", "node": me})
        if where.operation is Operation.CLUSTER:
            view = core.membership.view()
            under = len(self.repair.under_replicated)
            shown = cluster_json(view, len(core.tasks), under)
            leave = self.leave.progress_json()
            if leave is not None:
                shown["leave"] = leave
            return json_response(200, shown)
        if where.operation is Operation.CLUSTER_LEAVE:
            return self.leave.request(request, now_ms, actions)
        if self.leave.has_left and where.operation is not Operation.ENQUEUE:
            # A node that left holds no task: only the members' answers count. (An enqueue is
            # parsed first, and refused by the coordinator: bad input gets its 4xx.)
            refusal = self.leave.refusal()
            assert refusal is not None
            raise refusal
        if where.operation is Operation.DESTINATIONS:
            return json_response(200, destinations_json(core.queues.holds(now_ms), now_ms))
        if where.operation is Operation.DESTINATION_LIFT:
            host, port = parse_destination(where.destination)
            lifted = core.queues.lift_holds(host, port)
            if not lifted:
                raise ClientError(404, f"no queue holds deliveries to {where.destination[:300]}")
            return json_response(200, {"status": "lifted", "queues": lifted})
        if not core.is_member and where.operation is not Operation.ENQUEUE:
            raise core.not_a_member()  # (an enqueue is parsed first: bad input gets its 4xx)
        if where.operation is Operation.QUEUES:
            return self._list_queues(request_id, now_ms, actions)
        queue = validate_queue_name(where.queue, core.config.limits)
        deadline_ms = core.mono_ms + core.config.peer_answer_timeout_ms
        match where.operation:
            case Operation.ENQUEUE:
                enqueue = self.coordinator.enqueue(request_id, queue, request, now_ms, actions)
                if isinstance(enqueue, PendingEnqueue):
                    self._pending[request_id] = enqueue
                    return None
                return enqueue
            case Operation.QUEUE_INFO:
                state, limit, after = listing_query(where.query, core.config.limits)
                info = PendingQueueInfo(
                    request_id=request_id,
                    deadline_ms=deadline_ms,
                    queue=queue,
                    state=state,
                    limit=limit,
                    after=after,
                    rate_per_s=core.queues.config.for_queue(queue).rate_per_s,
                    waiting={me},
                )
                ask = QueueStatsQuery(
                    ref=request_id, queue=queue, state=state, limit=limit, after=after
                )
                info.answer(me, queue_stats(core.tasks, core.queues, ask, now_ms))
                return self._fan_out(info, ask, actions)
            case Operation.QUEUE_COMMAND:
                queues_max = core.config.limits.active_queues_max
                if where.command == QueueCommandKind.PAUSE.value and not core.queues.room_for(
                    queue, queues_max
                ):
                    # A paused queue is never idle, so it keeps its room: pauses of names
                    # nobody uses would fill the table and refuse every new queue.
                    raise ClientError(
                        507, f"this node has {queues_max} active queues, its limit (paused "
                        "queues count); resume one first"
                    )  # fmt: skip
                command = QueueCommand(
                    ref=request_id, queue=queue, command=QueueCommandKind(where.command)
                )
                pending_command = PendingQueueCommand(
                    request_id=request_id,
                    deadline_ms=deadline_ms,
                    queue=queue,
                    command=where.command,
                    waiting={me},
                )
                done = queue_command(core.tasks, core.queues, command, now_ms)
                pending_command.answer(me, done)
                return self._fan_out(pending_command, command, actions)
            case Operation.TASK_RERUN:
                rerun = PendingRerun(
                    request_id=request_id,
                    deadline_ms=deadline_ms,
                    queue=queue,
                    task_id=where.task_id,
                    waiting={me},
                )
                rerun.answer(me, self.store.rerun_copy(request_id, queue, where.task_id, now_ms))
                ask_rerun = RerunTask(ref=request_id, queue=queue, task_id=where.task_id)
                return self._fan_out(rerun, ask_rerun, actions)
            case Operation.TASK_INFO:
                query = PendingQuery(
                    request_id=request_id,
                    deadline_ms=deadline_ms,
                    queue=queue,
                    task_id=where.task_id,
                    waiting={me},
                )
                query.answer(me, self.store.query_result(0, queue, where.task_id))
                ask_query = QueryTask(ref=request_id, queue=queue, task_id=where.task_id)
                return self._fan_out(query, ask_query, actions)
            case Operation.TASK_CANCEL:
                cancel = PendingCancel(
                    request_id=request_id,
                    deadline_ms=deadline_ms,
                    queue=queue,
                    task_id=where.task_id,
                    waiting=set(),
                )
                result = self.store.cancel_copy(0, queue, where.task_id, now_ms)
                cancel.add(me, result.state, result.holders)
                ask_cancel = CancelTask(ref=request_id, queue=queue, task_id=where.task_id)
                return self._fan_out(cancel, ask_cancel, actions)
            case (
                Operation.HEALTH
                | Operation.CLUSTER
                | Operation.DESTINATIONS
                | Operation.DESTINATION_LIFT
                | Operation.QUEUES
                | Operation.CLUSTER_LEAVE
            ):
                raise AssertionError("answered above")
            case _:
                assert_never(where.operation)

    def _list_queues(
        self, request_id: int, now_ms: int, actions: list[Action]
    ) -> HttpResponse | None:
        core = self.core
        queues_max = core.config.limits.active_queues_max
        pending = PendingQueueList(
            request_id=request_id,
            deadline_ms=core.mono_ms + core.config.peer_answer_timeout_ms,
            queues_max=queues_max,
            config=core.queues.config,
            waiting={core.me},
        )
        ask = QueuesQuery(ref=request_id)
        pending.answer(core.me, list_queues(core.tasks, core.queues, ask, now_ms, queues_max))
        return self._fan_out(pending, ask, actions)

    def _fan_out(
        self, pending: Asked, message: ReplicaMessage, actions: list[Action]
    ) -> HttpResponse | None:
        """Asks every other member (this node has answered already); answers at once when
        there is no other member."""
        core = self.core
        pending.waiting.discard(core.me)
        others = [m for m in core.members if m != core.me]
        if not others:
            return pending.response()
        pending.waiting.update(others)
        self._pending[pending.request_id] = pending
        for member in others:
            core.tell(member, message, actions)
        return None

    def reply(self, request_id: int, now_ms: int, actions: list[Action]) -> None:
        """Ends a waiting request: every answer is in, or its time is up."""
        pending = self._pending.pop(request_id)
        if isinstance(pending, PendingEnqueue):
            response = self.coordinator.settle(pending, now_ms, actions)
        else:
            response = pending.response()
        actions.append(SendApiResponse(request_id=request_id, response=response))

    def member_answered(
        self,
        sender: str,
        message: CancelResult
        | QueryResult
        | QueueStats
        | QueueCommandDone
        | RerunResult
        | QueuesListed,
        now_ms: int,
        actions: list[Action],
    ) -> None:
        """A member's answer to a request of ours asked of every member."""
        pending = self._pending.get(message.ref)
        match pending, message:
            case PendingCancel(), CancelResult():
                pending.answer(sender, message)
            case PendingQuery(), QueryResult():
                pending.answer(sender, message)
            case PendingQueueInfo(), QueueStats():
                pending.answer(sender, message)
            case PendingQueueCommand(), QueueCommandDone():
                pending.answer(sender, message)
            case PendingRerun(), RerunResult():
                pending.answer(sender, message)
            case PendingQueueList(), QueuesListed():
                pending.answer(sender, message)
            case _:
                return  # late, duplicated, or not for a request of this kind
        if not pending.waiting:
            self.reply(message.ref, now_ms, actions)
