"""The peer codec: every message type round-trips, and nothing but a PeerProtocolError ever
comes out of decoding bytes from the network."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miyamoto.logic import codec
from miyamoto.logic.codec import PEER_MESSAGE_BYTES_MAX, WIRE_NAMES, PeerProtocolError
from miyamoto.logic.limits import Limits
from miyamoto.logic.messages import (
    Envelope,
    Heartbeat,
    Member,
    MemberList,
    NodeIdFormat,
    PeerMessage,
    VoteResponse,
    is_node_id,
)
from miyamoto.logic.peer_rules import problem

from .peer_strategies import valid_envelopes

# -- strategies built from the same type hints the codec is built from ----------------------------

hosts = st.one_of(
    st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda p: ".".join(map(str, p))),
    st.just("[::1]"),
)
node_ids = st.builds(lambda host, port: f"{host}:{port}", hosts, st.integers(1, 65535))


def strategy_for(annotation: Any) -> st.SearchStrategy[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *metadata = get_args(annotation)
        if any(isinstance(m, NodeIdFormat) for m in metadata):
            return node_ids
        return strategy_for(base)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(codec.INT_MIN, codec.INT_MAX)
    if annotation is str:
        return st.text(max_size=20)
    if annotation is bytes:
        return st.binary(max_size=40)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if origin is typing.Union or origin is types.UnionType:
        (present,) = [a for a in get_args(annotation) if a is not type(None)]
        return st.none() | strategy_for(present)
    if origin is tuple:
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
        return st.tuples(*[strategy_for(a) for a in args])
    assert isinstance(annotation, type) and dataclasses.is_dataclass(annotation), annotation
    hints = get_type_hints(annotation, include_extras=True)
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(annotation)}
    return st.builds(annotation, **fields)


messages = st.sampled_from(sorted(WIRE_NAMES, key=WIRE_NAMES.__getitem__)).flatmap(strategy_for)
u64 = st.integers(0, codec.INT_MAX)
envelopes = st.builds(
    Envelope,
    sender=node_ids,
    incarnation=u64,
    cluster_id=u64,
    term=u64,
    epoch=u64,
    message=messages,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def decodes_or_refuses(data: bytes) -> None:
    try:
        envelope = codec.decode(data)
    except PeerProtocolError:
        return
    assert isinstance(envelope, Envelope)
    assert codec.decode(codec.encode(envelope)) == envelope


def encoded(message: PeerMessage) -> dict[str, Any]:
    envelope = Envelope(
        sender="10.0.0.1:7000", incarnation=7, cluster_id=9, term=3, epoch=2, message=message
    )
    document = json.loads(codec.encode(envelope))
    assert isinstance(document, dict)
    return document


def refused(document: object) -> str:
    with pytest.raises(PeerProtocolError) as error:
        codec.decode(json.dumps(document).encode())
    return str(error.value)


# -- round trips ----------------------------------------------------------------------------------


def test_every_peer_message_type_has_a_wire_name() -> None:
    assert set(get_args(PeerMessage)) == set(WIRE_NAMES)
    assert len(set(WIRE_NAMES.values())) == len(WIRE_NAMES)


@settings(max_examples=400)
@given(envelopes)
def test_every_message_type_round_trips_or_is_refused_by_the_rules(envelope: Envelope) -> None:
    data = codec.encode(envelope)
    wrong = problem(envelope.message, Limits())
    if wrong is not None:  # random text is rarely a queue name, a URL or a state
        with pytest.raises(PeerProtocolError, match=re.escape(wrong[:50])):
            codec.decode(data)
        return
    assert codec.decode(data) == envelope
    assert codec.encode(codec.decode(data)) == data  # one encoding per value
    assert data.isascii()
    assert b"\n" not in data  # the transport separates messages with newlines


@settings(max_examples=400)
@given(valid_envelopes)
def test_every_message_the_rules_accept_round_trips(envelope: Envelope) -> None:
    assert problem(envelope.message, Limits()) is None
    data = codec.encode(envelope)
    assert codec.decode(data) == envelope
    assert codec.encode(codec.decode(data)) == data  # one encoding per value
    assert data.isascii()
    assert b"\n" not in data  # the transport separates messages with newlines


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_to_a_message_or_raise_peer_protocol_error_only(
    data: bytes,
) -> None:
    decodes_or_refuses(data)


@settings(max_examples=300)
@given(envelopes, st.data())
def test_any_value_swapped_into_a_valid_message_decodes_or_is_refused(
    envelope: Envelope, data: st.DataObject
) -> None:
    document = json.loads(codec.encode(envelope))
    # Walk to a random spot in the document and put arbitrary JSON there.
    node: Any = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and data.draw(st.booleans()):
            node = child
            continue
        node[key] = data.draw(json_values)
        break
    decodes_or_refuses(json.dumps(document).encode())


@settings(max_examples=200)
@given(envelopes, st.data())
def test_truncated_or_corrupted_bytes_are_refused_cleanly(
    envelope: Envelope, data: st.DataObject
) -> None:
    encoded_bytes = bytearray(codec.encode(envelope))
    cut = data.draw(st.integers(0, len(encoded_bytes)))
    decodes_or_refuses(bytes(encoded_bytes[:cut]))
    index = data.draw(st.integers(0, len(encoded_bytes) - 1))
    encoded_bytes[index] = data.draw(st.integers(0, 255))
    decodes_or_refuses(bytes(encoded_bytes))


# -- the format, as documented in docs/cluster.md --------------------------------------------------


def test_heartbeat_encodes_as_the_documented_json() -> None:
    member = Member(id="10.0.0.1:7000", incarnation=7)
    heartbeat = Heartbeat(latest=MemberList(epoch=2, epoch_term=3, members=(member,)))
    assert encoded(heartbeat) == {
        "v": 1,
        "type": "heartbeat",
        "sender": "10.0.0.1:7000",
        "incarnation": 7,
        "cluster": 9,
        "term": 3,
        "epoch": 2,
        "body": {
            "latest": {
                "epoch": 2,
                "epoch_term": 3,
                "members": [{"id": "10.0.0.1:7000", "incarnation": 7}],
            },
            "committed": None,
            "unreachable": [],
        },
    }


def test_another_protocol_version_is_refused_and_named() -> None:
    document = encoded(VoteResponse(granted=True))
    document["v"] = 2
    assert refused(document) == "unsupported protocol version 2; this node speaks 1"


def test_unknown_message_type_is_refused() -> None:
    document = encoded(VoteResponse(granted=True))
    document["type"] = "launch_missiles"
    assert "unknown message type 'launch_missiles'" in refused(document)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d.pop("term"), "exactly the keys"),
        (lambda d: d.update(extra=1), "exactly the keys"),
        (lambda d: d["body"].update(extra=1), "body: an object with exactly the keys ['granted']"),
        (lambda d: d["body"].update(granted=1), "body.granted: true or false"),
        (lambda d: d.update(term=True), "term: an integer from 0 to 2**64-1"),
        (lambda d: d.update(term=-1), "term: an integer from 0 to 2**64-1"),
        (lambda d: d.update(incarnation=2**64), "incarnation: an integer from 0 to 2**64-1"),
        (lambda d: d.update(sender="localhost"), "sender: a node id (host:port)"),
        (lambda d: d.update(sender="host:080"), "sender: a node id (host:port)"),
        (lambda d: d.update(sender="host:70000"), "sender: a node id (host:port)"),
    ],
)
def test_malformed_envelope_is_refused_with_what_is_wrong(change: Any, complaint: str) -> None:
    document = encoded(VoteResponse(granted=True))
    change(document)
    assert complaint in refused(document)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"v": 1.0}',
        b'{"v": NaN}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"v": ' + b"9" * 5000 + b"}",
        b'{"v": 1, "type": "vote_response", "body": {"granted": true}}',
    ],
)
def test_hostile_inputs_are_refused_cleanly(data: bytes) -> None:
    with pytest.raises(PeerProtocolError):
        codec.decode(data)


def test_message_over_the_size_limit_is_refused_before_parsing() -> None:
    with pytest.raises(PeerProtocolError, match="exceeds the limit of 8388608 bytes"):
        codec.decode(b" " * (PEER_MESSAGE_BYTES_MAX + 1))


def test_bytes_travel_as_base64_and_bad_base64_is_refused() -> None:
    from miyamoto.logic.replica_messages import QueryResult

    document = encoded(QueryResult(ref=1, task_json=None))
    assert document["body"] == {"ref": 1, "task_json": None}
    from miyamoto.logic.replica_messages import Finished

    finished = Finished(
        queue="q",
        task_id="t",
        state="succeeded",
        attempts=1,
        executions=1,
        last_status=200,
        last_error=None,
        excerpt=b"\x00ok",
    )
    document = encoded(finished)
    assert document["body"]["excerpt"] == "AG9r"
    document["body"]["excerpt"] = "not base64!"
    assert "body.excerpt: a base64 string" in refused(document)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("127.0.0.1:8088", True),
        ("node-1.example.com:1", True),
        ("[::1]:65535", True),
        ("127.0.0.1", False),
        (":8088", False),
        ("host:0", False),
        ("host:65536", False),
        ("host:+80", False),
        ("host name:80", False),
        ("a" * 300 + ":1", False),
    ],
)
def test_node_ids_are_host_colon_port_written_one_way(text: str, valid: bool) -> None:
    assert is_node_id(text) is valid
