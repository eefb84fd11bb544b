"""Errors typed by whose fault they are (the h11 habit)."""

from __future__ import annotations


class ClientError(Exception):
    """The client sent something we refuse. Becomes a 4xx with a JSON error body.

    `status` is the HTTP status to answer with; `message` says what is wrong and, where a limit
    was exceeded, what the limit is.
    """

    def __init__(self, status: int, message: str) -> None:
        assert 400 <= status < 500, status
        super().__init__(message)
        self.status = status
        self.message = message
