"""Signed deliveries: a real delivery on loopback, verified by the `standardwebhooks` library
(what receivers use), not by our own code."""

from __future__ import annotations

import base64
import random
from functools import partial
from urllib.parse import quote

import pytest
import trio
import trio.testing
from standardwebhooks import Webhook, WebhookVerificationError

from miyamoto.io.node import serve_node
from miyamoto.io.signing import DeliverySigner, SigningKeyError, parse_signing_keys
from miyamoto.io.ssrf_guard import SsrfGuard
from miyamoto.io.webhook_client import WebhookClient
from miyamoto.logic.destinations import DestinationPolicy
from miyamoto.logic.node import NodeConfig

from .io_raw_http import RawMessage, always, exchange, request_bytes, start_receiver
from .test_io_webhook_client import delivery

TEST_TIMEOUT_S = 10
OLD_KEY = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW_KEY = "whsec_" + base64.b64encode(b"n" * 32).decode()
OTHER_KEY = "whsec_" + base64.b64encode(b"x" * 32).decode()


def received_headers(message: RawMessage) -> dict[str, str]:
    return dict(message.headers)


async def test_a_real_delivery_verifies_with_the_standardwebhooks_library_for_every_key() -> None:
    keys = parse_signing_keys(f"# rotating\n{OLD_KEY}\n\n{NEW_KEY}\n")
    config = NodeConfig(node_id="127.0.0.1:0")
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, always(200))
            port = await nursery.start(
                partial(serve_node, config, rng=random.Random(3), signing_keys=keys)
            )
            url = quote(f"http://127.0.0.1:{receiver.port}/hook")
            body = f"task.url={url}&task.id=order-7&item=%C3%A9".encode()
            headers = (
                ("Connection", "close"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            )
            (reply,) = await exchange(port, request_bytes("POST", "/q", body, headers))
            assert reply.status in (200, 201), reply
            await receiver.wait_for(lambda: len(receiver.requests) == 1)
            nursery.cancel_scope.cancel()
    (request,) = receiver.requests
    received = received_headers(request)
    assert received["webhook-id"] == "order-7"
    assert len(received["webhook-signature"].split(" ")) == 2
    for key in (OLD_KEY, NEW_KEY):  # a receiver that knows either key accepts it
        Webhook(key).verify(request.body, received, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_KEY).verify(request.body, received, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_KEY).verify(request.body + b"&x=1", received, json_parse=False)


def test_the_timestamp_is_the_send_time_and_the_id_the_task_id() -> None:
    signer = DeliverySigner(keys=parse_signing_keys(OLD_KEY), clock_s=lambda: 1_700_000_123.9)
    signed = signer.sign(delivery(80).request)
    added = dict(signed.headers[-3:])
    assert added["Webhook-Id"] == "task-1"
    assert added["Webhook-Timestamp"] == "1700000123"
    assert added["Webhook-Signature"].startswith("v1,")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("secret", "starts with 'whsec_'"),
        ("whsec_!!!", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes, not 5"),
        ("\n# only a comment\n", "no keys"),
    ],
)
def test_a_bad_key_file_is_refused_naming_the_line(text: str, words: str) -> None:
    with pytest.raises(SigningKeyError, match=words):
        parse_signing_keys(text)


async def test_a_delivery_waiting_for_a_free_connection_is_signed_when_it_gets_one() -> None:
    servers: list[trio.abc.Stream] = []

    async def connect(address: str, port: int) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        servers.append(server)
        return client

    async def unreachable(host: str, port: int) -> list[str]:
        raise AssertionError("127.0.0.1 is a literal: never resolved")

    signed_at: list[int] = []

    def clock_s() -> float:
        signed_at.append(len(signed_at))
        return 1_700_000_000.0

    client = WebhookClient(
        connections_per_destination_max=1,
        guard=SsrfGuard(DestinationPolicy(), resolve=unreachable, connect=connect),
        sign=DeliverySigner(keys=parse_signing_keys(OLD_KEY), clock_s=clock_s).sign,
    )
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.deliver, delivery(80, delivery_id=1))
            nursery.start_soon(client.deliver, delivery(80, delivery_id=2))
            await trio.testing.wait_all_tasks_blocked()
            assert len(signed_at) == 1  # the second waits for the only slot, unsigned yet
            (server,) = servers
            await server.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await trio.testing.wait_all_tasks_blocked()
            assert len(signed_at) == 2  # signed once the connection came free
            await server.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
