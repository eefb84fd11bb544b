"""Queue API requests waiting for the members' answers, and how the answers are merged."""

from __future__ import annotations

from dataclasses import dataclass, field

from .http import HttpResponse, error_response, json_response
from .listing import merged_page, page_json
from .listing_index import ListingKey
from .replica_messages import QueueCommandDone, QueueStats, RerunResult
from .task import TaskState


def _unanswered(waiting: set[str]) -> str:
    return f"no answer from {', '.join(sorted(waiting))} in time"


@dataclass(slots=True, kw_only=True)
class PendingQueueInfo:
    """`GET /{queue}`: each member reports the tasks it answers for; the sums count each task
    once."""

    request_id: int
    deadline_ms: int
    queue: str
    state: str | None
    limit: int
    after: ListingKey | None = None
    """The page's cursor: list only tasks after this key."""
    rate_per_s: float | None
    """The queue's configured (cluster-wide) rate."""
    waiting: set[str]
    answers: dict[str, QueueStats] = field(default_factory=dict)

    def answer(self, node: str, stats: QueueStats) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            self.answers[node] = stats

    def response(self) -> HttpResponse:
        counts = {state.value: 0 for state in TaskState}
        for stats in self.answers.values():
            for state, n in stats.counts:
                counts[state] += n
        etas = [s.oldest_eta_ms for s in self.answers.values() if s.oldest_eta_ms is not None]
        body: dict[str, object] = {
            "queue": self.queue,
            "counts": counts,
            "oldest_eta": min(etas) / 1000 if etas else None,
            "attempts_last_minute": sum(s.attempts_last_minute for s in self.answers.values()),
            "rate_per_s": self.rate_per_s,
            "paused_on": sorted(n for n, s in self.answers.items() if s.paused),
            "members_answered": len(self.answers),
            "members_unanswered": sorted(self.waiting),
        }
        if self.state is not None:
            pages = ((page_json(s.tasks), s.complete_to) for s in self.answers.values())
            listed, next_cursor = merged_page(pages, self.limit)
            body["state"] = self.state
            body["tasks"] = listed
            body["next_cursor"] = next_cursor
        return json_response(200, body)


@dataclass(slots=True, kw_only=True)
class PendingQueueCommand:
    request_id: int
    deadline_ms: int
    queue: str
    command: str
    waiting: set[str]
    answered: int = 0
    affected: int = 0

    def answer(self, node: str, done: QueueCommandDone) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            self.answered += 1
            self.affected += done.affected

    def response(self) -> HttpResponse:
        if self.waiting:
            message = (
                f"{self.command} done on {self.answered} members but {_unanswered(self.waiting)}:"
                " retry the request (it is safe to repeat)"
            )
            return error_response(503, message)
        past = {"pause": "paused", "resume": "resumed", "purge": "purged"}[self.command]
        body: dict[str, object] = {"status": past, "queue": self.queue, "members": self.answered}
        if self.command == "purge":
            body["copies_deleted"] = self.affected
        return json_response(200, body)


@dataclass(slots=True, kw_only=True)
class PendingRerun:
    request_id: int
    deadline_ms: int
    queue: str
    task_id: str
    waiting: set[str]
    states: list[str] = field(default_factory=list)

    def answer(self, node: str, result: RerunResult) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            if result.state is not None:
                self.states.append(result.state)

    def response(self) -> HttpResponse:
        if not self.states:
            if self.waiting:
                return error_response(503, f"task {self.task_id!r}: {_unanswered(self.waiting)}")
            return error_response(404, f"no task {self.task_id!r} in queue {self.queue!r}")
        if TaskState.FAILED.value in self.states:
            return json_response(200, {"status": "scheduled", "id": self.task_id})
        state = self.states[0]
        message = f"only a failed task can be re-run; this one is {state}"
        return json_response(409, {"status": "error", "error": message, "state": state})
