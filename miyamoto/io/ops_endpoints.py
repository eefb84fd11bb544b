"""The API as the HTTP server sees it: the node's operational paths, and every answer counted.

`ApiFront` wraps the node's request handler (`NodeRuntime.answer_api_request`):
- `GET|HEAD /_ready` and `GET|HEAD /_metrics` are answered here, from a read-only look at the
  node (readiness is decided by `logic.readiness` from the cluster view and the store's state);
- `HEAD /_health` is the node's `GET /_health` without its body (the server drops the body of
  any HEAD answer), so load balancers' HEAD checks work;
- everything else goes to the node unchanged.
Each answer is counted by route template and status (and tasks enqueued, duplicated, cancelled
by queue, as the node's `TaskOutcome` on the response says: never read from the JSON) when
metrics are on, and logged on one line when the access log is on. The log line
has the path without its query, the status, the size and the time: never a header or a body.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from ..logic.http import HttpRequest, HttpResponse, error_response, json_response
from ..logic.membership import ClusterView
from ..logic.readiness import readiness
from .http_server import RequestHandler
from .metrics import NodeMetrics

access_log = logging.getLogger("miyamoto.access")

READ_METHODS = ("GET", "HEAD")
SHELL_PATHS = ("/_ready", "/_metrics")
"""Answered here, not by the node."""
NODE_PATHS = frozenset({"/_health", "/_cluster", "/_queues", "/_peer", *SHELL_PATHS})
"""Node paths with their own route label; any other `/_...` path is labelled `/_other`."""
REFUSED_ROUTE = "(refused)"
"""The route label of answers the server gave without routing the request (413, 431, 408...)."""
_ROUTE_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


StoreProblem = Callable[[], str | None]
"""Why the node's last write to its store failed, None when it succeeded (the commit gate's
`last_error`); a node without a data directory has no store to fail."""


def _no_store_problem() -> str | None:
    return None


def route_label(method: str, target: str) -> str:
    """The request's route as a template (`POST /{queue}`): a bounded set of label values."""
    path = target.partition("?")[0]
    if path.startswith("/_"):
        template = path.rstrip("/") if path.rstrip("/") in NODE_PATHS else "/_other"
    else:
        segments = path.strip("/").split("/") if path.strip("/") else []
        count = len(segments)
        if count == 1:
            template = "/{queue}"
        elif count == 2:
            template = "/{queue}/_command" if segments[1].startswith("_") else "/{queue}/{id}"
        elif count == 3 and segments[2] == "rerun":
            template = "/{queue}/{id}/rerun"
        else:
            template = "/other"
    return f"{method if method in _ROUTE_METHODS else 'OTHER'} {template}"


class ApiFront:
    def __init__(
        self,
        answer: RequestHandler,
        *,
        view: Callable[[], ClusterView],
        metrics: NodeMetrics | None,
        access_log_on: bool,
        store_problem: StoreProblem = _no_store_problem,
        clock_s: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._answer = answer
        self._view = view
        self._store_problem = store_problem
        self._metrics = metrics
        self._access_log_on = access_log_on
        self._clock_s = clock_s

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        """A `RequestHandler`: answers at once when the node does."""
        started_s = self._clock_s() if self._access_log_on else 0.0
        path = request.target.partition("?")[0].rstrip("/")
        if path in SHELL_PATHS:
            answer: HttpResponse | Awaitable[HttpResponse] = self._shell_answer(request, path)
        elif path == "/_health" and request.method == "HEAD":
            answer = self._answer(dataclasses.replace(request, method="GET"))
        else:
            answer = self._answer(request)
        if isinstance(answer, HttpResponse):
            self._note(request, answer, started_s)
            return answer
        return self._noting_later(request, answer, started_s)

    async def _noting_later(
        self, request: HttpRequest, answer: Awaitable[HttpResponse], started_s: float
    ) -> HttpResponse:
        response = await answer
        self._note(request, response, started_s)
        return response

    def _shell_answer(self, request: HttpRequest, path: str) -> HttpResponse:
        if request.method not in READ_METHODS:
            return error_response(
                405, f"{request.method} is not allowed on {path}; use GET or HEAD"
            )
        if path == "/_ready":
            view = self._view()
            verdict = readiness(view, store_problem=self._store_problem())
            if verdict.ready:
                ready = {"status": "ready", "node": view.self_id, "leader": view.leader}
                return json_response(200, ready)
            not_ready = {"status": "error", "error": verdict.reason, "node": view.self_id}
            return json_response(503, not_ready)
        if self._metrics is None:
            return error_response(404, "metrics are off on this node (it runs with --no-metrics)")
        body, content_type = self._metrics.render()
        return HttpResponse(status=200, headers=(("content-type", content_type),), body=body)

    def note_refusal(self, status: int) -> None:
        """An `http_server.RefusalObserver`: the server answered `status` itself (a request too
        large, malformed or too slow, or the node full of connections)."""
        if self._metrics is not None:
            self._metrics.count_http(REFUSED_ROUTE, status)
        if self._access_log_on:
            access_log.info("refused by the server before routing: %d", status)

    def _note(self, request: HttpRequest, response: HttpResponse, started_s: float) -> None:
        metrics = self._metrics
        if metrics is not None:
            route = route_label(request.method, request.target)
            metrics.count_http(route, response.status)
            outcome = response.outcome
            if outcome is not None:
                for kind, n in (
                    ("enqueued", outcome.enqueued),
                    ("duplicates", outcome.duplicates),
                    ("cancelled", outcome.cancelled),
                ):
                    if n:
                        metrics.count_tasks(kind, outcome.queue, n)
        if self._access_log_on:
            access_log.info(
                "%s %s %d %dB %.1fms",
                request.method,
                request.target.partition("?")[0],
                response.status,
                len(response.body),
                (self._clock_s() - started_s) * 1000,
            )
