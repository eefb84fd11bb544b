"""Messages between the holders of a task's copies (replication, claims, cancel, queries).

Times travel as durations (`lease_ms`), never as the sender's clock readings, so clock skew
between nodes cannot stretch or shrink a lease. Absolute task times (`eta_ms`) are the user's
wall-clock ETA and mean the same on every node.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .http import Headers
from .task import RetryOverrides

Holders = tuple[tuple[str, int], ...]
"""(node id, copy index) for every copy of a task; copy k is due at ETA + k x replica delay."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCopy:
    queue: str
    id: str
    method: str
    url: str
    headers: Headers
    body: bytes
    eta_ms: int
    created_ms: int
    holders: Holders
    attempts: int = 0
    executions: int = 0
    retry: RetryOverrides | None = None
    lease_ms: int = 0
    """Hold this copy back for this long after it arrives: another holder is delivering."""
    client_id: bool = False
    """The id is the client's, so copies of it may exist already (a repeated enqueue): a copy
    stored fresh when it is already due asks the members before it fires."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCopy:
    """Keep this copy. Answered with StoreAck carrying the same `ref`."""

    ref: int
    copy: TaskCopy


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreAck:
    ref: int
    queue: str
    task_id: str
    stored: bool
    """False: a task with this id exists already (or is remembered); it was left as it is."""
    state: str
    """The state of the holder's copy after the request."""
    holders: Holders = ()
    """When not stored: the holders of the copy this node already had."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """The sender is delivering (or will retry) this task: hold your copy back for `lease_ms`."""

    queue: str
    task_id: str
    lease_ms: int
    attempts: int
    executions: int
    delivering: bool
    """An attempt is in flight (not a retry, nor a turn awaited in the queue's line): until
    the lease ends, a cancel of the task must be refused by every copy, not by some."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """The task reached a final state (succeeded or failed) at the sender: do the same."""

    queue: str
    task_id: str
    state: str
    attempts: int
    executions: int
    last_status: int | None
    last_error: str | None
    excerpt: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldersChanged:
    """The copies of this task now live on `holders` (after a repair)."""

    queue: str
    task_id: str
    holders: Holders


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTask:
    """Cancel your copy if it has not started; answer with CancelResult."""

    ref: int
    queue: str
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelResult:
    ref: int
    state: str | None
    """The copy's state after the request; None when this node holds no such task."""
    holders: Holders


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryTask:
    ref: int
    queue: str
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryResult:
    ref: int
    task_json: str | None
    """The holder's view of the task as the JSON of `GET /{queue}/{id}`; None if it has none."""


class QueueCommandKind(enum.Enum):
    PAUSE = "pause"
    RESUME = "resume"
    PURGE = "purge"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCommand:
    """Pause, resume or purge a queue on this member; answered with QueueCommandDone."""

    ref: int
    queue: str
    command: QueueCommandKind


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCommandDone:
    ref: int
    affected: int
    """Copies deleted by a purge (0 for pause and resume)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStatsQuery:
    """This member's share of `GET /{queue}`: the tasks it answers for (its primary copies)."""

    ref: int
    queue: str
    state: str | None
    """List the tasks in this state too (up to `limit`), e.g. the dead letters."""
    limit: int
    after: tuple[int, str] | None = None
    """List only tasks after this (ETA ms, task id) (a page's cursor); None: from the first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    ref: int
    counts: tuple[tuple[str, int], ...]
    oldest_eta_ms: int | None
    attempts_last_minute: int
    paused: bool
    rate_millis_per_s: int | None
    """This member's share of the queue's rate, in thousandths of a task per second (the wire
    carries no floats); None: no rate limit."""
    tasks: tuple[str, ...]
    """The listed tasks as JSON, oldest ETA first."""
    complete_to: tuple[int, str] | None = None
    """The listing holds every task of this member up to this (ETA ms, task id), inclusive;
    None: up to the end of the queue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuesQuery:
    """This member's share of `GET /_queues`: every queue it knows, with the tasks it answers
    for (its primary copies); answered with QueuesListed."""

    ref: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSummary:
    """One queue in a QueuesListed: what this member knows of it."""

    queue: str
    counts: tuple[tuple[str, int], ...]
    oldest_eta_ms: int | None
    attempts_last_minute: int
    paused: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuesListed:
    ref: int
    queues: tuple[QueueSummary, ...]
    """Sorted by name; at most the active queue limit."""
    truncated: bool
    """This member knows more queues than it listed (the first by name are listed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RerunTask:
    """Run a failed task again (from a fresh retry budget); answered with RerunResult."""

    ref: int
    queue: str
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RerunResult:
    ref: int
    state: str | None
    """The copy's state before the request (re-run if it was failed); None when this member
    holds no such task."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unconfirmed:
    """The enqueue that stored your copy ended without every holder's answer (or while the
    member list changed): the task may live on holders that do not know your copy, and their
    finished notice would never reach it. Ask them before it fires."""

    queue: str
    task_id: str


ReplicaMessage = (
    StoreCopy
    | StoreAck
    | Claim
    | Finished
    | HoldersChanged
    | CancelTask
    | CancelResult
    | QueryTask
    | QueryResult
    | QueueCommand
    | QueueCommandDone
    | QueueStatsQuery
    | QueueStats
    | QueuesQuery
    | QueuesListed
    | RerunTask
    | RerunResult
    | Unconfirmed
)
