"""What a node keeps on disk, as plain records, and their encoding to rows (docs/durability.md).

Pure: the shell (`miyamoto.io.durable`) owns the file, the transactions and fsync; this module
only says what the records are and turns them into column values and back. Decoding checks
everything, because a row may have been damaged or written by hand: a bad row raises
`RecordError` naming the column and what is wrong, never a half-built record.

Format 1 kept the membership's hard state (Raft's currentTerm, votedFor and "log", which here
is the member list); format 2 adds every task copy the node holds and the queues' pause state.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from typing import Final

from .messages import MEMBERS_MAX, Member, MemberList, is_node_id
from .task import RetryOverrides, Task, TaskState

FORMAT_VERSION: Final = 2
"""The layout of the data file. A node refuses a file with a newer version (it cannot know what
the newer records mean) and upgrades an older one in place (1 -> 2: the task tables are added)."""

UINT64_MAX: Final = 2**64 - 1
MEMBER_LIST_CHARS_MAX: Final = 64 * 1024
"""A member list of MEMBERS_MAX members is far smaller; anything longer is damage."""

Row = dict[str, int | str | None]
"""Column name -> value, as sqlite3 stores and returns them."""


class RecordError(Exception):
    """A stored record cannot be read back; `str()` names the column and the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipHardState:
    """What the membership must find again after a restart to keep Raft's promises: the
    cluster it belongs to, who it is (id and incarnation: a restarted node is the same member),
    the current term and its vote in it (never two votes in a term), and the member lists (so a
    list a majority acknowledged survives every election)."""

    cluster_id: int
    """0 while the node has not joined any cluster yet."""
    self_id: str
    incarnation: int
    term: int
    voted_for: Member | None
    """The member this node voted for in `term`, if any."""
    latest: MemberList
    committed: MemberList

    def problem(self) -> str | None:
        """What makes this state impossible (damage, or a bug), or None."""
        if not 0 <= self.cluster_id <= UINT64_MAX or not 0 <= self.incarnation <= UINT64_MAX:
            return "cluster id or incarnation outside 0..2**64-1"
        if not is_node_id(self.self_id):
            return f"not a node id: {self.self_id!r}"
        if self.term < 0:
            return "negative term"
        for name, members in (("latest", self.latest), ("committed", self.committed)):
            problem = members.problem()
            if problem is not None:
                return f"{name} member list: {problem}"
            if members.epoch_term > self.term:
                return f"{name} member list is from term {members.epoch_term}, after {self.term}"
        if self.committed.version > self.latest.version:
            return "the committed member list is newer than the latest one"
        if self.cluster_id == 0 and self.latest.members:
            return "members without a cluster id"
        return None


MEMBERSHIP_COLUMNS: Final = (
    "cluster_id",
    "node_id",
    "incarnation",
    "term",
    "voted_for",
    "latest",
    "committed",
)
"""The `membership` table's columns, in order. 64-bit unsigned ids are decimal TEXT (SQLite's
INTEGER is signed); member lists and the vote are JSON, readable in the sqlite3 shell."""


def encode_hard_state(state: MembershipHardState) -> Row:
    assert state.problem() is None, (state.problem(), state)
    voted_for = None
    if state.voted_for is not None:
        voted_for = json.dumps([state.voted_for.id, str(state.voted_for.incarnation)])
    return {
        "cluster_id": str(state.cluster_id),
        "node_id": state.self_id,
        "incarnation": str(state.incarnation),
        "term": state.term,
        "voted_for": voted_for,
        "latest": _encode_member_list(state.latest),
        "committed": _encode_member_list(state.committed),
    }


def decode_hard_state(row: Row) -> MembershipHardState:
    """The state in `row`; RecordError if any column is missing, mistyped or inconsistent."""
    voted_text = row.get("voted_for")
    voted_for = None
    if voted_text is not None:
        voted = _json(_text(voted_text, "voted_for"), "voted_for")
        voted_for = _member(voted, "voted_for")
    state = MembershipHardState(
        cluster_id=_uint64(row.get("cluster_id"), "cluster_id"),
        self_id=_text(row.get("node_id"), "node_id"),
        incarnation=_uint64(row.get("incarnation"), "incarnation"),
        term=_int(row.get("term"), "term"),
        voted_for=voted_for,
        latest=_decode_member_list(row.get("latest"), "latest"),
        committed=_decode_member_list(row.get("committed"), "committed"),
    )
    problem = state.problem()
    if problem is not None:
        raise RecordError(f"membership: {problem}")
    return state


def _encode_member_list(members: MemberList) -> str:
    return json.dumps(
        {
            "epoch": members.epoch,
            "epoch_term": members.epoch_term,
            "members": [[m.id, str(m.incarnation)] for m in members.members],
        },
        separators=(",", ":"),
    )


def _decode_member_list(value: object, column: str) -> MemberList:
    text = _text(value, column)
    if len(text) > MEMBER_LIST_CHARS_MAX:
        raise RecordError(f"{column}: longer than {MEMBER_LIST_CHARS_MAX} characters")
    document = _json(text, column)
    if not isinstance(document, dict) or set(document) != {"epoch", "epoch_term", "members"}:
        raise RecordError(f"{column}: not an object with epoch, epoch_term and members")
    members = document["members"]
    if not isinstance(members, list) or len(members) > MEMBERS_MAX:
        raise RecordError(f"{column}: members is not a list of at most {MEMBERS_MAX}")
    return MemberList(
        epoch=_int(document["epoch"], f"{column}.epoch"),
        epoch_term=_int(document["epoch_term"], f"{column}.epoch_term"),
        members=tuple(_member(m, f"{column}.members") for m in members),
    )


def _member(value: object, column: str) -> Member:
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
        raise RecordError(f"{column}: not a [node id, incarnation] pair")
    if not is_node_id(value[0]):
        raise RecordError(f"{column}: not a node id: {value[0]!r}")
    return Member(id=value[0], incarnation=_uint64(value[1], column))


def _json(text: str, column: str) -> object:
    try:
        return json.loads(text)
    except ValueError as error:
        raise RecordError(f"{column}: not JSON ({error})") from None


def _text(value: object, column: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{column}: expected text, found {type(value).__name__}")
    return value


def _int(value: object, column: str) -> int:
    # bool is an int in Python; a JSON true is damage, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RecordError(f"{column}: expected an integer 0 or more, found {value!r}")
    return value


def _uint64(value: object, column: str) -> int:
    text = _text(value, column)
    if not text.isascii() or not text.isdigit() or len(text) > 20 or int(text) > UINT64_MAX:
        raise RecordError(f"{column}: expected a decimal 0..2**64-1, found {text!r}")
    return int(text)


# -- phase 2: task copies and queue pause state ------------------------------------------------

TASK_COLUMNS: Final = (
    "queue",
    "id",
    "state",
    "copy_index",
    "holders",
    "method",
    "url",
    "headers",
    "body",
    "eta_ms",
    "due_ms",
    "created_ms",
    "retry",
    "attempts",
    "executions",
    "first_attempt_ms",
    "last_attempt_ms",
    "last_status",
    "last_error",
    "response_excerpt",
    "finished_ms",
)
"""The `tasks` table's columns, in order (rows are tuples in this order: one a task copy)."""

TaskRow = tuple[object, ...]

RETRY_FIELDS: Final = tuple(RetryOverrides.__dataclass_fields__)
PAIRS_CACHED_MAX: Final = 4096
"""Encoded holder and header lists kept (least recently used first out)."""


def encode_task(task: Task) -> TaskRow:
    """`task` as a row. A copy being delivered is stored as scheduled: after a crash its
    attempt is made again (at-least-once, as after any crash of the deliverer)."""
    state = TaskState.SCHEDULED if task.state is TaskState.DELIVERING else task.state
    retry = None
    if task.retry is not None:
        retry = json.dumps({f: getattr(task.retry, f) for f in RETRY_FIELDS}, separators=(",", ":"))
    return (
        task.queue,
        task.id,
        state.value,
        task.copy_index,
        _pairs_json(task.holders),
        task.method,
        task.url,
        _pairs_json(task.headers),
        task.body,
        task.eta_ms,
        task.due_ms,
        task.created_ms,
        retry,
        task.attempts,
        task.executions,
        task.first_attempt_ms,
        task.last_attempt_ms,
        task.last_status,
        task.last_error,
        task.last_response_excerpt,
        task.finished_ms,
    )


@functools.lru_cache(maxsize=PAIRS_CACHED_MAX)
def _pairs_json(pairs: tuple[tuple[str, str | int], ...]) -> str:
    # Holder lists are shared by millions of copies and most tasks carry one of a few header
    # lists: caching their JSON cut encoding a task from 9 to 1.5 us (measured).
    return json.dumps(pairs, separators=(",", ":"))


def decode_task(row: TaskRow) -> Task:
    """The copy in `row`; RecordError naming the column if any is missing or mistyped.

    A restart decodes every row (a million in under 15 s is the goal), so this unpacks the
    tuple instead of building a dict, and the holder and header lists, shared by most rows,
    are decoded once per distinct text (`_holders`, `_headers`), also sharing their tuples."""
    if len(row) != len(TASK_COLUMNS):
        raise RecordError(f"tasks: expected {len(TASK_COLUMNS)} columns, found {len(row)}")
    (
        queue,
        task_id,
        state_text,
        copy_index,
        holders,
        method,
        url,
        headers,
        body,
        eta_ms,
        due_ms,
        created_ms,
        retry,
        attempts,
        executions,
        first_attempt_ms,
        last_attempt_ms,
        last_status,
        last_error,
        excerpt,
        finished_ms,
    ) = row
    state = _STATES.get(state_text) if isinstance(state_text, str) else None
    if state is None:
        raise RecordError(f"state: not a task state: {_text(state_text, 'state')!r}")
    if state is TaskState.DELIVERING:
        raise RecordError("state: a copy is never stored as delivering")
    task = Task(
        id=_text(task_id, "id"),
        # Shared, as the copies an enqueue makes share them: ~100 bytes a task less.
        queue=sys.intern(_text(queue, "queue")),
        method=sys.intern(_text(method, "method")),
        url=_text(url, "url"),
        headers=_headers(_text(headers, "headers")),
        body=_blob(body, "body"),
        eta_ms=_int(eta_ms, "eta_ms"),
        created_ms=_int(created_ms, "created_ms"),
        retry=_retry(retry),
        holders=_holders(_text(holders, "holders")),
        copy_index=_int(copy_index, "copy_index"),
    )
    task.state = state
    if due_ms != task.eta_ms:  # else the same int object as eta_ms, as in memory
        task.due_ms = _int(due_ms, "due_ms")
    task.attempts = _int(attempts, "attempts")
    task.executions = _int(executions, "executions")
    task.first_attempt_ms = _optional_int(first_attempt_ms, "first_attempt_ms")
    task.last_attempt_ms = _optional_int(last_attempt_ms, "last_attempt_ms")
    task.last_status = _optional_int(last_status, "last_status")
    task.last_error = None if last_error is None else _text(last_error, "last_error")
    task.last_response_excerpt = None if excerpt is None else _blob(excerpt, "response_excerpt")
    task.finished_ms = _optional_int(finished_ms, "finished_ms")
    if state.is_final and task.finished_ms is None:
        raise RecordError(f"finished_ms: missing for a {state.value} task")
    return task


_STATES: Final = {state.value: state for state in TaskState}


def _optional_int(value: object, column: str) -> int | None:
    return None if value is None else _int(value, column)


def _blob(value: object, column: str) -> bytes:
    if not isinstance(value, bytes):
        raise RecordError(f"{column}: expected a blob, found {type(value).__name__}")
    return value


@functools.lru_cache(maxsize=PAIRS_CACHED_MAX)
def _headers(text: str) -> tuple[tuple[str, str], ...]:
    document = _json(text, "headers")
    if not isinstance(document, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(p, str) for p in h)
        for h in document
    ):
        raise RecordError("headers: not a list of [name, value] pairs")
    return tuple((h[0], h[1]) for h in document)


@functools.lru_cache(maxsize=PAIRS_CACHED_MAX)
def _holders(text: str) -> tuple[tuple[str, int], ...]:
    document = _json(text, "holders")
    if not isinstance(document, list) or len(document) > MEMBERS_MAX:
        raise RecordError(f"holders: not a list of at most {MEMBERS_MAX}")
    holders = []
    for holder in document:
        if not isinstance(holder, list) or len(holder) != 2 or not isinstance(holder[0], str):
            raise RecordError("holders: not a [node id, copy index] pair")
        if not is_node_id(holder[0]):
            raise RecordError(f"holders: not a node id: {holder[0]!r}")
        holders.append((holder[0], _int(holder[1], "holders")))
    return tuple(holders)


def _retry(value: object) -> RetryOverrides | None:
    if value is None:
        return None
    document = _json(_text(value, "retry"), "retry")
    if not isinstance(document, dict) or not set(document) <= set(RETRY_FIELDS):
        raise RecordError(f"retry: not an object of {', '.join(RETRY_FIELDS)}")
    return RetryOverrides(
        **{k: None if v is None else _int(v, f"retry.{k}") for k, v in document.items()}
    )
