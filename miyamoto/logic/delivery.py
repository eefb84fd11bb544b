"""Turning a task into its webhook request, and a webhook's answer into what happens next."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

from .actions import OutboundRequest
from .http import Headers
from .limits import Limits
from .task import Task
from .urls import parse_webhook_url


def format_seconds(ms: int) -> str:
    """Unix milliseconds as the decimal seconds we show users (`1700000000.25`)."""
    seconds, millis = divmod(ms, 1000)
    return f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") if millis else str(seconds)


def build_request(task: Task, *, user_agent: str, limits: Limits) -> OutboundRequest:
    """The complete webhook request for the next attempt of `task`."""
    url = parse_webhook_url(task.url, limits)  # remembered: not parsed again for each attempt
    # Names in their usual casing: HTTP does not care, but people reading a capture do.
    return OutboundRequest(
        scheme=url.scheme,
        host=url.host,
        port=url.port,
        method=task.method,
        target=url.target,
        headers=(
            ("Host", url.host_header),
            *[(_title(name), value) for name, value in task.headers],
            ("Content-Length", str(len(task.body))),
            ("X-Task-Id", task.id),
            ("X-Task-Queue", task.queue),
            ("X-Task-Retry-Count", str(task.attempts)),
            ("X-Task-Execution-Count", str(task.executions)),
            ("X-Task-ETA", format_seconds(task.eta_ms)),
            ("User-Agent", user_agent),
        ),
        body=task.body,
    )


_TITLES = {"content-type": "Content-Type"}
"""Title-cased names of the headers tasks carry most often (names are lower-case in a task)."""


def _title(name: str) -> str:
    title = _TITLES.get(name)
    if title is None:
        title = "-".join(word.capitalize() for word in name.split("-"))
    return title


def is_success(status: int) -> bool:
    return 200 <= status < 300


RETRY_AFTER_MS_MAX = 600_000
"""The longest wait a Retry-After may impose when the caller names no cap: the default queue's
`max_backoff` (10 min). The dispatcher passes the task's queue's own `max_backoff`."""

_RETRY_AFTER_CHARS_MAX = 64
"""Longer than any HTTP-date; a longer value is not one we read (or hand to a date parser)."""

_DELAY_SECONDS = re.compile(r"[0-9]+", re.ASCII)
"""RFC 9110 delay-seconds: ASCII digits only (`str.isdigit` also takes `²` and `٣`)."""


def retry_after_ms(
    status: int, headers: Headers, now_ms: int, *, cap_ms: int = RETRY_AFTER_MS_MAX
) -> int | None:
    """How long a 429 or 503 answer asks us to wait (Retry-After), in ms, at most `cap_ms`;
    None if it does not ask, or asks in a form we do not read.

    The value comes from any webhook, so nothing in it may raise: it is parsed strictly (ASCII
    delay-seconds or an HTTP-date) and never handed to `int` unbounded (`int` refuses more than
    4,300 digits)."""
    if status not in (429, 503):
        return None
    value = next((v for k, v in headers if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip(" \t")
    if _DELAY_SECONDS.fullmatch(value):
        if len(value) > 12:  # more seconds than 30,000 years: past any cap, and never int()ed
            return cap_ms
        return min(int(value) * 1000, cap_ms)
    if len(value) > _RETRY_AFTER_CHARS_MAX or not value.isascii():
        return None
    try:
        when = parsedate_to_datetime(value)
        at_ms = int(when.timestamp() * 1000)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0, at_ms - now_ms), cap_ms)
