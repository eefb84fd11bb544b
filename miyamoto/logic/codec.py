"""The peer wire format: the only place that turns envelopes into bytes and back.

Format version 1 is one JSON object per message, UTF-8 (in fact ASCII: every non-ASCII character
is escaped, and there is never a newline, so messages can be sent one per line), documented
in docs/cluster.md:

    {"v": 1, "type": "heartbeat", "sender": "10.0.0.1:8088", "incarnation": 8312...,
     "cluster": 77..., "term": 3, "epoch": 5, "body": {...the message's fields...}}

The body holds exactly the message dataclass's fields, by name: ints as JSON integers (within
64 bits), bools, strings, bytes as base64 strings, enums by value, tuples as arrays, None as null,
nested dataclasses as objects. Decoding is strict: a missing or extra key, a wrong type, an
unknown message type or another protocol version is a `PeerProtocolError`, and nothing else ever
comes out of `decode` (no pickle, no eval: the input only ever becomes these plain values).
Changing any message's fields means a new protocol version.

A decoded message then passes `peer_rules.problem` (URLs, headers, ids, states, task JSON,
counts: the rules client input passes), so nothing `decode` returns can make the node raise.
Peer authentication wraps these bytes (a MAC over the whole batch, checked by the shell before
`decode`: miyamoto/io/peer_auth.py).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Final, cast, get_args, get_origin, get_type_hints

from .limits import Limits
from .messages import (
    Envelope,
    Heartbeat,
    HeartbeatAck,
    JoinRedirect,
    JoinRequest,
    LeaveRequest,
    NodeIdFormat,
    PeerMessage,
    PreVoteRequest,
    PreVoteResponse,
    VoteRequest,
    VoteResponse,
    is_node_id,
)
from .peer_rules import problem
from .replica_messages import (
    CancelResult,
    CancelTask,
    Claim,
    Finished,
    HoldersChanged,
    QueryResult,
    QueryTask,
    QueueCommand,
    QueueCommandDone,
    QueuesListed,
    QueuesQuery,
    QueueStats,
    QueueStatsQuery,
    RerunResult,
    RerunTask,
    StoreAck,
    StoreCopy,
    Unconfirmed,
)

PROTOCOL_VERSION: Final = 1
PEER_MESSAGE_BYTES_MAX: Final = 8 * 1024 * 1024
"""An encoded message, whole. A task copy (1 MiB body as base64, 400 KiB of headers) fits."""
_LIMITS: Final = Limits()
"""The limits peer values are checked against: every node of a cluster runs with these."""
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1

WIRE_NAMES: Final[dict[type[PeerMessage], str]] = {
    JoinRequest: "join_request",
    JoinRedirect: "join_redirect",
    Heartbeat: "heartbeat",
    HeartbeatAck: "heartbeat_ack",
    PreVoteRequest: "pre_vote_request",
    PreVoteResponse: "pre_vote_response",
    VoteRequest: "vote_request",
    VoteResponse: "vote_response",
    LeaveRequest: "leave_request",
    StoreCopy: "store_copy",
    StoreAck: "store_ack",
    Claim: "claim",
    Finished: "finished",
    HoldersChanged: "holders_changed",
    CancelTask: "cancel_task",
    CancelResult: "cancel_result",
    QueryTask: "query_task",
    QueryResult: "query_result",
    Unconfirmed: "unconfirmed",
    QueueCommand: "queue_command",
    QueueCommandDone: "queue_command_done",
    QueueStatsQuery: "queue_stats_query",
    QueueStats: "queue_stats",
    QueuesQuery: "queues_query",
    QueuesListed: "queues_listed",
    RerunTask: "rerun_task",
    RerunResult: "rerun_result",
}
"""Every peer message type and its name on the wire. Names never change within a version."""

_HEADER_KEYS: Final = frozenset(
    {"v", "type", "sender", "incarnation", "cluster", "term", "epoch", "body"}
)


class PeerProtocolError(Exception):
    """A peer sent bytes that are not a valid message of our protocol version (its fault)."""


Encoder = Callable[[Any], Any]
Decoder = Callable[[Any, str], Any]
"""(JSON value, where it is in the message) -> the value, or PeerProtocolError."""


def encode(envelope: Envelope) -> bytes:
    message = envelope.message
    body_encoder, _ = _BODY_CODECS[type(message)]
    document = {
        "v": PROTOCOL_VERSION,
        "type": WIRE_NAMES[type(message)],
        "sender": envelope.sender,
        "incarnation": envelope.incarnation,
        "cluster": envelope.cluster_id,
        "term": envelope.term,
        "epoch": envelope.epoch,
        "body": body_encoder(message),
    }
    data = json.dumps(document, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    encoded = data.encode("ascii")
    # Our own limits keep every message far below this; passing it is a bug here, not the peer's.
    assert len(encoded) <= PEER_MESSAGE_BYTES_MAX, (type(message).__name__, len(encoded))
    return encoded


def decode(data: bytes) -> Envelope:
    """The envelope in `data`, or PeerProtocolError saying what is wrong with it."""
    if len(data) > PEER_MESSAGE_BYTES_MAX:
        raise PeerProtocolError(
            f"message of {len(data)} bytes exceeds the limit of {PEER_MESSAGE_BYTES_MAX} bytes"
        )
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        raise PeerProtocolError(f"not UTF-8: {error.reason} at byte {error.start}") from None
    try:
        document = json.loads(text, parse_float=_refuse_float, parse_constant=_refuse_constant)
    except PeerProtocolError:
        raise
    except (ValueError, RecursionError) as error:
        raise PeerProtocolError(f"not JSON: {str(error)[:200]}") from None
    if type(document) is not dict:
        raise PeerProtocolError("a message is a JSON object")
    version = document.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise PeerProtocolError(
            f"unsupported protocol version {_excerpt(version)}; this node speaks {PROTOCOL_VERSION}"
        )
    if document.keys() != _HEADER_KEYS:
        raise PeerProtocolError(f"a message has exactly the keys {sorted(_HEADER_KEYS)}")
    name = document["type"]
    message_type = _TYPES_BY_NAME.get(name) if type(name) is str else None
    if message_type is None:
        raise PeerProtocolError(f"unknown message type {_excerpt(name)}")
    _, body_decoder = _BODY_CODECS[message_type]
    envelope = Envelope(
        sender=_decode_node_id(document["sender"], "sender"),
        incarnation=_decode_unsigned(document["incarnation"], "incarnation"),
        cluster_id=_decode_unsigned(document["cluster"], "cluster"),
        term=_decode_unsigned(document["term"], "term"),
        epoch=_decode_unsigned(document["epoch"], "epoch"),
        message=cast(PeerMessage, body_decoder(document["body"], "body")),
    )
    wrong = problem(envelope.message, _LIMITS)
    if wrong is not None:
        raise PeerProtocolError(f"{name}: {wrong[:300]}")
    return envelope


# -- the pieces -----------------------------------------------------------------------------------


def _refuse_float(text: str) -> Any:
    raise PeerProtocolError(f"no fractional numbers in this protocol: {text[:40]}")


def _refuse_constant(text: str) -> Any:
    raise PeerProtocolError(f"no {text} in this protocol")


def _excerpt(value: object) -> str:
    return repr(value)[:80]


def _decode_unsigned(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= INT_MAX:
        raise PeerProtocolError(f"{where}: an integer from 0 to 2**64-1")
    return value


def _decode_node_id(value: Any, where: str) -> str:
    if type(value) is not str or not is_node_id(value):
        raise PeerProtocolError(f"{where}: a node id (host:port)")
    return value


def _decode_int(value: Any, where: str) -> int:
    if type(value) is not int or not INT_MIN <= value <= INT_MAX:
        raise PeerProtocolError(f"{where}: an integer within 64 bits")
    return value


def _decode_bool(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise PeerProtocolError(f"{where}: true or false")
    return value


def _decode_str(value: Any, where: str) -> str:
    if type(value) is not str:
        raise PeerProtocolError(f"{where}: a string")
    return value


def _encode_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _decode_bytes(value: Any, where: str) -> bytes:
    if type(value) is not str:
        raise PeerProtocolError(f"{where}: a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PeerProtocolError(f"{where}: a base64 string") from None


def _identity(value: Any) -> Any:
    return value


def _encode_int(value: int) -> int:
    assert type(value) is int and INT_MIN <= value <= INT_MAX, value
    return value


def _compile(annotation: Any) -> tuple[Encoder, Decoder]:
    """Encoder and decoder for one field type, built once when this module loads."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *metadata = get_args(annotation)
        if base is str and any(isinstance(m, NodeIdFormat) for m in metadata):
            return _identity, _decode_node_id
        return _compile(base)
    if annotation is bool:
        return _identity, _decode_bool
    if annotation is int:
        return _encode_int, _decode_int
    if annotation is str:
        return _identity, _decode_str
    if annotation is bytes:
        return _encode_bytes, _decode_bytes
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _compile_enum(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return _compile_optional(annotation)
    if origin is tuple:
        return _compile_tuple(annotation)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _compile_dataclass(annotation)
    raise TypeError(f"the peer codec cannot carry {annotation!r}")


def _compile_enum(enum_type: type[enum.Enum]) -> tuple[Encoder, Decoder]:
    assert all(type(member.value) is str for member in enum_type), enum_type
    by_value = {member.value: member for member in enum_type}

    def decode_enum(value: Any, where: str) -> Any:
        member = by_value.get(value) if type(value) is str else None
        if member is None:
            raise PeerProtocolError(f"{where}: one of {sorted(by_value)}")
        return member

    return (lambda member: member.value), decode_enum


def _compile_optional(annotation: Any) -> tuple[Encoder, Decoder]:
    present = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(present) != 1 or len(get_args(annotation)) != 2:
        raise TypeError(f"the peer codec carries only `X | None` unions, not {annotation!r}")
    inner_encode, inner_decode = _compile(present[0])

    def encode_optional(value: Any) -> Any:
        return None if value is None else inner_encode(value)

    def decode_optional(value: Any, where: str) -> Any:
        return None if value is None else inner_decode(value, where)

    return encode_optional, decode_optional


def _compile_tuple(annotation: Any) -> tuple[Encoder, Decoder]:
    args = get_args(annotation)
    if len(args) == 2 and args[1] is Ellipsis:
        item_encode, item_decode = _compile(args[0])

        def encode_items(value: Any) -> Any:
            return [item_encode(item) for item in value]

        def decode_items(value: Any, where: str) -> Any:
            if type(value) is not list:
                raise PeerProtocolError(f"{where}: an array")
            return tuple(item_decode(item, f"{where}[{i}]") for i, item in enumerate(value))

        return encode_items, decode_items
    codecs = [_compile(arg) for arg in args]

    def encode_fixed(value: Any) -> Any:
        return [enc(item) for (enc, _), item in zip(codecs, value, strict=True)]

    def decode_fixed(value: Any, where: str) -> Any:
        if type(value) is not list or len(value) != len(codecs):
            raise PeerProtocolError(f"{where}: an array of {len(codecs)} items")
        return tuple(
            dec(item, f"{where}[{i}]")
            for i, ((_, dec), item) in enumerate(zip(codecs, value, strict=True))
        )

    return encode_fixed, decode_fixed


def _compile_dataclass(cls: type[Any]) -> tuple[Encoder, Decoder]:
    hints = get_type_hints(cls, include_extras=True)
    fields = [f for f in dataclasses.fields(cls)]
    assert all(f.init for f in fields), f"{cls.__name__}: every field must be set by __init__"
    codecs = [(f.name, *_compile(hints[f.name])) for f in fields]
    names = frozenset(name for name, _, _ in codecs)

    def encode_dataclass(value: Any) -> Any:
        return {name: enc(getattr(value, name)) for name, enc, _ in codecs}

    def decode_dataclass(value: Any, where: str) -> Any:
        if type(value) is not dict or value.keys() != names:
            raise PeerProtocolError(f"{where}: an object with exactly the keys {sorted(names)}")
        arguments = {name: dec(value[name], f"{where}.{name}") for name, _, dec in codecs}
        try:
            return cls(**arguments)
        except (TypeError, ValueError, AssertionError) as error:
            # A constructor that validates its fields refused what the peer sent.
            raise PeerProtocolError(f"{where}: {str(error)[:200]}") from None

    return encode_dataclass, decode_dataclass


_BODY_CODECS: Final[dict[type[PeerMessage], tuple[Encoder, Decoder]]] = {
    message_type: _compile_dataclass(message_type) for message_type in WIRE_NAMES
}
_TYPES_BY_NAME: Final[dict[str, type[PeerMessage]]] = {
    name: message_type for message_type, name in WIRE_NAMES.items()
}
assert len(_TYPES_BY_NAME) == len(WIRE_NAMES), "two message types share a wire name"
