"""One field of an enqueue, checked: its text, numbers, id, time, retry settings, params and
headers (for JSON and forms alike, and for peer messages, which carry the same rules).

Pure functions raising only `ClientError`, whose message names the field (`field`, or `prefix`
+ the field's name: "task." in a form) and states any limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from .errors import ClientError, duration_text, shown, size_text
from .http import Headers
from .limits import Limits
from .task import RetryOverrides

RETRY_FIELDS = (
    "retry_limit", "age_limit", "min_backoff", "max_backoff", "max_doublings", "deadline"
)  # fmt: skip
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEADER_VALUE_CHAR = re.compile(r"[^\t\x20-\x7e]")
# Hop-by-hop headers belong to our connection, not the task; Host, Content-Length, User-Agent
# and X-Task-* the node writes itself; Expect would make the delivery wait for a 100-continue.
_REFUSED_HEADERS = frozenset({
    "connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
    "host", "content-length", "user-agent", "expect",
})  # fmt: skip
_REFUSED_HEADER_PREFIXES = ("proxy-", "x-task-")
_INT64_MAX = 2**63 - 1


def parse_params(value: object, limits: Limits) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        raise ClientError(400, "params must be an object of name: value")
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        checked_text(key, "a params name")
        for element in item if isinstance(item, list) else (item,):
            pairs.append((key, _param_value(element, key)))
        if len(pairs) > limits.params_count_max:
            raise ClientError(413, f"too many params; the limit is {limits.params_count_max}")
    return pairs


def _param_value(value: object, key: str) -> str:
    # The field's name is built only for an error: it cost as much as the rest.
    if isinstance(value, str):
        return checked_text(value, f"params[{shown(key)}]") if not value.isascii() else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise ClientError(
        400, f"params[{shown(key)}] must be a string, number, boolean or a list of those"
    )


def parse_task_headers(value: object, limits: Limits) -> Headers:
    if not isinstance(value, dict):
        raise ClientError(400, "headers must be an object of name: value strings")
    if len(value) > limits.task_headers_count_max:
        raise ClientError(
            431,
            f"{len(value)} headers; the limit is {limits.task_headers_count_max} headers",
        )
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, raw in value.items():
        if not _TOKEN.fullmatch(name):
            raise ClientError(400, f"header name {shown(name)} is not a valid HTTP token")
        lower = name.lower()
        if lower in _REFUSED_HEADERS or lower.startswith(_REFUSED_HEADER_PREFIXES):
            raise ClientError(400, f"header {shown(name)} may not be set by a task")
        if lower in seen:
            raise ClientError(400, f"header {shown(name)} is given more than once")
        seen.add(lower)
        if not isinstance(raw, str):
            raise ClientError(400, f"header {shown(name)} must have a string value")
        header_value = raw.strip(" \t")
        if _BAD_HEADER_VALUE_CHAR.search(header_value):
            raise ClientError(
                400,
                f"header {shown(name)} must be printable ASCII "
                "(no CR, LF, NUL or other control characters)",
            )
        size = len(name) + len(header_value)
        if size > limits.task_header_bytes_max:
            raise ClientError(
                431,
                f"header {shown(name)} is {size} bytes (name and value); "
                f"the limit is {size_text(limits.task_header_bytes_max)}",
            )
        headers.append((lower, header_value))
    return tuple(headers)


def parse_client_id(value: object, prefix: str, limits: Limits) -> str | None:
    if value is None:
        return None
    client_id = checked_text(value, prefix + "id")
    if len(client_id) > limits.task_id_chars_max:
        raise ClientError(
            400,
            f"{prefix}id is {len(client_id)} characters; the limit is {limits.task_id_chars_max}",
        )
    if not CLIENT_ID.fullmatch(client_id):
        raise ClientError(400, f"{prefix}id must be 1 or more of [A-Za-z0-9_-]")
    return client_id


def parse_eta_ms(fields: Mapping[str, object], prefix: str, now_ms: int, limits: Limits) -> int:
    countdown, eta = fields.get("countdown"), fields.get("eta")
    if countdown is not None and eta is not None:
        raise ClientError(400, f"give {prefix}countdown or {prefix}eta, not both")
    if countdown is not None:
        field = prefix + "countdown"
        seconds = _number(countdown, field)
        if seconds < 0:
            raise ClientError(400, f"{field} must be >= 0 seconds, not {shown(countdown)}")
        ahead_ms = seconds * 1000
    elif eta is not None:
        field = prefix + "eta"
        seconds = _number(eta, field)
        if seconds < 0:
            raise ClientError(400, f"{field} must be a Unix time in seconds (>= 0)")
        ahead_ms = seconds * 1000 - now_ms
    else:
        return now_ms
    if ahead_ms > limits.schedule_ahead_ms_max:  # before round(): seconds * 1000 may be inf
        days = duration_text(limits.schedule_ahead_ms_max)
        raise ClientError(400, f"{field} is more than {days} ahead; the limit is {days}")
    return now_ms + round(seconds * 1000) if countdown is not None else round(seconds * 1000)


def parse_retry_overrides(
    fields: Mapping[str, object], prefix: str, limits: Limits
) -> RetryOverrides | None:
    if fields.keys().isdisjoint(RETRY_FIELDS) or all(
        fields.get(name) is None for name in RETRY_FIELDS
    ):
        return None

    def integer(name: str, minimum: int) -> int | None:
        value = fields.get(name)
        return None if value is None else _integer(value, prefix + name, minimum)

    def duration_ms(name: str) -> int | None:
        value = fields.get(name)
        return None if value is None else _duration_ms(value, prefix + name)

    overrides = RetryOverrides(
        retry_limit=integer("retry_limit", -1),
        age_limit_ms=duration_ms("age_limit"),
        min_backoff_ms=duration_ms("min_backoff"),
        max_backoff_ms=duration_ms("max_backoff"),
        max_doublings=integer("max_doublings", 0),
        deadline_ms=duration_ms("deadline"),
    )
    low, high = overrides.min_backoff_ms, overrides.max_backoff_ms
    if low is not None and high is not None and low > high:
        raise ClientError(400, f"{prefix}min_backoff must not be more than {prefix}max_backoff")
    deadline_ms = overrides.deadline_ms
    if deadline_ms is not None:
        if deadline_ms < 1:
            raise ClientError(400, f"{prefix}deadline must be > 0 seconds (at least 0.001)")
        if deadline_ms > limits.delivery_deadline_ms_max:
            limit_ms = limits.delivery_deadline_ms_max
            raise ClientError(
                400,
                f"{prefix}deadline is {deadline_ms / 1000:g} seconds; the limit is "
                f"{duration_text(limit_ms)} ({limit_ms / 1000:g} seconds)",
            )
    return overrides


# --- values -----------------------------------------------------------------------------------


def checked_text(value: object, field: str) -> str:
    """A string that can be sent: JSON may hold lone surrogates, which UTF-8 cannot encode."""
    if not isinstance(value, str):
        raise ClientError(400, f"{field} must be a string, not {shown(value)}")
    if value.isascii():
        return value  # the common case, without encoding a copy
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ClientError(400, f"{field} is not valid Unicode (a lone surrogate)") from None
    return value


def _number(value: object, field: str) -> float:
    """Seconds, as a JSON number or a decimal string; finite."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = float(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
    else:
        raise ClientError(400, f"{field} must be a number of seconds, not {shown(value)}")
    if not math.isfinite(number):
        raise ClientError(400, f"{field} must be a finite number of seconds")
    return number


def _integer(value: object, field: str, minimum: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        try:
            number = int(value)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            number = _INT64_MAX + 1
    else:
        raise ClientError(400, f"{field} must be an integer, not {shown(value)}")
    if not minimum <= number <= _INT64_MAX:
        raise ClientError(
            400, f"{field} must be from {minimum} to {_INT64_MAX} (the largest 64-bit integer)"
        )
    return number


def _duration_ms(value: object, field: str) -> int:
    seconds = _number(value, field)
    if seconds < 0:
        raise ClientError(400, f"{field} must be >= 0 seconds, not {shown(value)}")
    if seconds * 1000 > _INT64_MAX:
        raise ClientError(400, f"{field} is too large; the limit is {_INT64_MAX // 1000} seconds")
    return round(seconds * 1000)
