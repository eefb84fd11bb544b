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

from .enqueue_values import (
    RETRY_FIELDS,
    checked_text,
    parse_client_id,
    parse_eta_ms,
    parse_params,
    parse_retry_overrides,
    parse_task_headers,
)
from .errors import ClientError, shown, size_text
from .http import Headers
from .limits import Limits
from .task import TaskSpec
from .urls import parse_webhook_url, with_query

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_PARAMS_IN_QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
_BODYLESS_METHODS = frozenset({"GET", "HEAD"})

_SCALAR_FIELDS = ("url", "method", "countdown", "eta", "id", *RETRY_FIELDS)
_JSON_FIELDS = frozenset({*_SCALAR_FIELDS, "params", "body", "headers"})
_FORM_PREFIX = "task."

_QUEUE_NAME = re.compile(r"[A-Za-z0-9-][A-Za-z0-9_-]*")
_PLAIN_MEDIA_TYPES = frozenset({FORM_CONTENT_TYPE, JSON_CONTENT_TYPE})
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
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


# --- JSON ------------------------------------------------------------------------------------


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
    params = [] if params_value is None else parse_params(params_value, limits)
    body = None if body_value is None else checked_text(body_value, "body")
    headers_value = document.get("headers")
    headers = () if headers_value is None else parse_task_headers(headers_value, limits)
    return _build_spec(
        queue=queue, prefix="", fields=document, params=params, body=body, headers=headers,
        now_ms=now_ms, limits=limits,
    )  # fmt: skip


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
    url = parse_webhook_url(checked_text(url_value, prefix + "url"), limits, field=prefix + "url")
    method = _method(fields.get("method"), prefix)
    client_id = parse_client_id(fields.get("id"), prefix, limits)
    eta_ms = parse_eta_ms(fields, prefix, now_ms, limits)
    retry = parse_retry_overrides(fields, prefix, limits)
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
    given = checked_text(value, prefix + "method")
    method = given.upper()
    if not given.isascii() or method not in METHODS:  # "opt\u0131ons".upper() == "OPTIONS"
        allowed = ", ".join(sorted(METHODS))
        raise ClientError(400, f"{prefix}method must be one of {allowed}, not {shown(value)}")
    return method
