"""Turn the body of `POST /{queue}` (a form or JSON) into validated `TaskSpec`s.

Pure functions: nothing here raises anything but `ClientError`, whose message names the field
and, when a limit was exceeded, the limit.

Behaviours a client may not guess, for the API docs:
- No Content-Type is read as a form (`curl -d` sends a form anyway), except a body that starts
  with `{` or `[`: that is read as JSON, as it is under a form or an unknown content type, with a
  warning (`parse_enqueue_with_warnings`) that the content type said otherwise. An encoded
  form cannot start so (`{` and `[` are percent-encoded in a form): no real form is misread.
- Params of a GET, HEAD, DELETE or OPTIONS task go in the url's query string, as App Engine
  does; for other methods they are the form-encoded body.
- JSON param values: numbers are sent as Python writes them (`1`, `1.5`, `1e+16`), booleans as
  `true`/`false`, a list as the key repeated. JSON objects must not repeat a key.
- A JSON `body` goes out as UTF-8, `text/plain; charset=utf-8` unless `headers` say otherwise;
  GET and HEAD tasks cannot have one. Task header values must be printable ASCII; hop-by-hop
  headers, Host, Content-Length, User-Agent, Expect and X-Task-* are refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote_plus

from .errors import ClientError, duration_text, shown, size_text
from .http import Headers
from .limits import Limits
from .task import RetryOverrides, TaskSpec
from .urls import parse_webhook_url, with_query

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_PARAMS_IN_QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
_BODYLESS_METHODS = frozenset({"GET", "HEAD"})

_RETRY_FIELDS = (
    "retry_limit", "age_limit", "min_backoff", "max_backoff", "max_doublings", "deadline"
)  # fmt: skip
_SCALAR_FIELDS = ("url", "method", "countdown", "eta", "id", *_RETRY_FIELDS)
_JSON_FIELDS = frozenset({*_SCALAR_FIELDS, "params", "body", "headers"})
_FORM_PREFIX = "task."

_QUEUE_NAME = re.compile(r"[A-Za-z0-9-][A-Za-z0-9_-]*")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]+")
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
_PLAIN_MEDIA_TYPES = frozenset({FORM_CONTENT_TYPE, JSON_CONTENT_TYPE})
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_INT64_MAX = 2**63 - 1
_FORM_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")
"""What `quote_plus` leaves as it is."""
# Shared by every task that sets no headers of its own: a tuple per task would cost about 100
# bytes of every pending task (a sixth of the memory goal).
_FORM_HEADERS: Headers = (("content-type", FORM_CONTENT_TYPE),)
_TEXT_HEADERS: Headers = (("content-type", TEXT_CONTENT_TYPE),)


def validate_queue_name(name: str, limits: Limits) -> str:
    if not 1 <= len(name) <= limits.queue_name_chars_max:
        raise ClientError(
            400,
            f"queue name must be 1 to {limits.queue_name_chars_max} characters, not {len(name)}",
        )
    if not _QUEUE_NAME.fullmatch(name):
        raise ClientError(
            400, f"queue name must be of [A-Za-z0-9_-], not starting with _: {shown(name)}"
        )
    return name


def parse_enqueue(
    queue: str, content_type: str | None, body: bytes, now_ms: int, limits: Limits
) -> TaskSpec | list[TaskSpec | ClientError]:
    """One task, or (for a JSON array) one result per element, each a task or its error."""
    return parse_enqueue_with_warnings(queue, content_type, body, now_ms, limits)[0]


def parse_enqueue_with_warnings(
    queue: str, content_type: str | None, body: bytes, now_ms: int, limits: Limits
) -> tuple[TaskSpec | list[TaskSpec | ClientError], tuple[str, ...]]:
    """`parse_enqueue`, and what the client should know although the request was taken (for
    the reply's `warnings`). A pair, not a dataclass: this is every enqueue's path."""
    queue = validate_queue_name(queue, limits)
    if len(body) > limits.request_body_bytes_max:
        raise ClientError(
            413,
            f"request body is {len(body)} bytes; "
            f"the limit is {size_text(limits.request_body_bytes_max)}",
        )
    media_type = _media_type(content_type)
    warnings: tuple[str, ...] = ()
    is_json = media_type == JSON_CONTENT_TYPE
    if not is_json and body.lstrip()[:1] in (b"{", b"["):
        # curl -d '{"url": ...}' without -H 'Content-Type: application/json' is the most
        # common mistake. An encoded form cannot start so ({ and [ are %7B and %5B in a form),
        # so the body says what it is.
        warnings = (_json_read_anyway(media_type),)
        is_json = True
    if not is_json:
        if media_type in ("", FORM_CONTENT_TYPE):
            return _parse_form(queue, body, now_ms, limits), warnings
        raise ClientError(
            415,
            f"unsupported content type {shown(media_type)}; "
            f"send {FORM_CONTENT_TYPE} or {JSON_CONTENT_TYPE}",
        )
    document = _load_json(body)
    if isinstance(document, list):
        return parse_enqueue_batch(queue, document, now_ms, limits), warnings
    if isinstance(document, dict):
        return _parse_json_task(queue, document, now_ms, limits), warnings
    raise ClientError(400, "JSON body must be an object (one task) or an array (a batch)")


def _json_read_anyway(media_type: str) -> str:
    """The warning for a JSON body whose content type (`media_type`, "" for none) said
    otherwise."""
    if not media_type:
        said = "the request has no Content-Type"
    elif media_type == FORM_CONTENT_TYPE:
        said = f"Content-Type said {FORM_CONTENT_TYPE} (curl -d's default)"
    else:
        said = f"Content-Type said {shown(media_type)}, which the node does not take"
    return (
        f"{said}, but the body is JSON and was read as JSON; "
        f"send Content-Type: {JSON_CONTENT_TYPE} with JSON (curl -H)"
    )


def parse_enqueue_batch(
    queue: str, items: list[object], now_ms: int, limits: Limits
) -> list[TaskSpec | ClientError]:
    """Each element validated on its own: one bad task does not refuse the others."""
    if not items:
        raise ClientError(400, "a batch must hold at least one task")
    if len(items) > limits.batch_tasks_max:
        raise ClientError(
            413, f"a batch holds {len(items)} tasks; the limit is {limits.batch_tasks_max}"
        )
    results: list[TaskSpec | ClientError] = []
    for item in items:
        try:
            if not isinstance(item, dict):
                raise ClientError(400, "each element of a batch must be an object (one task)")
            results.append(_parse_json_task(queue, item, now_ms, limits))
        except ClientError as error:
            results.append(error)
    return results


def _media_type(content_type: str | None) -> str:
    """The media type, lower-case, "" when there is none; 415 for a charset other than UTF-8."""
    if content_type in _PLAIN_MEDIA_TYPES:
        return content_type  # the common case, without splitting it
    if content_type is None or not content_type.strip():
        return ""
    media_type, *parameters = content_type.split(";")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in _CHARSETS:
            raise ClientError(415, f"unsupported charset {shown(charset)}; send utf-8")
    return media_type.strip().lower()


# --- form ------------------------------------------------------------------------------------


def _parse_form(queue: str, body: bytes, now_ms: int, limits: Limits) -> TaskSpec:
    try:
        pairs = _form_pairs(body.decode("utf-8"), limits.params_count_max + len(_SCALAR_FIELDS))
    except UnicodeDecodeError:
        raise ClientError(400, "malformed form body: it is not UTF-8") from None
    except ValueError:  # parse_qsl's max_num_fields: refused before building every pair
        raise ClientError(
            413, f"too many form fields; the limit is {limits.params_count_max} params"
        ) from None
    fields: dict[str, str] = {}
    params: list[tuple[str, str]] = []
    for key, value in pairs:
        if not key.startswith(_FORM_PREFIX):
            params.append((key, value))
            continue
        name = key.removeprefix(_FORM_PREFIX)
        if name not in _SCALAR_FIELDS:
            known = ", ".join(_FORM_PREFIX + field for field in _SCALAR_FIELDS)
            raise ClientError(400, f"unknown field {shown(key)}; known fields: {known}")
        if name in fields:
            raise ClientError(400, f"{key} is given more than once")
        fields[name] = value
    return _build_spec(
        queue=queue, prefix=_FORM_PREFIX, fields=fields, params=params, body=None, headers=(),
        now_ms=now_ms, limits=limits,
    )  # fmt: skip


# --- JSON ------------------------------------------------------------------------------------


def _form_pairs(text: str, fields_max: int) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=fields_max)`.

    A form without `%` or `+` decodes to itself, so it is split here directly: parse_qsl, which
    unquotes every name and value, cost 5% of the node's work for a small form enqueue. Raises
    ValueError (UnicodeDecodeError for bad UTF-8 escapes) as parse_qsl does."""
    if "%" in text or "+" in text:
        return parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="strict",
            max_num_fields=fields_max,
        )  # fmt: skip
    if text and text.count("&") + 1 > fields_max:
        raise ValueError("too many fields")
    return [
        (name, value)
        for name, _, value in (part.partition("=") for part in text.split("&") if part)
    ]


class _RefusedJson(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RefusedJson(f"duplicate key {shown(key)}")
            seen.add(key)
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _RefusedJson(f"number {shown(text)} is out of range")
    return value


def _refuse_constant(text: str) -> object:
    raise _RefusedJson(f"{text} is not a JSON number")


def _load_json(body: bytes) -> object:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ClientError(400, f"malformed JSON: not UTF-8 at byte {error.start}") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_float=_finite_float,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        raise ClientError(400, "malformed JSON: nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, our hooks, or an integer of too many digits
        raise ClientError(400, f"malformed JSON: {str(error)[:200]}") from None


def _parse_json_task(
    queue: str, document: dict[str, object], now_ms: int, limits: Limits
) -> TaskSpec:
    if not _JSON_FIELDS.issuperset(document):
        for key in document:
            if key not in _JSON_FIELDS:
                known = ", ".join(sorted(_JSON_FIELDS))
                raise ClientError(400, f"unknown field {shown(key)}; known fields: {known}")
    params_value, body_value = document.get("params"), document.get("body")
    if params_value is not None and body_value is not None:
        raise ClientError(400, "give params or body, not both")
    params = [] if params_value is None else _json_params(params_value, limits)
    body = None if body_value is None else _text(body_value, "body")
    headers_value = document.get("headers")
    headers = () if headers_value is None else _json_headers(headers_value, limits)
    return _build_spec(
        queue=queue, prefix="", fields=document, params=params, body=body, headers=headers,
        now_ms=now_ms, limits=limits,
    )  # fmt: skip


def _json_params(value: object, limits: Limits) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        raise ClientError(400, "params must be an object of name: value")
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        _text(key, "a params name")
        for element in item if isinstance(item, list) else (item,):
            pairs.append((key, _param_value(element, key)))
        if len(pairs) > limits.params_count_max:
            raise ClientError(413, f"too many params; the limit is {limits.params_count_max}")
    return pairs


def _param_value(value: object, key: str) -> str:
    # The field's name is built only for an error: it cost as much as the rest.
    if isinstance(value, str):
        return _text(value, f"params[{shown(key)}]") if not value.isascii() else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise ClientError(
        400, f"params[{shown(key)}] must be a string, number, boolean or a list of those"
    )


def _json_headers(value: object, limits: Limits) -> Headers:
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


# --- the fields both forms share --------------------------------------------------------------


def _build_spec(
    *,
    queue: str,
    prefix: str,
    fields: Mapping[str, object],
    params: list[tuple[str, str]],
    body: str | None,
    headers: Headers,
    now_ms: int,
    limits: Limits,
) -> TaskSpec:
    """`prefix` is how the request names its fields ("task." in a form) for the messages."""
    url_value = fields.get("url")
    if url_value is None:
        raise ClientError(400, f"{prefix}url is required")
    url = parse_webhook_url(_text(url_value, prefix + "url"), limits, field=prefix + "url")
    method = _method(fields.get("method"), prefix)
    client_id = _client_id(fields.get("id"), prefix, limits)
    eta_ms = _eta_ms(fields, prefix, now_ms, limits)
    retry = _retry_overrides(fields, prefix, limits)
    if len(params) > limits.params_count_max:
        raise ClientError(
            413, f"{len(params)} params; the limit is {limits.params_count_max} params"
        )
    payload, content_type = b"", None
    if params and method in _PARAMS_IN_QUERY_METHODS:
        url = with_query(url, params, limits)
    elif params:
        payload, content_type = _form_encode(params).encode("ascii"), FORM_CONTENT_TYPE
    elif body is not None:
        if method in _BODYLESS_METHODS:
            raise ClientError(400, f"a {method} task cannot have a body; use params")
        payload, content_type = body.encode("utf-8"), TEXT_CONTENT_TYPE
    if len(payload) > limits.task_body_bytes_max:
        raise ClientError(
            413,
            f"task body is {len(payload)} bytes; "
            f"the limit is {size_text(limits.task_body_bytes_max)}",
        )
    if payload and not any(name == "content-type" for name, _ in headers):
        assert content_type is not None
        if headers:
            headers = (("content-type", content_type), *headers)
        else:
            headers = _FORM_HEADERS if content_type == FORM_CONTENT_TYPE else _TEXT_HEADERS
    return TaskSpec(
        queue=queue, url=url.url, method=method, client_id=client_id, eta_ms=eta_ms,
        headers=headers, body=payload, retry=retry,
    )  # fmt: skip


def _form_encode(pairs: list[tuple[str, str]]) -> str:
    """`urlencode(pairs)`; names and values it would leave as they are are not run through
    `quote_plus` (which made urlencode a sixth of parsing a typical JSON task)."""
    return "&".join(f"{_quote_plus(name)}={_quote_plus(value)}" for name, value in pairs)


def _quote_plus(text: str) -> str:
    return text if _FORM_SAFE.fullmatch(text) else quote_plus(text)


def _method(value: object, prefix: str) -> str:
    if value is None:
        return "POST"
    given = _text(value, prefix + "method")
    method = given.upper()
    if not given.isascii() or method not in METHODS:  # "opt\u0131ons".upper() == "OPTIONS"
        allowed = ", ".join(sorted(METHODS))
        raise ClientError(400, f"{prefix}method must be one of {allowed}, not {shown(value)}")
    return method


def _client_id(value: object, prefix: str, limits: Limits) -> str | None:
    if value is None:
        return None
    client_id = _text(value, prefix + "id")
    if len(client_id) > limits.task_id_chars_max:
        raise ClientError(
            400,
            f"{prefix}id is {len(client_id)} characters; the limit is {limits.task_id_chars_max}",
        )
    if not _CLIENT_ID.fullmatch(client_id):
        raise ClientError(400, f"{prefix}id must be 1 or more of [A-Za-z0-9_-]")
    return client_id


def _eta_ms(fields: Mapping[str, object], prefix: str, now_ms: int, limits: Limits) -> int:
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


def _retry_overrides(
    fields: Mapping[str, object], prefix: str, limits: Limits
) -> RetryOverrides | None:
    if fields.keys().isdisjoint(_RETRY_FIELDS) or all(
        fields.get(name) is None for name in _RETRY_FIELDS
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


def _text(value: object, field: str) -> str:
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
