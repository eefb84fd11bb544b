"""Errors typed by whose fault they are (the h11 habit)."""

from __future__ import annotations

import json


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


SHOWN_CHARS_MAX = 60
"""How much of one client value an error message repeats (never a huge one)."""


def shown(value: object) -> str:
    """Client input as it appears in an error message: in JSON's spelling (`"text"`, `true`,
    `null`), since that is what clients write, cut to a readable length."""
    if isinstance(value, str):
        cut = value[:SHOWN_CHARS_MAX]
        return json.dumps(cut, ensure_ascii=False) + ("..." if len(value) > len(cut) else "")
    if value is None or isinstance(value, bool | int | float):
        text = json.dumps(value)  # NaN and infinities come out as JavaScript spells them
        return text if len(text) <= SHOWN_CHARS_MAX else text[:SHOWN_CHARS_MAX] + "..."
    return "an object" if isinstance(value, dict) else "a list"


def size_text(size_bytes: int) -> str:
    """A byte count as people say it: `4 MiB`, `8 KiB`, `1000 bytes`."""
    for unit, unit_bytes in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size_bytes >= unit_bytes and size_bytes % unit_bytes == 0:
            return f"{size_bytes // unit_bytes} {unit}"
    return f"{size_bytes} bytes" if size_bytes != 1 else "1 byte"


def duration_text(duration_ms: int) -> str:
    """A duration as people say it: `30 days`, `30 minutes`, `1.5 seconds`."""
    for unit, unit_ms in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000)):
        if duration_ms >= unit_ms and duration_ms % (unit_ms // 10) == 0:
            count = duration_ms / unit_ms
            return f"{count:g} {unit}" + ("" if count == 1 else "s")
    seconds = duration_ms / 1000
    return f"{seconds:g} second" + ("" if seconds == 1 else "s")
