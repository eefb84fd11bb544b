"""Errors typed by whose fault they are (the h11 habit)."""

from __future__ import annotations


class ClientError(Exception):
    """A request we refuse. Becomes a JSON error response.

    `status` is the HTTP status to answer with: a 4xx when the request itself is wrong, 503 or
    507 when this node cannot take it now (the client may retry, here or elsewhere). `message`
    says what is wrong and, where a limit was exceeded, what the limit is.
    """

    def __init__(self, status: int, message: str) -> None:
        assert 400 <= status < 500 or status in (503, 507), status
        super().__init__(message)
        self.status = status
        self.message = message
