"""HTTP requests and responses as plain values, so the logic can route and answer them.

The shell (h11) turns bytes into an `HttpRequest` and an `HttpResponse` back into bytes; the logic
never sees a socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .api_outcome import TaskOutcome

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """A complete request received by the API. Header names are lower-case."""

    method: str
    target: str
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """A complete response for the shell to send."""

    status: int
    headers: Headers = ()
    body: bytes = b""
    outcome: TaskOutcome | None = None
    """What the request did to tasks (for the shell's metrics; never sent)."""

    def json(self) -> Any:
        """The body decoded as JSON (for tests and the simulator)."""
        return json.loads(self.body)


def json_response(
    status: int, payload: dict[str, Any] | list[Any], *, outcome: TaskOutcome | None = None
) -> HttpResponse:
    # json.dumps's default separators are (", ", ": "); passing them anyway made dumps build a
    # new encoder for every response.
    body = json.dumps(payload).encode()
    return HttpResponse(
        status=status, headers=(("content-type", "application/json"),), body=body, outcome=outcome
    )


def error_response(status: int, message: str) -> HttpResponse:
    return json_response(status, {"status": "error", "error": message})
