"""`GET /_cluster` with the shell's `/_peer` counters added (`"peer_endpoint"`).

The counters live in the shell (peer_endpoint.py answers `/_peer`; the node never sees a batch),
so the shell adds them to the node's answer rather than feeding them to the state machine: the
logic stays pure and its answer is unchanged for every other path."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

from ..logic.http import HttpRequest, HttpResponse
from .http_server import RequestHandler

CLUSTER_PATH = "/_cluster"


def with_peer_counters(
    handler: RequestHandler, counters: Callable[[], dict[str, object]]
) -> RequestHandler:
    """`handler`, with `counters()` added to every `200` answer to `GET /_cluster`."""
    return with_cluster_section(handler, "peer_endpoint", counters)


def with_cluster_section(
    handler: RequestHandler, name: str, section: Callable[[], dict[str, object]]
) -> RequestHandler:
    """`handler`, with `section()` added as `name` to every `200` answer to `GET /_cluster`
    (the shell's own numbers: the `/_peer` counters, the store's commits)."""

    def added(response: HttpResponse) -> HttpResponse:
        if response.status != 200:
            return response  # a refusal (401, 403, 405) stays as the node or the token check said
        body = json.loads(response.body)
        body[name] = section()
        return HttpResponse(
            status=200, headers=response.headers, body=json.dumps(body).encode()
        )

    async def added_later(waiting: Awaitable[HttpResponse]) -> HttpResponse:
        return added(await waiting)

    def answer(request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        response = handler(request)
        path = unquote(urlsplit(request.target).path).rstrip("/")
        if path != CLUSTER_PATH or request.method not in ("GET", "HEAD"):
            return response
        if isinstance(response, HttpResponse):
            return added(response)
        return added_later(response)

    return answer
