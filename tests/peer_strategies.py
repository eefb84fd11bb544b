"""Hypothesis strategies for peer messages that pass the codec and its rules (peer_rules.py) but
say anything a confused or hostile member could: unknown refs, tasks it does not hold, final
states for live tasks, any term, lists from nowhere. Built from the messages' type hints, with
the values of fields the rules constrain drawn by field name from small pools (so that they hit
the node's tasks and pending requests)."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from hypothesis import strategies as st

from miyamoto.logic import codec
from miyamoto.logic.codec import WIRE_NAMES
from miyamoto.logic.enqueue_parse import METHODS
from miyamoto.logic.messages import Envelope, NodeIdFormat
from miyamoto.logic.peer_rules import FINAL_STATES, STATES
from miyamoto.logic.replica_messages import QueueSummary
from miyamoto.logic.task import RetryOverrides

T0_MS = 1_700_000_000_000
NODE_IDS = ("10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000", "127.0.0.1:8088")
TASK_IDS = ("t1", "t2", "a2c0d6a4-6a3f-4e8e-9a1b-0c1d2e3f4a5b")
QUEUES = ("q", "other")
URLS = ("http://127.0.0.1:9/hook", "https://example.com/x?y=1")

node_ids = st.sampled_from(NODE_IDS)
counts = st.integers(0, 1000)
times_ms = st.integers(T0_MS - 10_000_000, T0_MS + 10_000_000)
durations_ms = st.integers(0, 600_000)
u64 = st.integers(0, codec.INT_MAX) | st.sampled_from([2**53, 2**63, 2**64 - 2, 2**64 - 1])
"""Any 64-bit value, and the ones at the edges often."""


@st.composite
def holders(draw: st.DrawFn, *, empty_ok: bool = False) -> tuple[tuple[str, int], ...]:
    nodes = draw(st.lists(node_ids, min_size=0 if empty_ok else 1, max_size=3, unique=True))
    return tuple((node, draw(st.integers(0, 4))) for node in nodes)


@st.composite
def task_views(draw: st.DrawFn) -> str:
    view = {
        "id": draw(st.sampled_from(TASK_IDS)),
        "queue": draw(st.sampled_from(QUEUES)),
        "state": draw(st.sampled_from(sorted(STATES))),
        "attempts": draw(counts),
        "eta": draw(times_ms) / 1000,
        "finished": draw(st.none() | times_ms.map(lambda ms: ms / 1000)),
        "holders": [{"node": n, "copy": k} for n, k in draw(holders())],
    }
    return json.dumps(view)


retries = st.none() | st.builds(
    RetryOverrides,
    retry_limit=st.none() | st.integers(-1, 10),
    age_limit_ms=st.none() | durations_ms,
    min_backoff_ms=st.none() | st.integers(0, 1000),
    max_backoff_ms=st.none() | st.integers(1000, 60_000),
    max_doublings=st.none() | st.integers(0, 10),
    deadline_ms=st.none() | st.integers(1, 60_000),
)

@st.composite
def queue_summaries(draw: st.DrawFn) -> tuple[QueueSummary, ...]:
    """A member's queue list: each name once, sorted (the rules refuse anything else)."""
    names = sorted(draw(st.lists(st.sampled_from(QUEUES), unique=True, max_size=2)))
    return tuple(dataclasses.replace(draw(strategy_for(QueueSummary)), queue=n) for n in names)


_BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "queue": st.sampled_from(QUEUES),
    "id": st.sampled_from(TASK_IDS),
    "task_id": st.sampled_from(TASK_IDS),
    "url": st.sampled_from(URLS),
    "method": st.sampled_from(sorted(METHODS)),
    "headers": st.sampled_from([(), (("content-type", "text/plain"),)]),
    "body": st.binary(max_size=50),
    "holders": holders(empty_ok=True),
    "task_json": st.none() | task_views(),
    "tasks": st.lists(task_views(), max_size=2).map(tuple),
    "counts": st.lists(st.sampled_from(sorted(STATES)), unique=True, max_size=3).flatmap(
        lambda states: st.tuples(*[st.tuples(st.just(s), counts) for s in states])
    ),
    "limit": st.integers(1, 1000),
    "ref": st.integers(-3, 20),
    "last_status": st.none() | st.integers(100, 599),
    "last_error": st.none() | st.text(max_size=30),
    "excerpt": st.none() | st.binary(max_size=40),
    "eta_ms": times_ms,
    "created_ms": times_ms,
    "oldest_eta_ms": st.none() | times_ms,
    "lease_ms": durations_ms,
    "attempts": counts,
    "executions": counts,
    "affected": counts,
    "attempts_last_minute": counts,
    "rate_millis_per_s": st.none() | st.integers(0, 10**6),
    "retry": retries,
    "queues": queue_summaries(),
    "after": st.none() | st.tuples(times_ms, st.sampled_from(TASK_IDS)),
    "complete_to": st.none() | st.tuples(times_ms, st.sampled_from(TASK_IDS)),
}
"""Fields the rules constrain, by name, as valid values."""


def strategy_for(
    annotation: Any, owner: type | None = None, name: str = "", *, loose: bool = False
) -> Any:
    """Values the rules accept; with `loose`, constrained fields are sometimes anything of
    their type (the rules must refuse what is wrong: a state "done!", a URL "javascript:")."""
    valid = _valid_for(annotation, owner, name, loose)
    if loose and owner is not None and name and (name == "state" or name in _BY_NAME):
        return st.one_of(valid, valid, valid, _generic(annotation, loose))
    return valid


def _valid_for(annotation: Any, owner: type | None, name: str, loose: bool) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *metadata = get_args(annotation)
        if any(isinstance(m, NodeIdFormat) for m in metadata):
            return node_ids
        return strategy_for(base, loose=loose)
    if name == "state":
        states = (
            sorted(FINAL_STATES)
            if owner is not None and owner.__name__ == "Finished"
            else (sorted(STATES))
        )
        chosen = st.sampled_from(states)
        optional = get_origin(annotation) in (typing.Union, types.UnionType)
        return st.none() | chosen if optional else chosen
    if name == "holders" and owner is not None and owner.__name__ in ("TaskCopy", "HoldersChanged"):
        return holders()
    if name in _BY_NAME:
        return _BY_NAME[name]
    return _generic(annotation, loose)


def _generic(annotation: Any, loose: bool) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _valid_for(annotation, None, "", loose)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        # Terms and epochs inside membership messages: anything, hostile ones included.
        return st.integers(0, 50) | u64
    if annotation is str:
        return st.text(max_size=20)
    if annotation is bytes:
        return st.binary(max_size=40)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if origin is typing.Union or origin is types.UnionType:
        (present,) = [a for a in get_args(annotation) if a is not type(None)]
        return st.none() | strategy_for(present, loose=loose)
    if origin is tuple:
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0], loose=loose), max_size=3).map(tuple)
        return st.tuples(*[strategy_for(a, loose=loose) for a in args])
    assert isinstance(annotation, type) and dataclasses.is_dataclass(annotation), annotation
    hints = get_type_hints(annotation, include_extras=True)
    fields = {
        f.name: strategy_for(hints[f.name], annotation, f.name, loose=loose)
        for f in dataclasses.fields(annotation)
    }
    return st.builds(annotation, **fields)


_TYPES = sorted(WIRE_NAMES, key=WIRE_NAMES.__getitem__)
valid_messages = st.sampled_from(_TYPES).flatmap(strategy_for)
"""Any message type, with values the rules accept (membership messages: any values)."""
loose_messages = st.sampled_from(_TYPES).flatmap(lambda t: strategy_for(t, loose=True))
"""Any message type; now and then a field the rules constrain holds anything of its type."""


def envelopes_of(messages: st.SearchStrategy[Any]) -> st.SearchStrategy[Envelope]:
    return st.builds(
        Envelope,
        sender=node_ids,
        incarnation=st.integers(0, 3) | u64,
        cluster_id=st.integers(0, 3) | u64,
        term=st.integers(0, 50) | u64,
        epoch=st.integers(0, 50) | u64,
        message=messages,
    )


valid_envelopes = envelopes_of(valid_messages)
"""Envelopes the codec accepts, with any stamp (terms up to 2**64-1 included)."""
hostile_envelopes = envelopes_of(loose_messages)
"""Envelopes some of which the codec must refuse; the rest are valid but hostile."""
