"""Turning a task into its webhook request, and a webhook's answer into what happens next."""

from __future__ import annotations

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


def retry_after_ms(status: int, headers: Headers, now_ms: int) -> int | None:
    """How long a 429 or 503 answer asks us to wait (Retry-After), in ms; None if it does not."""
    if status not in (429, 503):
        return None
    value = next((v for k, v in headers if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, int(when.timestamp() * 1000) - now_ms)
