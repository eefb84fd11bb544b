"""schemathesis against a live node on loopback: every operation of GET /_openapi.json, with a
bounded number of generated requests each, must get no 5xx, no status the description does not
list, and no body outside its schema.

Generated tasks reach no webhook: the schema is narrowed so that every generated task url is one
loopback receiver address, and the node's webhook client is replaced by `Deliveries.deliver`,
which opens no connection at all and records what it was asked to send, so the test also checks
that nothing but that address was ever a delivery target.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from miyamoto.logic.actions import StartDelivery
from miyamoto.logic.events import DeliveryResponded
from miyamoto.logic.openapi import openapi_description

from .live_node import node_in_thread

RECEIVER_HOST = "127.0.0.1"
RECEIVER_PORT = 9
"""The only webhook address generated tasks name (loopback's discard port; never connected)."""
RECEIVER_URL = f"http://{RECEIVER_HOST}:{RECEIVER_PORT}/hook"
EXAMPLES_PER_OPERATION = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Deliveries:
    """Stands in for the webhook client: answers 200 at once and records the target."""

    def __init__(self) -> None:
        self.targets: list[tuple[str, int]] = []

    async def deliver(self, start: StartDelivery) -> DeliveryResponded:
        self.targets.append((start.request.host, start.request.port))
        return DeliveryResponded(delivery_id=start.delivery_id, status=200)


DELIVERIES = Deliveries()


def narrowed(description: dict[str, Any]) -> dict[str, Any]:
    """The description with every task url fixed to RECEIVER_URL (JSON and form alike)."""
    schemas = description["components"]["schemas"]
    schemas["JsonTask"]["properties"]["url"] = {"const": RECEIVER_URL}
    schemas["FormTask"]["properties"]["task.url"] = {"const": RECEIVER_URL}
    return description


@pytest.fixture(scope="module")
def live_port() -> Iterator[int]:
    with node_in_thread(deliver=DELIVERIES.deliver) as port:
        yield port
    assert set(DELIVERIES.targets) <= {(RECEIVER_HOST, RECEIVER_PORT)}, DELIVERIES.targets


@pytest.fixture(scope="module")
def api_schema(live_port: int) -> Any:
    base_url = f"http://127.0.0.1:{live_port}"
    with urllib.request.urlopen(f"{base_url}/_openapi.json", timeout=10) as response:
        description = json.loads(response.read())
    schema = schemathesis.openapi.from_dict(narrowed(description))
    schema.config.update(base_url=base_url, request_timeout=10)
    return schema


OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in openapi_description()["paths"].items()
    for method in item
    if method != "parameters"
)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_live_api_keeps_its_openapi_description(api_schema: Any, operation: str) -> None:
    method, path = operation.split(" ")
    api_operation = api_schema[path][method]

    @given(case=api_operation.as_strategy(GenerationMode.POSITIVE))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,  # the same requests every run: CI is never flaky
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def keeps_it(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    keeps_it()
