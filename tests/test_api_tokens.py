"""API tokens: the tokens file, the route -> scope rule, and a real node answering 401/403."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import pytest
import trio

from miyamoto.io.node import serve_node
from miyamoto.logic.api_tokens import (
    ApiTokens,
    Scope,
    TokensFileError,
    authorize,
    parse_api_tokens,
    required_scope,
)
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.routes import Operation, Route, route

from .io_raw_http import ByteReader, exchange, request_bytes

TEST_TIMEOUT_S = 10
FORM = "application/x-www-form-urlencoded"
ENQUEUER = "e" * 32
READER = "r" * 32
ADMIN = "a" * 32
TOKENS_FILE = f"""
# name token scopes
producer {ENQUEUER} enqueue
dashboard {READER} read
operator {ADMIN} read,admin
"""


def tokens() -> ApiTokens:
    return parse_api_tokens(TOKENS_FILE)


def test_the_file_gives_each_token_its_scopes() -> None:
    by_name = {t.name: t.scopes for t in tokens().tokens}
    assert by_name == {
        "producer": {Scope.ENQUEUE},
        "dashboard": {Scope.READ},
        "operator": {Scope.READ, Scope.ADMIN},
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a b", "name token scopes"),
        (f"a {ENQUEUER} write", "unknown scope 'write'"),
        ("a short enqueue", "16 to 256"),
        (f"a {ENQUEUER} enqueue\na {READER} read", "used twice"),
        (f"a {ENQUEUER} enqueue\nb {ENQUEUER} read", "given twice"),
        ("# nothing\n", "no tokens"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_line_not_the_token(text: str, words: str) -> None:
    with pytest.raises(TokensFileError) as error:
        parse_api_tokens(text)
    assert words in str(error.value)
    assert ENQUEUER not in str(error.value)


def test_every_operation_has_a_scope_and_only_health_is_open() -> None:
    scopes = {op: required_scope(Route(operation=op)) for op in Operation}
    assert scopes == {
        Operation.HEALTH: None,
        Operation.CLUSTER: Scope.READ,
        Operation.ENQUEUE: Scope.ENQUEUE,
        Operation.QUEUE_INFO: Scope.READ,
        Operation.TASK_INFO: Scope.READ,
        Operation.TASK_CANCEL: Scope.ADMIN,
        Operation.TASK_RERUN: Scope.ADMIN,
        Operation.QUEUE_COMMAND: Scope.ADMIN,
        Operation.DESTINATIONS: Scope.ADMIN,
        Operation.DESTINATION_LIFT: Scope.ADMIN,
        Operation.QUEUES: Scope.READ,
        Operation.CLUSTER_LEAVE: Scope.ADMIN,
    }


def status(authorization: str | None, method: str, target: str) -> int:
    refusal = authorize(tokens(), authorization, route(method, target))
    return 200 if refusal is None else refusal.status


def test_missing_unknown_or_malformed_tokens_are_401() -> None:
    for authorization in [
        None,
        "",
        "Bearer",
        f"Basic {ADMIN}",
        "Bearer " + "x" * 32,
        f"Bearer {ADMIN[:-1]}",
        f"Bearer {ADMIN}é",
    ]:
        assert status(authorization, "GET", "/q") == 401, authorization
    refusal = authorize(tokens(), None, route("POST", "/q"))
    assert refusal is not None
    assert refusal.json()["status"] == "error" and "Bearer" in refusal.json()["error"]
    assert ("www-authenticate", 'Bearer realm="miyamoto"') in refusal.headers


def test_a_token_without_the_scope_is_403_naming_the_token_and_scope() -> None:
    refusal = authorize(tokens(), f"Bearer {ENQUEUER}", route("POST", "/q/_purge"))
    assert refusal is not None and refusal.status == 403
    assert refusal.json()["error"] == (
        "the token 'producer' lacks the 'admin' scope this request needs"
    )
    assert ENQUEUER not in refusal.body.decode()


def test_scopes_decide_each_operation() -> None:
    assert status(f"Bearer {ENQUEUER}", "POST", "/q") == 200
    assert status(f"Bearer {ENQUEUER}", "GET", "/q/t1") == 403
    assert status(f"Bearer {READER}", "GET", "/q/t1") == 200
    assert status(f"bearer  {READER} ", "GET", "/_cluster") == 200
    assert status(f"Bearer {READER}", "DELETE", "/q/t1") == 403
    assert status(f"Bearer {ADMIN}", "DELETE", "/q/t1") == 200
    assert status(f"Bearer {ADMIN}", "POST", "/q/t1/rerun") == 200
    assert status(f"Bearer {ADMIN}", "POST", "/q") == 403  # scopes do not imply each other
    assert status(None, "GET", "/_health") == 200


def test_an_unroutable_request_needs_some_valid_token() -> None:
    assert authorize(tokens(), None, None) is not None
    assert authorize(tokens(), f"Bearer {ENQUEUER}", None) is None


async def call(port: int, method: str, target: str, body: bytes = b"", token: str = "") -> Any:
    headers: tuple[tuple[str, str], ...] = (("Connection", "close"), ("Content-Type", FORM))
    if token:
        headers += (("Authorization", f"Bearer {token}"),)
    (response,) = await exchange(port, request_bytes(method, target, body, headers))
    return response


async def call_head(port: int, target: str, token: str = "") -> tuple[int, dict[str, str], bytes]:
    """HEAD `target`: the status, the headers (names lower-cased) and whatever followed them."""
    headers: tuple[tuple[str, str], ...] = (("Connection", "close"),)
    if token:
        headers += (("Authorization", f"Bearer {token}"),)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request_bytes("HEAD", target, b"", headers))
    raw = await ByteReader(stream).read_to_eof()
    await stream.aclose()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), fields, rest


async def test_a_node_with_tokens_refuses_what_a_token_does_not_allow() -> None:
    config = NodeConfig(node_id="127.0.0.1:0")
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                partial(serve_node, config, rng=random.Random(3), api_tokens=tokens())
            )
            task = b"task.url=http%3A%2F%2F127.0.0.1%3A9%2Fw&task.countdown=60"
            anonymous = await call(port, "POST", "/q", task)
            enqueued = await call(port, "POST", "/q", task, token=ENQUEUER)
            task_path = f"/q/{enqueued.json()['id']}"
            peeked = await call(port, "GET", task_path, token=ENQUEUER)
            read = await call(port, "GET", task_path, token=READER)
            head = await call_head(port, task_path, token=READER)
            purge = await call(port, "POST", "/q/_purge", token=READER)
            cancel = await call(port, "DELETE", task_path, token=ADMIN)
            health = await call(port, "GET", "/_health")
            peer = await call(port, "POST", "/_peer")  # the shell's: peers sign their batches
            nursery.cancel_scope.cancel()
    assert (anonymous.status, anonymous.json()["status"]) == (401, "error")
    assert enqueued.status in (200, 201), enqueued
    assert peeked.status == 403
    assert read.status == 200 and read.json()["state"] == "scheduled"
    assert head == (200, head[1], b"")
    assert head[1]["content-length"] == read.header("content-length")
    assert purge.status == 403
    assert cancel.status == 200 and cancel.json()["status"] == "cancelled"
    assert health.status == 200
    assert peer.status == 200 and peer.json()["accepted"] == 0


async def test_a_node_without_tokens_is_open_and_answers_head_as_get() -> None:
    config = NodeConfig(node_id="127.0.0.1:0")
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_node, config, rng=random.Random(3)))
            queue = await call(port, "GET", "/q")
            head = await call_head(port, "/q")
            nursery.cancel_scope.cancel()
    assert queue.status == head[0] == 200
    assert head[2] == b"" and head[1]["content-length"] == str(len(queue.body))
