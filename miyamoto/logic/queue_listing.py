"""`GET /_queues`: every queue the cluster knows, with its counts.

Each member lists the queues it knows (a copy held, a queue state, or a name in the queues
file) with the tasks it answers for (its primary copies), so the sums count each task once, as
`GET /{queue}` does. Both the member's list and the merged one are bounded by the active queue
limit (first names in order); `truncated` says when more were known.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .http import HttpResponse, json_response
from .local_tasks import LocalTasks
from .queue_config import QueuesConfig
from .queues import Queues
from .replica_messages import QueuesListed, QueuesQuery, QueueSummary
from .task import TaskState

_STATES = [state.value for state in TaskState]


def list_queues(
    tasks: LocalTasks, queues: Queues, query: QueuesQuery, now_ms: int, queues_max: int
) -> QueuesListed:
    """This member's share of `GET /_queues`: at most `queues_max` queues, by name."""
    configured = (name for name, _ in queues.config.queues)
    names = sorted({*tasks.store.queue_names(), *queues.names(), *configured})
    summaries = []
    for name in names[:queues_max]:
        queue = queues.known(name)
        counts = tasks.primary_counts(name)
        summaries.append(
            QueueSummary(
                queue=name,
                counts=tuple(sorted((state.value, n) for state, n in counts.items())),
                oldest_eta_ms=None if queue is None else queue.oldest_eta_ms(),
                attempts_last_minute=0 if queue is None else queue.rate.per_minute(now_ms),
                paused=False if queue is None else queue.paused,
            )
        )
    return QueuesListed(ref=query.ref, queues=tuple(summaries), truncated=len(names) > queues_max)


@dataclass(slots=True, kw_only=True)
class PendingQueueList:
    """`GET /_queues` waiting for the members' lists; merged by queue name."""

    request_id: int
    deadline_ms: int
    queues_max: int
    config: QueuesConfig
    """The queues' settings on this node (for each queue's configured rate)."""
    waiting: set[str]
    answers: dict[str, QueuesListed] = field(default_factory=dict)

    def answer(self, node: str, listed: QueuesListed) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            self.answers[node] = listed

    def response(self) -> HttpResponse:
        merged: dict[str, _Merged] = {}
        for node, listed in sorted(self.answers.items()):
            for summary in listed.queues:
                merged.setdefault(summary.queue, _Merged()).add(node, summary)
        names = sorted(merged)
        truncated = len(names) > self.queues_max or any(
            listed.truncated for listed in self.answers.values()
        )
        return json_response(
            200,
            {
                "queues": [
                    merged[name].json(name, self.config.for_queue(name).rate_per_s)
                    for name in names[: self.queues_max]
                ],
                "truncated": truncated,
                "members_answered": len(self.answers),
                "members_unanswered": sorted(self.waiting),
            },
        )


@dataclass(slots=True)
class _Merged:
    """One queue, summed over the members that listed it."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STATES, 0))
    oldest_eta_ms: int | None = None
    attempts_last_minute: int = 0
    paused_on: list[str] = field(default_factory=list)

    def add(self, node: str, summary: QueueSummary) -> None:
        for state, n in summary.counts:
            self.counts[state] += n
        eta_ms = summary.oldest_eta_ms
        if eta_ms is not None and (self.oldest_eta_ms is None or eta_ms < self.oldest_eta_ms):
            self.oldest_eta_ms = eta_ms
        self.attempts_last_minute += summary.attempts_last_minute
        if summary.paused:
            self.paused_on.append(node)

    def json(self, name: str, rate_per_s: float | None) -> dict[str, object]:
        eta_ms = self.oldest_eta_ms
        return {
            "queue": name,
            "counts": self.counts,
            "oldest_eta": None if eta_ms is None else eta_ms / 1000,
            "attempts_last_minute": self.attempts_last_minute,
            "rate_per_s": rate_per_s,
            "paused_on": self.paused_on,
        }
