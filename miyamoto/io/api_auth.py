"""Token checks in front of the node: a `RequestHandler` that answers 401/403 itself and hands
only authorized requests on. The rule (which operation needs which scope) is the logic's
(`api_tokens.authorize`); this only routes the request to apply it. Tokens are never logged."""

from __future__ import annotations

from collections.abc import Awaitable

from ..logic.api_tokens import ApiTokens, authorize, parse_api_tokens
from ..logic.errors import ClientError
from ..logic.http import HttpRequest, HttpResponse
from ..logic.routes import route
from .http_server import RequestHandler


def read_api_tokens(path: str) -> ApiTokens:
    """The tokens in the file at `path`; TokensFileError (naming the file and line) if bad."""
    with open(path, encoding="utf-8") as file:
        return parse_api_tokens(file.read())


def requiring_tokens(handler: RequestHandler, tokens: ApiTokens) -> RequestHandler:
    """`handler`, for requests whose token allows them; the others get 401 or 403."""

    def guarded(request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        try:
            where = route(request.method, request.target)
        except ClientError:
            where = None  # the node says 404 or 405, to holders of a valid token
        refusal = authorize(tokens, request.header("authorization"), where)
        if refusal is not None:
            return refusal
        return handler(request)

    return guarded
