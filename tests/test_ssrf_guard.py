"""The SSRF guard: which addresses webhooks may reach, checked after DNS, connected to as checked.

Unit tests inject the resolver and the connect function, so no test sends a packet anywhere: a
denied address is never even connected to, and an allowed one only through the fake connect.
The real-socket test uses the node's own loopback address."""

from __future__ import annotations

import ipaddress
import json
import random
import socket
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import quote

import pytest
import trio
import trio.testing

from miyamoto.io.node import serve_node
from miyamoto.io.ssrf_guard import DestinationDenied, SsrfGuard
from miyamoto.io.webhook_client import WebhookClient
from miyamoto.logic.destinations import (
    DestinationPolicy,
    denied_literal,
    parse_networks,
)
from miyamoto.logic.events import DeliveryError, DeliveryFailed
from miyamoto.logic.limits import Limits
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.retry import RetryPolicy
from miyamoto.logic.urls import parse_webhook_url

from .io_raw_http import exchange, request_bytes
from .node_driver import NodeDriver
from .test_io_webhook_client import delivery

TEST_TIMEOUT_S = 10


def refusal(policy: DestinationPolicy, address: str, port: int = 80) -> str | None:
    return policy.refusal(ipaddress.ip_address(address), port)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "0.1.2.3",
        "::",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
        "::ffff:169.254.169.254",  # IPv4-mapped: the same metadata service
        "fd00:ec2::254",
    ],
)
def test_metadata_link_local_unspecified_and_multicast_are_denied_by_default(address: str) -> None:
    assert refusal(DestinationPolicy(), address) is not None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.0.7", "172.16.0.1", "fd12::1", "8.8.8.8"]
)
def test_loopback_private_and_public_addresses_are_allowed_by_default(address: str) -> None:
    assert refusal(DestinationPolicy(), address) is None


def test_the_most_specific_network_decides_and_a_tie_denies() -> None:
    policy = DestinationPolicy(
        denied=parse_networks("10.0.0.0/8, 127.0.0.0/8"),
        allowed=parse_networks("10.1.2.0/24,169.254.10.0/24,127.0.0.0/8"),
    )
    assert refusal(policy, "10.9.9.9") == "denied by --deny-destinations"
    assert refusal(policy, "10.1.2.3") is None
    assert refusal(policy, "169.254.10.1") is None  # a default denial lifted for one subnet
    assert refusal(policy, "169.254.169.254") is not None
    assert refusal(policy, "127.0.0.1") is not None  # deny and allow of the same network


def test_bad_networks_are_refused() -> None:
    with pytest.raises(ValueError, match="not a network"):
        parse_networks("10.0.0.1/8")  # host bits set: probably a typo
    with pytest.raises(ValueError, match="not a network"):
        parse_networks("example.com")


def test_the_nodes_own_address_is_denied_whatever_the_rules() -> None:
    policy = DestinationPolicy(allowed=parse_networks("127.0.0.0/8")).with_own_address(
        "127.0.0.1", 8088
    )
    assert refusal(policy, "127.0.0.1", 8088) == "it is this node's own API and peer address"
    assert refusal(policy, "127.0.0.1", 8089) is None
    wildcard = DestinationPolicy().with_own_address("0.0.0.0", 8088)
    assert refusal(wildcard, "::1", 8088) is not None
    assert refusal(wildcard, "127.0.0.1", 8088) is not None


def test_a_literal_address_the_policy_denies_is_a_400_at_enqueue() -> None:
    policy = DestinationPolicy()
    error = denied_literal(parse_webhook_url("http://169.254.169.254/x", Limits()), policy)
    assert error is not None and error.status == 400
    assert "169.254.169.254" in error.message and "link-local" in error.message
    assert denied_literal(parse_webhook_url("http://127.0.0.1:9/x", Limits()), policy) is None
    assert denied_literal(parse_webhook_url("http://metadata.internal/x", Limits()), policy) is None


def test_a_node_refuses_to_enqueue_a_denied_literal_or_its_own_address() -> None:
    d = NodeDriver(NodeConfig(node_id="127.0.0.1:8088"))
    metadata = d.enqueue_form(task_url="http://169.254.169.254/latest/meta-data/")
    assert metadata.status == 400
    assert metadata.json()["error"] == (
        "url may not point at 169.254.169.254 port 80: "
        "link-local (cloud metadata services live here)"
    )
    itself = d.enqueue_form(task_url="http://127.0.0.1:8088/q/_purge")
    assert itself.status == 400 and "own API" in itself.json()["error"]
    batch = d.request(
        "POST",
        "/q",
        json.dumps(
            [{"url": "http://[fe80::1]/x"}, {"url": "http://127.0.0.1:9/ok", "countdown": 60}]
        ).encode(),
        "application/json",
    ).json()
    assert [item["status"] for item in batch] == ["error", "scheduled"]
    assert d.get("/q").json()["counts"]["scheduled"] == 1


class FakeNetwork:
    """A resolver and a connect function that record their calls and never touch a socket."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []
        self.connects: list[tuple[str, int]] = []
        self.refusing: set[str] = set()

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]

    async def connect(self, address: str, port: int) -> trio.abc.Stream:
        self.connects.append((address, port))
        if address in self.refusing:
            raise ConnectionRefusedError(111, "Connection refused")
        client, _server = trio.testing.memory_stream_pair()
        return client

    def guard(self, policy: DestinationPolicy | None = None) -> SsrfGuard:
        return SsrfGuard(policy or DestinationPolicy(), resolve=self.resolve, connect=self.connect)


async def test_a_name_resolving_to_the_metadata_address_is_denied_before_any_connect() -> None:
    network = FakeNetwork({"metadata.example": ["169.254.169.254"]})
    with pytest.raises(DestinationDenied) as error:
        await network.guard().open_stream("metadata.example", 80)
    assert str(error.value) == (
        "delivery to metadata.example (resolved to 169.254.169.254) port 80 is denied: "
        "link-local (cloud metadata services live here)"
    )
    assert network.connects == []


async def test_one_denied_address_among_several_denies_the_name() -> None:
    network = FakeNetwork({"mixed.example": ["10.0.0.5", "169.254.169.254"]})
    with pytest.raises(DestinationDenied):
        await network.guard().open_stream("mixed.example", 80)
    assert network.connects == []


async def test_the_connection_goes_to_the_checked_address_after_one_lookup() -> None:
    # A rebinding resolver would answer differently the second time; there is no second time.
    network = FakeNetwork({"worker.example": ["10.0.0.5", "10.0.0.6"]})
    network.refusing.add("10.0.0.5")
    await network.guard().open_stream("worker.example", 8000)
    assert network.lookups == ["worker.example"]
    assert network.connects == [("10.0.0.5", 8000), ("10.0.0.6", 8000)]


async def test_a_literal_address_is_checked_without_a_lookup() -> None:
    network = FakeNetwork({})
    with pytest.raises(DestinationDenied):
        await network.guard().open_stream("fe80::1", 80)
    await network.guard().open_stream("10.0.0.5", 80)
    assert network.lookups == [] and network.connects == [("10.0.0.5", 80)]


async def test_a_denied_delivery_fails_the_attempt_saying_why() -> None:
    network = FakeNetwork({"127.0.0.1": ["127.0.0.1"]})
    client = WebhookClient(
        connections_per_destination_max=1,
        guard=network.guard(DestinationPolicy().with_own_address("127.0.0.1", 4321)),
    )
    outcome = await client.deliver(delivery(4321))
    assert isinstance(outcome, DeliveryFailed)
    assert outcome.error is DeliveryError.REFUSED
    assert outcome.detail == (
        "delivery to 127.0.0.1 port 4321 is denied: it is this node's own API and peer address"
    )
    assert network.connects == []


async def test_a_name_that_does_not_resolve_is_a_dns_failure() -> None:
    network = FakeNetwork({})
    start = delivery(80)
    start = replace(start, request=replace(start.request, host="nx.example"))
    client = WebhookClient(connections_per_destination_max=1, guard=network.guard())
    outcome = await client.deliver(start)
    assert isinstance(outcome, DeliveryFailed) and outcome.error is DeliveryError.DNS


async def call(port: int, method: str, target: str, body: bytes = b"") -> Any:
    headers = (("Connection", "close"), ("Content-Type", "application/x-www-form-urlencoded"))
    (response,) = await exchange(port, request_bytes(method, target, body, headers))
    return response.json()


async def test_a_task_pointing_at_the_node_itself_fails_with_a_clear_last_error() -> None:
    # By name: a literal address would be refused at enqueue already. localhost resolves from
    # /etc/hosts to loopback only, and nothing is ever connected to.
    config = NodeConfig(node_id="127.0.0.1:0", retry=RetryPolicy(retry_limit=0))
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_node, config, rng=random.Random(3)))
            url = quote(f"http://localhost:{port}/q/_purge")
            task_id = (await call(port, "POST", "/q", f"task.url={url}".encode()))["id"]
            task: dict[str, Any] = {}
            while task.get("state") != "failed":
                await trio.sleep(0.01)
                task = await call(port, "GET", f"/q/{task_id}")
            nursery.cancel_scope.cancel()
    assert task["last_status"] is None
    assert task["last_error"].startswith("refused: delivery to localhost (resolved to ")
    assert task["last_error"].endswith(
        f"port {port} is denied: it is this node's own API and peer address"
    )
