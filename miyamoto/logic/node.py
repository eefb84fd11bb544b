"""The Miyamoto node as one sans-I/O state machine.

`Node.handle(event, now_ms)` takes what happened (an API request, a webhook's answer, a timer) and
returns the actions for the shell: responses to send and deliveries to start.
`Node.next_deadline_ms()` says when to call it with `TimerExpired` at the latest.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import assert_never

from .. import __version__
from .actions import Action, SendApiResponse, StartDelivery
from .delivery import build_request, is_success, retry_after_ms
from .enqueue_parse import parse_enqueue, validate_queue_name
from .errors import ClientError
from .events import (
    ApiRequestReceived,
    DeliveryFailed,
    DeliveryResponded,
    Event,
    TimerExpired,
)
from .http import HttpRequest, HttpResponse, error_response, json_response
from .limits import Limits
from .render import seconds, task_json
from .retry import RetryPolicy
from .routes import Operation, Route, route
from .schedule import TimerHeap
from .store import TaskStore
from .task import Task, TaskSpec, TaskState


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    node_id: str = "127.0.0.1:8088"
    """host:port this node serves on; how peers and users name it."""
    limits: Limits = field(default_factory=Limits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    delivery_deadline_ms: int = 30_000
    """No complete webhook answer within this is a failed attempt (timeout)."""
    retention_ms: int = 3_600_000
    """How long a succeeded or cancelled task stays visible, and its client id deduplicates."""
    user_agent: str = f"miyamoto/{__version__}"

    def __post_init__(self) -> None:
        assert 0 < self.delivery_deadline_ms <= self.limits.delivery_deadline_ms_max
        assert self.retention_ms >= 0


def new_task_id(rng: random.Random) -> str:
    """A random (version 4) UUID drawn from the injected rng, so simulations replay."""
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Node:
    def __init__(self, config: NodeConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.store = TaskStore(retention_ms=config.retention_ms)
        self.timers = TimerHeap()
        self._in_flight: dict[int, Task] = {}
        self._next_delivery_id = 1
        self._state_counts: dict[str, dict[TaskState, int]] = {}

    # -- the state machine's whole interface ---------------------------------------------------

    def handle(self, event: Event, now_ms: int) -> list[Action]:
        actions: list[Action] = []
        match event:
            case ApiRequestReceived(request_id=request_id, request=request):
                response = self._answer(request, now_ms)
                actions.append(SendApiResponse(request_id=request_id, response=response))
            case DeliveryResponded() | DeliveryFailed():
                self._delivery_finished(event, now_ms)
            case TimerExpired():
                for task in self.store.expire(now_ms):
                    self._count(task, -1)
            case _:
                assert_never(event)
        self._start_due_deliveries(now_ms, actions)
        return actions

    def next_deadline_ms(self) -> int | None:
        deadlines = [self.store.next_expiry_ms()]
        if len(self._in_flight) < self.config.limits.deliveries_in_flight_max:
            deadlines.append(self.timers.next_due_ms())
        return min((d for d in deadlines if d is not None), default=None)

    # -- the API ---------------------------------------------------------------------------------

    def _answer(self, request: HttpRequest, now_ms: int) -> HttpResponse:
        try:
            where = route(request.method, request.target)
            return self._operate(where, request, now_ms)
        except ClientError as error:
            return error_response(error.status, error.message)

    def _operate(self, where: Route, request: HttpRequest, now_ms: int) -> HttpResponse:
        if where.operation is Operation.HEALTH:
            return json_response(200, {"status": "ok", "node": self.config.node_id})
        queue = validate_queue_name(where.queue, self.config.limits)
        match where.operation:
            case Operation.ENQUEUE:
                return self._enqueue(queue, request, now_ms)
            case Operation.QUEUE_INFO:
                return json_response(200, self._queue_info(queue))
            case Operation.TASK_INFO:
                task = self._existing(queue, where.task_id)
                return json_response(200, task_json(task))
            case Operation.TASK_CANCEL:
                return self._cancel(self._existing(queue, where.task_id), now_ms)
            case Operation.HEALTH:
                raise AssertionError("answered above")
            case _:
                assert_never(where.operation)

    def _existing(self, queue: str, task_id: str) -> Task:
        task = self.store.get(queue, task_id)
        if task is None:
            raise ClientError(404, f"no task {task_id!r} in queue {queue!r}")
        return task

    def _enqueue(self, queue: str, request: HttpRequest, now_ms: int) -> HttpResponse:
        parsed = parse_enqueue(
            queue, request.header("content-type"), request.body, now_ms, self.config.limits
        )
        if isinstance(parsed, TaskSpec):
            status, payload = self._enqueue_one(parsed, now_ms)
            return json_response(status, payload)
        results: list[dict[str, object]] = []
        for item in parsed:
            if isinstance(item, ClientError):
                results.append({"status": "error", "error": item.message})
            else:
                results.append(self._enqueue_one(item, now_ms)[1])
        return json_response(200, results)

    def _enqueue_one(self, spec: TaskSpec, now_ms: int) -> tuple[int, dict[str, object]]:
        """Creates the task unless its client id exists; the HTTP status and JSON reply."""
        if spec.client_id is not None:
            existing = self.store.get(spec.queue, spec.client_id)
            if existing is not None:
                return 200, {
                    "status": "duplicate",
                    "id": existing.id,
                    "state": existing.state.value,
                }
        tasks_max = self.config.limits.tasks_max
        if len(self.store) >= tasks_max:
            message = f"this node holds {tasks_max} tasks, its limit; try again later"
            return 507, {"status": "error", "error": message}
        task = Task(
            id=spec.client_id or new_task_id(self.rng),
            queue=spec.queue,
            method=spec.method,
            url=spec.url,
            headers=spec.headers,
            body=spec.body,
            eta_ms=spec.eta_ms,
            created_ms=now_ms,
        )
        self.store.add(task)
        self._count(task, +1)
        self.timers.push(task)
        return 200, {
            "status": "scheduled",
            "id": task.id,
            "queue": task.queue,
            "eta": seconds(task.eta_ms),
        }

    def _cancel(self, task: Task, now_ms: int) -> HttpResponse:
        if task.state in (TaskState.SCHEDULED, TaskState.RETRYING):
            self._set_state(task, TaskState.CANCELLED)
            self.store.finished(task, now_ms)
            return json_response(200, {"status": "cancelled", "id": task.id})
        if task.state is TaskState.DELIVERING:
            message = "the task is being delivered right now; it can no longer be cancelled"
        else:
            message = f"the task has already {task.state.value}"
        return json_response(409, {"status": "error", "error": message, "state": task.state.value})

    def _queue_info(self, queue: str) -> dict[str, object]:
        counts = self._state_counts.get(queue, {})
        return {
            "queue": queue,
            "counts": {state.value: counts.get(state, 0) for state in TaskState},
        }

    # -- deliveries ------------------------------------------------------------------------------

    def _start_due_deliveries(self, now_ms: int, actions: list[Action]) -> None:
        limits = self.config.limits
        while len(self._in_flight) < limits.deliveries_in_flight_max:
            task = self.timers.pop_due(now_ms)
            if task is None:
                return
            delivery_id = self._next_delivery_id
            self._next_delivery_id += 1
            request = build_request(task, user_agent=self.config.user_agent, limits=limits)
            self._set_state(task, TaskState.DELIVERING)
            if task.first_attempt_ms is None:
                task.first_attempt_ms = now_ms
            task.last_attempt_ms = now_ms
            self._in_flight[delivery_id] = task
            actions.append(
                StartDelivery(
                    delivery_id=delivery_id,
                    request=request,
                    timeout_ms=self.config.delivery_deadline_ms,
                    excerpt_bytes_max=limits.response_excerpt_bytes_max,
                )
            )

    def _delivery_finished(self, event: DeliveryResponded | DeliveryFailed, now_ms: int) -> None:
        task = self._in_flight.pop(event.delivery_id, None)
        if task is None:
            return  # not ours (a report after restart or a duplicate report): nothing to undo
        assert task.state is TaskState.DELIVERING, task.state
        task.attempts += 1
        wait_ms: int | None = None
        if isinstance(event, DeliveryResponded):
            task.executions += 1
            task.last_status = event.status
            task.last_error = None
            task.last_response_excerpt = event.body_excerpt
            if is_success(event.status):
                self._set_state(task, TaskState.SUCCEEDED)
                self.store.finished(task, now_ms)
                return
            wait_ms = retry_after_ms(event.status, event.headers, now_ms)
        else:
            task.last_status = None
            task.last_error = f"{event.error.value}: {event.detail}" if event.detail else (
                event.error.value
            )
            task.last_response_excerpt = None
        policy = self.config.retry
        retries_done = task.attempts - 1
        assert task.first_attempt_ms is not None
        if not policy.may_retry(retries_done, task.first_attempt_ms, now_ms):
            self._set_state(task, TaskState.FAILED)
            task.finished_ms = now_ms
            return
        backoff_ms = policy.backoff_ms(retries_done)
        task.due_ms = now_ms + max(backoff_ms, wait_ms or 0)
        self._set_state(task, TaskState.RETRYING)
        self.timers.push(task)

    # -- bookkeeping -----------------------------------------------------------------------------

    def _set_state(self, task: Task, state: TaskState) -> None:
        self._count(task, -1)
        task.state = state
        self._count(task, +1)

    def _count(self, task: Task, delta: int) -> None:
        counts = self._state_counts.setdefault(task.queue, {})
        count = counts.get(task.state, 0) + delta
        assert count >= 0, (task.queue, task.state)
        if count:
            counts[task.state] = count
        else:
            del counts[task.state]
            if not counts:  # forget queues that hold nothing, or names would pile up forever
                del self._state_counts[task.queue]
