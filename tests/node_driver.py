"""A tiny driver for the node state machine in tests: requests in, responses and deliveries out."""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import urlencode

from miyamoto.logic.actions import Action, SendApiResponse, StartDelivery
from miyamoto.logic.events import (
    ApiRequestReceived,
    DeliveryError,
    DeliveryFailed,
    DeliveryResponded,
    TimerExpired,
)
from miyamoto.logic.http import Headers, HttpRequest, HttpResponse
from miyamoto.logic.node import Node, NodeConfig

FORM = "application/x-www-form-urlencoded"
T0_MS = 1_700_000_000_000


class NodeDriver:
    def __init__(self, config: NodeConfig | None = None, *, now_ms: int = T0_MS) -> None:
        self.node = Node(config or NodeConfig(), random.Random(7), now_ms)
        self.now_ms = now_ms
        self.deliveries: list[StartDelivery] = []
        """Every StartDelivery so far, in order."""
        self._untaken: list[StartDelivery] = []
        self._request_ids = 0

    def _run(self, actions: list[Action]) -> list[SendApiResponse]:
        """The responses among the actions of the step just made (after checking the node's
        invariants: every step goes through here)."""
        self.node.check_invariants()
        responses = []
        for action in actions:
            if isinstance(action, StartDelivery):
                self.deliveries.append(action)
                self._untaken.append(action)
            else:
                responses.append(action)
        return responses

    def request(
        self, method: str, target: str, body: bytes = b"", content_type: str | None = None
    ) -> HttpResponse:
        self._request_ids += 1
        headers = () if content_type is None else (("content-type", content_type),)
        request = HttpRequest(method=method, target=target, headers=headers, body=body)
        event = ApiRequestReceived(request_id=self._request_ids, request=request)
        (reply,) = self._run(self.node.handle(event, self.now_ms))
        assert reply.request_id == self._request_ids
        return reply.response

    def enqueue_form(self, queue: str = "q", **fields: Any) -> HttpResponse:
        body = urlencode({k.replace("task_", "task."): v for k, v in fields.items()}).encode()
        return self.request("POST", f"/{queue}", body, FORM)

    def enqueue_json(self, queue: str = "q", **fields: Any) -> HttpResponse:
        return self.request("POST", f"/{queue}", json.dumps(fields).encode(), "application/json")

    def get(self, target: str) -> HttpResponse:
        return self.request("GET", target)

    def advance_to(self, now_ms: int) -> list[StartDelivery]:
        """Moves time forward firing every timer on the way.

        Returns the deliveries started since the last call (including those an enqueue or a
        response started at once).
        """
        assert now_ms >= self.now_ms
        while (deadline := self.node.next_deadline_ms()) is not None and deadline <= now_ms:
            self.now_ms = max(self.now_ms, deadline)
            assert not self._run(self.node.handle(TimerExpired(), self.now_ms))
        self.now_ms = now_ms
        started, self._untaken = self._untaken, []
        return started

    def advance(self, ms: int) -> list[StartDelivery]:
        return self.advance_to(self.now_ms + ms)

    def respond(self, delivery: StartDelivery, status: int, body: bytes = b"", **h: str) -> None:
        event = DeliveryResponded(
            delivery_id=delivery.delivery_id,
            status=status,
            headers=tuple((k.replace("_", "-"), v) for k, v in h.items()),
            body_excerpt=body,
        )
        assert not self._run(self.node.handle(event, self.now_ms))

    def respond_with_headers(
        self, delivery: StartDelivery, status: int, headers: Headers, body: bytes
    ) -> None:
        """`respond` with the header list as given: any names, repeated, in any case."""
        event = DeliveryResponded(
            delivery_id=delivery.delivery_id, status=status, headers=headers, body_excerpt=body
        )
        assert not self._run(self.node.handle(event, self.now_ms))

    def fail(self, delivery: StartDelivery, error: DeliveryError) -> None:
        event = DeliveryFailed(delivery_id=delivery.delivery_id, error=error)
        assert not self._run(self.node.handle(event, self.now_ms))


def header(delivery: StartDelivery, name: str) -> str:
    values = [v for k, v in delivery.request.headers if k.lower() == name]
    assert len(values) == 1, (name, delivery.request.headers)
    return values[0]
