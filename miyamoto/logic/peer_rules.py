"""The rules a decoded peer message must pass before the node uses it (the codec applies them).

The codec checks shapes and types; this checks meaning, with the same rules as client input:
task copies carry a URL, method, headers, id and queue an enqueue would accept, within the
limits; states are `TaskState` values (final ones where the message says "finished"); the task
JSON of `QueryResult` and `QueueStats` is parsed and has the fields the node reads, of the right
types; counts and durations are within the limits. A peer is a cluster member holding the key
(peer_auth.py), so this is not about malice alone: a bug or a version skew in one node must cost
a refused message, never a crash or a task stuck in a state no code path leaves.

`problem(message, limits)` is the whole interface: what is wrong, or None.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from .enqueue_parse import METHODS, validate_queue_name
from .enqueue_values import CLIENT_ID, parse_task_headers
from .errors import ClientError
from .http import Headers
from .limits import Limits
from .messages import (
    MEMBERS_MAX,
    Heartbeat,
    HeartbeatAck,
    JoinRedirect,
    JoinRequest,
    LeaveRequest,
    PeerMessage,
    PreVoteRequest,
    PreVoteResponse,
    VoteRequest,
    VoteResponse,
    is_node_id,
)
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
    QueueSummary,
    RerunResult,
    RerunTask,
    StoreAck,
    StoreCopy,
    TaskCopy,
    Unconfirmed,
)
from .task import RetryOverrides, TaskState
from .urls import parse_webhook_url

STATES: Final = frozenset(state.value for state in TaskState)
FINAL_STATES: Final = frozenset(state.value for state in TaskState if state.is_final)
HOLDERS_MAX: Final = MEMBERS_MAX
"""Copies of one task: at most one a member (repairs may add some beyond the replica count)."""
TIME_MS_MAX: Final = 2**53
"""Absolute times and durations in ms: JSON-exact, and far past any real date (285,000 years)."""
COUNT_MAX: Final = 2**31 - 1
"""Attempts, executions and similar counters."""
ERROR_CHARS_MAX: Final = 4096
"""`Finished.last_error`: the node's own messages are far shorter."""
TASK_JSON_CHARS_MAX: Final = 256 * 1024
"""One task as JSON (URL, error and a 1 KiB excerpt, escaped at worst six times over)."""


class _Refused(Exception):
    pass


def problem(message: PeerMessage, limits: Limits) -> str | None:
    """What makes `message` unusable, or None when the node may act on it."""
    check = _CHECKS.get(type(message))
    if check is None:
        return None
    try:
        check(message, limits)
    except _Refused as refused:
        return str(refused)
    except ClientError as error:
        return error.message
    return None


# -- the pieces -----------------------------------------------------------------------------------


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise _Refused(what)


# The checks a task copy passes run for every replicated enqueue, so they build no message
# unless they fail (f-strings built eagerly were a third of their cost).


def _count(value: int, what: str, maximum: int = COUNT_MAX) -> None:
    if not 0 <= value <= maximum:
        raise _Refused(f"{what} must be from 0 to {maximum}")


def _time_ms(value: int | None, what: str) -> None:
    if value is not None and not 0 <= value <= TIME_MS_MAX:
        raise _Refused(f"{what} must be from 0 to {TIME_MS_MAX}")


def _task_key(queue: str, task_id: str, limits: Limits) -> None:
    validate_queue_name(queue, limits)
    if not (
        0 < len(task_id) <= limits.task_id_chars_max and CLIENT_ID.fullmatch(task_id) is not None
    ):
        raise _Refused(f"task id must be 1 to {limits.task_id_chars_max} of [A-Za-z0-9_-]")


def _listing_key(key: tuple[int, str] | None, what: str, limits: Limits) -> None:
    """A place in a queue's listing: (ETA ms, task id)."""
    if key is not None:
        _time_ms(key[0], what)
        maximum = limits.task_id_chars_max
        if not (0 < len(key[1]) <= maximum and CLIENT_ID.fullmatch(key[1]) is not None):
            raise _Refused(f"{what}: a task id of 1 to {maximum} of [A-Za-z0-9_-]")


def _state(value: str | None, what: str, allowed: frozenset[str] = STATES) -> None:
    if value is not None and value not in allowed:
        raise _Refused(f"{what} must be one of {sorted(allowed)}")


def _holders(holders: Holders, *, empty_ok: bool) -> None:
    if not ((empty_ok or holders) and len(holders) <= HOLDERS_MAX):
        raise _Refused(f"holders: {'0' if empty_ok else '1'} to {HOLDERS_MAX} (node, copy) pairs")
    nodes = set()
    for node, index in holders:
        if not is_node_id(node):
            raise _Refused("holders: node ids are host:port")
        if not 0 <= index <= COUNT_MAX:
            raise _Refused(f"holders: copy indexes are 0 to {COUNT_MAX}")
        nodes.add(node)
    if len(nodes) != len(holders):
        raise _Refused("holders: a node holds one copy")


def _retry(retry: RetryOverrides | None, limits: Limits) -> None:
    if retry is None:
        return
    if retry.retry_limit is not None and not -1 <= retry.retry_limit <= COUNT_MAX:
        raise _Refused(f"retry_limit: -1 to {COUNT_MAX}")
    if retry.max_doublings is not None:
        _count(retry.max_doublings, "max_doublings")
    for what in ("age_limit_ms", "min_backoff_ms", "max_backoff_ms"):
        _time_ms(getattr(retry, what), what)
    low, high = retry.min_backoff_ms, retry.max_backoff_ms
    _require(low is None or high is None or low <= high, "min_backoff_ms over max_backoff_ms")
    deadline = retry.deadline_ms
    if deadline is not None and not 1 <= deadline <= limits.delivery_deadline_ms_max:
        raise _Refused(f"deadline_ms: 1 to {limits.delivery_deadline_ms_max}")


VALID_HEADERS_REMEMBERED_MAX: Final = 256
_valid_headers: dict[Headers, None] = {}
"""Header tuples that passed, by value: most tasks carry one of a few (often just a
content-type), and checking them again was a third of a copy's checks."""


def _headers(headers: Headers, limits: Limits) -> None:
    if headers in _valid_headers:
        return
    names = [name for name, _ in headers]
    _require(len(set(names)) == len(names), "headers: a name appears once")
    _require(all(name == name.lower() for name in names), "headers: names are lower-case")
    stored = parse_task_headers(dict(headers), limits)  # the enqueue's rules, ClientError if broken
    _require(stored == headers, "headers: values have no surrounding blanks")
    if len(_valid_headers) >= VALID_HEADERS_REMEMBERED_MAX:
        _valid_headers.clear()  # bounded; cheaper than LRU bookkeeping on every hit
    _valid_headers[headers] = None


def _task_copy(copy: TaskCopy, limits: Limits) -> None:
    _task_key(copy.queue, copy.id, limits)
    if copy.method not in METHODS:
        raise _Refused(f"method must be one of {sorted(METHODS)}")
    if parse_webhook_url(copy.url, limits).url != copy.url:
        raise _Refused("url is not in its canonical form")
    _headers(copy.headers, limits)
    if len(copy.body) > limits.task_body_bytes_max:
        raise _Refused(f"body: at most {limits.task_body_bytes_max} bytes")
    _time_ms(copy.eta_ms, "eta_ms")
    _time_ms(copy.created_ms, "created_ms")
    _holders(copy.holders, empty_ok=False)
    _count(copy.attempts, "attempts")
    _count(copy.executions, "executions")
    _retry(copy.retry, limits)
    _time_ms(copy.lease_ms, "lease_ms")


def _task_json(text: str, what: str) -> None:
    """`text` must be a task as `GET /{queue}/{id}` renders it, with what the node reads."""
    _require(len(text) <= TASK_JSON_CHARS_MAX, f"{what}: at most {TASK_JSON_CHARS_MAX} chars")
    try:
        view = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _Refused(f"{what}: not JSON") from None
    _require(type(view) is dict, f"{what}: a JSON object")
    _require(type(view.get("id")) is str, f"{what}: id is a string")
    _require(view.get("state") in STATES, f"{what}: state is one of {sorted(STATES)}")
    _require(_is_count(view.get("attempts")), f"{what}: attempts is a count")
    _require(_is_number(view.get("eta")), f"{what}: eta is a number")
    finished = view.get("finished")
    _require(finished is None or _is_number(finished), f"{what}: finished is null or a number")
    holders = view.get("holders")
    _require(
        type(holders) is list
        and len(holders) <= HOLDERS_MAX
        and all(
            type(h) is dict and type(h.get("node")) is str and _is_count(h.get("copy"))
            for h in holders
        ),
        f"{what}: holders is a list of at most {HOLDERS_MAX} {{node, copy}}",
    )


def _no_constant(text: str) -> Any:
    raise ValueError(f"no {text}")


def _is_count(value: object) -> bool:
    return type(value) is int and 0 <= value <= COUNT_MAX


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and 0 <= value <= TIME_MS_MAX  # type: ignore[operator]


# -- one check per message type -------------------------------------------------------------------


def _store_copy(m: StoreCopy, limits: Limits) -> None:
    _task_copy(m.copy, limits)


def _store_ack(m: StoreAck, limits: Limits) -> None:
    _task_key(m.queue, m.task_id, limits)
    _state(m.state, "state")
    _holders(m.holders, empty_ok=True)


def _claim(m: Claim, limits: Limits) -> None:
    _task_key(m.queue, m.task_id, limits)
    _time_ms(m.lease_ms, "lease_ms")
    _count(m.attempts, "attempts")
    _count(m.executions, "executions")


def _finished(m: Finished, limits: Limits) -> None:
    _task_key(m.queue, m.task_id, limits)
    _state(m.state, "state", FINAL_STATES)
    _count(m.attempts, "attempts")
    _count(m.executions, "executions")
    _require(m.last_status is None or 100 <= m.last_status <= 999, "last_status: 100 to 999")
    _require(
        m.last_error is None or len(m.last_error) <= ERROR_CHARS_MAX,
        f"last_error: at most {ERROR_CHARS_MAX} characters",
    )
    excerpt_max = limits.response_excerpt_bytes_max
    _require(
        m.excerpt is None or len(m.excerpt) <= excerpt_max,
        f"excerpt: at most {excerpt_max} bytes",
    )


def _holders_changed(m: HoldersChanged, limits: Limits) -> None:
    _task_key(m.queue, m.task_id, limits)
    _holders(m.holders, empty_ok=False)


def _task_ask(m: CancelTask | QueryTask | RerunTask | Unconfirmed, limits: Limits) -> None:
    _task_key(m.queue, m.task_id, limits)


def _cancel_result(m: CancelResult, limits: Limits) -> None:
    _state(m.state, "state")
    _holders(m.holders, empty_ok=True)


def _query_result(m: QueryResult, limits: Limits) -> None:
    if m.task_json is not None:
        _task_json(m.task_json, "task_json")


def _queue_command(m: QueueCommand, limits: Limits) -> None:
    validate_queue_name(m.queue, limits)


def _queue_command_done(m: QueueCommandDone, limits: Limits) -> None:
    _count(m.affected, "affected", limits.tasks_max)


def _queue_stats_query(m: QueueStatsQuery, limits: Limits) -> None:
    validate_queue_name(m.queue, limits)
    _state(m.state, "state")
    maximum = limits.listing_tasks_max
    _require(1 <= m.limit <= maximum, f"limit: 1 to {maximum}")
    _listing_key(m.after, "after", limits)


def _queue_stats(m: QueueStats, limits: Limits) -> None:
    _state_counts(m.counts, limits)
    _time_ms(m.oldest_eta_ms, "oldest_eta_ms")
    _count(m.attempts_last_minute, "attempts_last_minute")
    _time_ms(m.rate_millis_per_s, "rate_millis_per_s")
    maximum = limits.listing_tasks_max
    _require(len(m.tasks) <= maximum, f"tasks: at most {maximum}")
    for index, text in enumerate(m.tasks):
        _task_json(text, f"tasks[{index}]")
    _listing_key(m.complete_to, "complete_to", limits)


def _state_counts(counts: tuple[tuple[str, int], ...], limits: Limits) -> None:
    states = [state for state, _ in counts]
    _require(
        all(state in STATES for state in states) and len(set(states)) == len(states),
        f"counts: each state once, one of {sorted(STATES)}",
    )
    _require(
        all(0 <= n <= limits.tasks_max for _, n in counts),
        f"counts: 0 to {limits.tasks_max}",
    )


def _queues_query(m: QueuesQuery, limits: Limits) -> None:
    """Nothing but the ref, which any integer may be."""


def _queue_summary(m: QueueSummary, limits: Limits) -> None:
    validate_queue_name(m.queue, limits)
    _state_counts(m.counts, limits)
    _time_ms(m.oldest_eta_ms, "oldest_eta_ms")
    _count(m.attempts_last_minute, "attempts_last_minute")


def _queues_listed(m: QueuesListed, limits: Limits) -> None:
    maximum = limits.active_queues_max
    _require(len(m.queues) <= maximum, f"queues: at most {maximum}")
    names = [summary.queue for summary in m.queues]
    _require(names == sorted(set(names)), "queues: each name once, sorted")
    for summary in m.queues:
        _queue_summary(summary, limits)


def _rerun_result(m: RerunResult, limits: Limits) -> None:
    _state(m.state, "state")


def _membership(m: Any, limits: Limits) -> None:
    """Member lists, terms and epochs are checked by the membership against its own state."""


_CHECKS: Final[dict[type[Any], Callable[[Any, Limits], None]]] = {
    StoreCopy: _store_copy,
    StoreAck: _store_ack,
    Claim: _claim,
    Finished: _finished,
    HoldersChanged: _holders_changed,
    CancelTask: _task_ask,
    CancelResult: _cancel_result,
    QueryTask: _task_ask,
    QueryResult: _query_result,
    QueueCommand: _queue_command,
    QueueCommandDone: _queue_command_done,
    QueueStatsQuery: _queue_stats_query,
    QueueStats: _queue_stats,
    QueuesQuery: _queues_query,
    QueuesListed: _queues_listed,
    RerunTask: _task_ask,
    RerunResult: _rerun_result,
    Unconfirmed: _task_ask,
    JoinRequest: _membership,
    JoinRedirect: _membership,
    Heartbeat: _membership,
    HeartbeatAck: _membership,
    PreVoteRequest: _membership,
    PreVoteResponse: _membership,
    VoteRequest: _membership,
    VoteResponse: _membership,
    LeaveRequest: _membership,
}
"""Every message type; a test checks that none is missing."""
