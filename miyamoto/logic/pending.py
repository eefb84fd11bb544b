"""API requests that wait for other nodes: an enqueue waiting for its copies to be stored, a
cancel or a lookup waiting for the members' answers. Each ends when every answer is in or at its
deadline, whichever comes first."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .api_outcome import TaskOutcome
from .http import HttpResponse, error_response, json_response
from .limits import Limits
from .replica_messages import CancelResult, Holders, QueryResult
from .task import TaskState


@dataclass(slots=True, kw_only=True)
class Placement:
    """One task of an enqueue, waiting for its holders to acknowledge their copies."""

    queue: str
    task_id: str
    eta_ms: int
    waiting: set[str]
    copies: int
    stored: int = 0
    stored_on: list[str] = field(default_factory=list)
    existing_state: str | None = None
    """Set when a holder already had a task with this id: the enqueue is a duplicate."""
    existing_holders: Holders = ()
    full: bool = False

    def acknowledge(
        self, node: str, *, stored: bool, state: str, holders: Holders = ()
    ) -> None:
        if node not in self.waiting:
            return  # a duplicated or late acknowledgement
        self.waiting.discard(node)
        if stored:
            self.stored += 1
            self.stored_on.append(node)
        elif state == "full":
            self.full = True
        else:
            self.existing_state = state
            self.existing_holders = holders

    def result(self, limits: Limits) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON of this task's enqueue, once it is settled or out of time."""
        if self.existing_state is not None:
            return 200, {"status": "duplicate", "id": self.task_id, "state": self.existing_state}
        if self.waiting or self.full:
            why = (
                f"a holder is full (it holds {limits.tasks_max} tasks or "
                f"{limits.task_bytes_max} bytes of task bodies, headers and URLs, its limits)"
                if self.full
                else "the other holders did not answer in time"
            )
            message = (
                f"stored {self.stored} of {self.copies} copies: {why}; retry with the same "
                "task id to be safe from duplicates"
            )
            status = 507 if self.full else 503
            return status, {"status": "error", "error": message, "id": self.task_id}
        return 200, {
            "status": "scheduled",
            "id": self.task_id,
            "queue": self.queue,
            "eta": self.eta_ms / 1000,
            "replicas": self.stored,
        }


@dataclass(slots=True, kw_only=True)
class PendingEnqueue:
    request_id: int
    deadline_ms: int
    placements: list[Placement | tuple[int, dict[str, Any]]]
    """One entry per task: waiting for copies, or already settled (status, JSON)."""
    batch: bool
    epoch: int
    """The member list's epoch when the copies were sent."""
    warnings: list[tuple[str, ...]] = field(default_factory=list)
    """Per task, what the reply warns of (content type, narrowed retry settings); may be empty."""

    def settled(self) -> bool:
        return all(not isinstance(p, Placement) or not p.waiting for p in self.placements)

    def response(self, limits: Limits) -> HttpResponse:
        results = [p.result(limits) if isinstance(p, Placement) else p for p in self.placements]
        for (_, payload), warnings in zip(results, self.warnings, strict=False):
            if warnings:
                payload["warnings"] = list(warnings)
        outcome = self._outcome([payload["status"] for _, payload in results])
        if self.batch:
            return json_response(200, [payload for _, payload in results], outcome=outcome)
        ((status, payload),) = results
        return json_response(status, payload, outcome=outcome)

    def _outcome(self, statuses: list[str]) -> TaskOutcome | None:
        """The tasks stored and the duplicates, from each task's result (`statuses`)."""
        queue = next((p.queue for p in self.placements if isinstance(p, Placement)), None)
        if queue is None:
            return None  # every task was refused before placing: nothing happened to tasks
        return TaskOutcome(
            queue=queue,
            enqueued=statuses.count("scheduled"),
            duplicates=statuses.count("duplicate"),
        )


_RANK = {
    TaskState.SCHEDULED.value: 0,
    TaskState.RETRYING.value: 1,
    TaskState.DELIVERING.value: 2,
    TaskState.FAILED.value: 3,
    TaskState.CANCELLED.value: 4,
    TaskState.SUCCEEDED.value: 5,
}
"""Which holder's view of a task is the most advanced one to show."""


@dataclass(slots=True, kw_only=True)
class PendingQuery:
    """`GET /{queue}/{id}` asked of every member; shows the most advanced copy."""

    request_id: int
    deadline_ms: int
    queue: str
    task_id: str
    waiting: set[str]
    views: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def answer(self, node: str, result: QueryResult) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            if result.task_json is not None:
                self.views.append((node, json.loads(result.task_json)))

    def response(self) -> HttpResponse:
        if not self.views:
            if self.waiting:
                return error_response(
                    503, f"no answer about task {self.task_id!r} from its holders in time"
                )
            return error_response(404, f"no task {self.task_id!r} in queue {self.queue!r}")
        views = sorted(self.views, key=lambda v: (_RANK[v[1]["state"]], v[1]["attempts"], v[0]))
        best = dict(views[-1][1])
        best["copies"] = [{"node": node, "state": view["state"]} for node, view in views]
        return json_response(200, best)


@dataclass(slots=True, kw_only=True)
class PendingCancel:
    """`DELETE /{queue}/{id}` asked of every member. It says "cancelled" only when every member
    answered and every holder of the task confirmed, so that no copy can still fire after the
    answer."""

    request_id: int
    deadline_ms: int
    queue: str
    task_id: str
    waiting: set[str]
    states: dict[str, str] = field(default_factory=dict)
    holders: set[str] = field(default_factory=set)

    def answer(self, node: str, result: CancelResult) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            self.add(node, result.state, result.holders)

    def add(self, node: str, state: str | None, holders: Holders) -> None:
        if state is not None:
            self.states[node] = state
            self.holders.update(n for n, _ in holders)

    def settled(self) -> bool:
        return not self.waiting

    def response(self) -> HttpResponse:
        states = set(self.states.values())
        if not states:
            if self.waiting:
                return error_response(
                    503, f"no answer about task {self.task_id!r} from its holders in time"
                )
            return error_response(404, f"no task {self.task_id!r} in queue {self.queue!r}")
        if "deleted" in states:
            return json_response(200, {"status": "deleted", "id": self.task_id})
        for state, message in (
            (TaskState.SUCCEEDED.value, "the task has already succeeded"),
            (
                TaskState.DELIVERING.value,
                "the task is being delivered right now; it can no longer be cancelled",
            ),
        ):
            if state in states:
                body = {"status": "error", "error": message, "state": state}
                return json_response(409, body)
        # A member that did not answer may hold copies that no answer names (two enqueues of
        # the id placed through members that saw different member lists): not confirmed.
        unconfirmed = sorted((self.holders - set(self.states)) | self.waiting)
        if unconfirmed:
            message = (
                f"cancelled on {len(self.states)} of {len(self.states) + len(unconfirmed)} "
                f"members; not confirmed by {', '.join(unconfirmed)}: retry the DELETE"
            )
            return error_response(503, message)
        cancelled = TaskOutcome(queue=self.queue, cancelled=1)
        return json_response(200, {"status": "cancelled", "id": self.task_id}, outcome=cancelled)
