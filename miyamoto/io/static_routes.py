"""What the shell answers itself, without the node: the status page (`GET /`, `GET /_ui`) and
the OpenAPI description (`GET /_openapi.json`). Neither needs node state, so the node's state
machine never sees these paths; every other request goes to the node's handler unchanged."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from importlib.resources import files
from urllib.parse import unquote, urlsplit

from ..logic.http import HttpRequest, HttpResponse, error_response
from ..logic.limits import Limits
from ..logic.openapi import openapi_description
from ..logic.routes import SHELL_PATHS
from .http_server import RequestHandler

STATUS_PAGE_FILE = "status_page.html"

_PAGE_HEADERS = (
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    # The page talks to its own node only, and runs nothing it did not bring.
    (
        "content-security-policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'",
    ),
)


def status_page_html() -> bytes:
    return files(__package__).joinpath(STATUS_PAGE_FILE).read_bytes()


def with_static_routes(handler: RequestHandler, *, limits: Limits) -> RequestHandler:
    """`handler`, with the shell's own paths (routes.SHELL_PATHS) answered here. The page and
    the description are built once: they do not change while the node runs."""
    page = HttpResponse(status=200, headers=_PAGE_HEADERS, body=status_page_html())
    description = json.dumps(openapi_description(limits), indent=1).encode()
    openapi = HttpResponse(
        status=200,
        headers=(("content-type", "application/json"), ("cache-control", "no-store")),
        body=description,
    )
    responses = {"/": page, "/_ui": page, "/_openapi.json": openapi}
    assert set(responses) == set(SHELL_PATHS), "a shell path without a page, or the reverse"

    def answer(request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        path = unquote(urlsplit(request.target).path)
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]  # a trailing slash names the same resource, as in routes.route
        response = responses.get(path)
        if response is None:
            return handler(request)
        if request.method != "GET":
            return error_response(405, f"{request.method} is not allowed on {path}; use GET")
        return response

    return answer
