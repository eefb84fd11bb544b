"""What a task is: the validated request to enqueue one (`TaskSpec`) and the record a node keeps."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .http import Headers


class TaskState(enum.Enum):
    SCHEDULED = "scheduled"
    """Waiting for its time."""
    DELIVERING = "delivering"
    """A delivery attempt is in flight."""
    RETRYING = "retrying"
    """An attempt failed; waiting for the next one."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Retries spent: a dead letter, kept and listed until re-run or deleted."""
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryOverrides:
    """Retry settings one task gives at enqueue; None means "use the queue's". Durations in ms.

    Validated as numbers when parsed; the queue decides how far a task may override it.
    """

    retry_limit: int | None = None
    age_limit_ms: int | None = None
    min_backoff_ms: int | None = None
    max_backoff_ms: int | None = None
    max_doublings: int | None = None
    deadline_ms: int | None = None
    """The delivery deadline of one attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """A validated enqueue request: everything needed to create a task.

    `headers` are the headers the webhook request carries besides the ones the node adds itself
    (Host, Content-Length, X-Task-*, User-Agent); it includes Content-Type when there is a body.
    """

    queue: str
    url: str
    method: str = "POST"
    client_id: str | None = None
    eta_ms: int
    headers: Headers = ()
    body: bytes = b""
    retry: RetryOverrides | None = None
    """None when the request gave no retry setting."""


class Task:
    """The record a node keeps for one task. Slots only: a node holds up to millions of these."""

    __slots__ = (
        "attempts",
        "body",
        "claimed_until_ms",
        "copy_index",
        "created_ms",
        "due_ms",
        "eta_ms",
        "executions",
        "finished_ms",
        "first_attempt_ms",
        "headers",
        "holders",
        "id",
        "last_attempt_ms",
        "last_error",
        "last_response_excerpt",
        "last_status",
        "method",
        "queue",
        "retry",
        "state",
        "url",
    )

    def __init__(
        self,
        *,
        id: str,
        queue: str,
        method: str,
        url: str,
        headers: Headers,
        body: bytes,
        eta_ms: int,
        created_ms: int,
        retry: RetryOverrides | None = None,
        holders: tuple[tuple[str, int], ...] = (),
        copy_index: int = 0,
    ) -> None:
        self.id = id
        self.queue = queue
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.eta_ms = eta_ms
        self.due_ms = eta_ms
        """When this task next fires (its ETA, or the time of its next retry)."""
        self.created_ms = created_ms
        self.retry = retry
        self.holders = holders
        """(node id, copy index) of every copy, this one included; () on a node of its own."""
        self.copy_index = copy_index
        self.claimed_until_ms: int | None = None
        """Another holder claimed the task (it is delivering it) until then."""
        self.state = TaskState.SCHEDULED
        self.attempts = 0
        """Delivery attempts started."""
        self.executions = 0
        """Attempts that got an HTTP answer (any status): App Engine's execution count."""
        self.first_attempt_ms: int | None = None
        self.last_attempt_ms: int | None = None
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.last_response_excerpt: bytes | None = None
        self.finished_ms: int | None = None

    def __lt__(self, other: Task) -> bool:
        # Breaks ties between tasks due at the same millisecond in the timer heap.
        return self.id < other.id
