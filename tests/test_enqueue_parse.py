"""Enqueue request parsing: what a client sends to `POST /{queue}` and the task it gets."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from miyamoto.logic.enqueue_parse import parse_enqueue, validate_queue_name
from miyamoto.logic.errors import ClientError
from miyamoto.logic.limits import Limits
from miyamoto.logic.task import RetryOverrides, TaskSpec

NOW = 1_700_000_000_000
LIMITS = Limits()
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
FORM_HEADER = (("content-type", FORM),)


def form(*pairs: tuple[str, str]) -> bytes:
    return urlencode(pairs).encode()


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def one(content_type: str | None, body: bytes, limits: Limits = LIMITS) -> TaskSpec:
    result = parse_enqueue("q", content_type, body, NOW, limits)
    assert isinstance(result, TaskSpec), result
    return result


def refused(content_type: str | None, body: bytes, limits: Limits = LIMITS) -> ClientError:
    with pytest.raises(ClientError) as caught:
        parse_enqueue("q", content_type, body, NOW, limits)
    return caught.value


# --- the walkthrough and the equivalence of the two forms -------------------------------------


def test_walkthrough_form_request() -> None:
    body = b"task.url=http://localhost:9099/worker&task.countdown=5&foo=bar"
    assert one(FORM, body) == TaskSpec(
        queue="q",
        url="http://localhost:9099/worker",
        eta_ms=NOW + 5000,
        headers=FORM_HEADER,
        body=b"foo=bar",
    )


def test_walkthrough_json_request_is_the_same_task_as_the_form() -> None:
    body = b'{"url": "http://localhost:9099/worker", "params": {"foo": "bar"}}'
    assert one(JSON, body) == one(FORM, b"task.url=http://localhost:9099/worker&foo=bar")


def test_every_field_means_the_same_in_form_and_json() -> None:
    from_form = one(
        FORM,
        form(
            ("task.url", "https://example.com/hook?x=1"),
            ("task.method", "put"),
            ("task.countdown", "2.5"),
            ("task.id", "order-42_a"),
            ("task.retry_limit", "3"),
            ("task.age_limit", "3600"),
            ("task.min_backoff", "0.5"),
            ("task.max_backoff", "60"),
            ("task.max_doublings", "4"),
            ("task.deadline", "10"),
            ("a", "1"),
            ("b", "x y"),
            ("a", "2"),
        ),
    )
    from_json = one(
        JSON,
        as_json(
            {
                "url": "https://example.com/hook?x=1",
                "method": "PUT",
                "countdown": 2.5,
                "id": "order-42_a",
                "retry_limit": 3,
                "age_limit": 3600,
                "min_backoff": 0.5,
                "max_backoff": "60",
                "max_doublings": 4,
                "deadline": 10,
                "params": {"a": [1, "2"], "b": "x y"},
            }
        ),
    )
    # JSON cannot interleave a repeated key with another, so the body order differs there only
    assert from_form.body == b"a=1&b=x+y&a=2"
    assert from_json.body == b"a=1&a=2&b=x+y"
    assert from_json == TaskSpec(
        queue="q",
        url="https://example.com/hook?x=1",
        method="PUT",
        client_id="order-42_a",
        eta_ms=NOW + 2500,
        headers=FORM_HEADER,
        body=b"a=1&a=2&b=x+y",
        retry=RetryOverrides(
            retry_limit=3,
            age_limit_ms=3_600_000,
            min_backoff_ms=500,
            max_backoff_ms=60_000,
            max_doublings=4,
            deadline_ms=10_000,
        ),
    )
    assert from_json == TaskSpec(**{**_fields(from_form), "body": from_json.body})


def _fields(spec: TaskSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in TaskSpec.__dataclass_fields__}


# --- params -----------------------------------------------------------------------------------


def test_params_keep_order_repeats_blanks_and_unicode() -> None:
    pairs = [("z", "1"), ("a", ""), ("z", "2"), ("é", "ü & = +"), ("Task.url", "x"), ("m", "3")]
    spec = one(FORM, form(("task.url", "http://h/"), *pairs))
    assert parse_qsl(spec.body.decode(), keep_blank_values=True) == pairs
    # the task fields may come anywhere in the form
    spec_late = one(FORM, form(*pairs[:2], ("task.url", "http://h/"), *pairs[2:]))
    assert spec_late == spec


def test_json_param_values_are_encoded_as_documented() -> None:
    params = {
        "s": "x",
        "i": 7,
        "f": 1.5,
        "big": 1e16,
        "t": True,
        "n": False,
        "l": ["a", 2],
        "e": [],
    }
    spec = one(JSON, as_json({"url": "http://h/", "params": params}))
    assert spec.body == b"s=x&i=7&f=1.5&big=1e%2B16&t=true&n=false&l=a&l=2"


def test_get_like_methods_put_params_in_the_query_string() -> None:
    for method in ("GET", "head", "Delete", "OPTIONS"):
        spec = one(
            FORM, form(("task.url", "http://h/p?x=0"), ("task.method", method), ("a", "1 2"))
        )
        assert spec.method == method.upper()
        assert spec.url == "http://h/p?x=0&a=1+2"
        assert spec.body == b""
        assert spec.headers == ()


def test_no_params_and_no_body_send_nothing() -> None:
    for spec in (
        one(FORM, b"task.url=http://h/"),
        one(JSON, b'{"url": "http://h/", "params": {}}'),
        one(JSON, b'{"url": "http://h/", "method": "POST", "body": null}'),
    ):
        assert spec.body == b""
        assert spec.headers == ()


# --- JSON body and headers ---------------------------------------------------------------------


def test_json_body_is_sent_as_utf8_text() -> None:
    spec = one(JSON, as_json({"url": "http://h/", "body": "héllo\n{}"}))
    assert spec.body == "héllo\n{}".encode()
    assert spec.headers == (("content-type", "text/plain; charset=utf-8"),)


def test_a_given_content_type_replaces_the_default_and_headers_keep_order() -> None:
    headers = {"X-Trace": " abc\t", "Content-Type": "application/json", "Authorization": "Bearer t"}
    spec = one(JSON, as_json({"url": "http://h/", "body": '{"a": 1}', "headers": headers}))
    assert spec.headers == (
        ("x-trace", "abc"),
        ("content-type", "application/json"),
        ("authorization", "Bearer t"),
    )
    with_params = one(JSON, as_json({"url": "http://h/", "params": {"a": 1}, "headers": headers}))
    assert ("content-type", FORM) not in with_params.headers


@pytest.mark.parametrize(
    "name",
    [
        "Connection", "keep-alive", "Proxy-Authorization", "TE", "Trailer", "Trailers",
        "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "X-Task-Id", "x-task-anything",
        "User-Agent", "Expect",
    ],
)  # fmt: skip
def test_refused_headers(name: str) -> None:
    error = refused(JSON, as_json({"url": "http://h/", "headers": {name: "x"}}))
    assert error.status == 400
    assert name in error.message


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Bad Name": "x"}, "not a valid HTTP token"),
        ({"": "x"}, "not a valid HTTP token"),
        ({"X-A": "a\r\nX-Injected: 1"}, "CR, LF, NUL"),
        ({"X-A": "a\nb"}, "CR, LF, NUL"),
        ({"X-A": "a\x00b"}, "CR, LF, NUL"),
        ({"X-A": "caf\u00e9"}, "printable ASCII"),
        ({"X-A": 1}, "string value"),
        ({"X-A": "1", "x-a": "2"}, "more than once"),
        (["X-A", "1"], "headers must be an object"),
    ],
)
def test_bad_headers(headers: object, words: str) -> None:
    error = refused(JSON, as_json({"url": "http://h/", "headers": headers}))
    assert (error.status, words in error.message) == (400, True), error.message


def test_header_limits_are_431_and_stated() -> None:
    limits = Limits(task_headers_count_max=2, task_header_bytes_max=10)
    ok = {"X-A": "1234567", "X-B": "1"}  # "X-A" + value = 10 bytes
    assert len(one(JSON, as_json({"url": "http://h/", "headers": ok}), limits).headers) == 2
    error = refused(JSON, as_json({"url": "http://h/", "headers": {**ok, "X-C": ""}}), limits)
    assert (error.status, error.message) == (431, "3 headers; the limit is 2 headers")
    error = refused(JSON, as_json({"url": "http://h/", "headers": {"X-A": "12345678"}}), limits)
    assert error.status == 431
    assert "11 bytes (name and value); the limit is 10" in error.message


# --- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "eta_ms"),
    [
        ({}, NOW),
        ({"countdown": 0}, NOW),
        ({"countdown": 1.5}, NOW + 1500),
        ({"countdown": "0.25"}, NOW + 250),
        ({"countdown": ".5"}, NOW + 500),
        ({"countdown": "1e3"}, NOW + 1_000_000),
        ({"countdown": 30 * 86400}, NOW + 30 * 86400 * 1000),
        ({"eta": NOW / 1000 + 60.125}, NOW + 60_125),
        ({"eta": str(NOW // 1000 + 7)}, NOW + 7000),
        ({"eta": 1_000_000_000.5}, 1_000_000_000_500),  # in the past: due now
        ({"eta": 0}, 0),
    ],
)
def test_countdown_and_eta(fields: dict[str, Any], eta_ms: int) -> None:
    assert one(JSON, as_json({"url": "http://h/", **fields})).eta_ms == eta_ms
    form_fields = [(f"task.{key}", str(value)) for key, value in fields.items()]
    assert one(FORM, form(("task.url", "http://h/"), *form_fields)).eta_ms == eta_ms


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"countdown": -1}, "countdown must be >= 0"),
        ({"countdown": "-0.001"}, "countdown must be >= 0"),
        ({"countdown": "nan"}, "countdown must be a number"),
        ({"countdown": "inf"}, "countdown must be a number"),
        ({"countdown": "1e400"}, "countdown must be a finite number"),
        ({"countdown": 10**400}, "countdown must be a finite number"),
        ({"countdown": True}, "countdown must be a number"),
        ({"countdown": ""}, "countdown must be a number"),
        ({"countdown": " 5"}, "countdown must be a number"),
        ({"countdown": "5s"}, "countdown must be a number"),
        ({"countdown": [5]}, "countdown must be a number"),
        ({"countdown": 30 * 86400 + 0.001}, "countdown is more than 30 days ahead"),
        ({"countdown": 1e300}, "the limit is 30 days"),
        ({"eta": NOW / 1000 + 30 * 86400 + 1}, "eta is more than 30 days ahead"),
        ({"eta": 1e306}, "the limit is 30 days"),
        ({"eta": -1}, "eta must be a Unix time"),
        ({"eta": 1, "countdown": 1}, "countdown or eta, not both"),
    ],
)
def test_bad_countdown_and_eta(fields: dict[str, Any], words: str) -> None:
    error = refused(JSON, as_json({"url": "http://h/", **fields}))
    assert error.status == 400
    assert words in error.message


def test_form_time_errors_name_the_form_field() -> None:
    error = refused(FORM, b"task.url=http://h/&task.countdown=-5")
    assert error.message.startswith("task.countdown must be >= 0")
    error = refused(FORM, b"task.url=http://h/&task.countdown=1&task.eta=1")
    assert error.message == "give task.countdown or task.eta, not both"


def test_schedule_limit_follows_the_configured_limit() -> None:
    limits = Limits(schedule_ahead_ms_max=36 * 3600 * 1000)
    error = refused(FORM, b"task.url=http://h/&task.countdown=200000", limits)
    assert "the limit is 1.5 days" in error.message


# --- retry overrides --------------------------------------------------------------------------


def test_retry_overrides_only_what_is_given() -> None:
    spec = one(FORM, b"task.url=http://h/&task.retry_limit=-1&task.min_backoff=0.0015")
    assert spec.retry == RetryOverrides(retry_limit=-1, min_backoff_ms=2)
    assert one(FORM, b"task.url=http://h/").retry is None


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("retry_limit", "-2", "retry_limit must be from -1"),
        ("retry_limit", "1.0", "retry_limit must be an integer"),
        ("retry_limit", str(2**63), "retry_limit must be from -1 to 9223372036854775807"),
        ("retry_limit", "9" * 5000, "retry_limit must be from -1"),
        ("max_doublings", "-1", "max_doublings must be from 0"),
        ("age_limit", "-1", "age_limit must be >= 0"),
        ("min_backoff", "x", "min_backoff must be a number"),
        ("max_backoff", "1e300", "max_backoff is too large"),
        ("deadline", "0", "deadline must be > 0"),
        ("deadline", "0.0004", "deadline must be > 0"),
        ("deadline", "1801", "is 1801 seconds; the limit is 30 minutes (1800 seconds)"),
    ],
)
def test_bad_retry_overrides(field: str, value: str, words: str) -> None:
    error = refused(FORM, form(("task.url", "http://h/"), (f"task.{field}", value)))
    assert error.status == 400
    assert words in error.message
    assert f"task.{field}" in error.message


def test_min_backoff_above_max_backoff_is_refused() -> None:
    error = refused(JSON, as_json({"url": "http://h/", "min_backoff": 10, "max_backoff": 5}))
    assert error.message == "min_backoff must not be more than max_backoff"


# --- every other error, with its status --------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message_part"),
    [
        (FORM, b"", 400, "task.url is required"),
        (FORM, b"foo=bar", 400, "task.url is required"),
        (JSON, b"{}", 400, "url is required"),
        (JSON, b'{"url": null}', 400, "url is required"),
        (JSON, b'{"url": 5}', 400, "url must be a string"),
        (FORM, b"task.url=ftp://h/", 400, "url scheme must be http or https"),
        (FORM, b"task.url=http://u:p@h/", 400, "user:password@"),
        (FORM, b"task.url=http://h/&task.countdwn=5", 400, 'unknown field "task.countdwn"'),
        (FORM, b"task.url=http://h/&task.queue=x", 400, 'unknown field "task.queue"'),
        (FORM, b"task.url=http://h/&task.url=http://i/", 400, "task.url is given more than once"),
        (JSON, b'{"url": "http://h/", "countdwn": 5}', 400, 'unknown field "countdwn"'),
        (FORM, b"task.url=http://h/&task.method=FETCH", 400, "task.method must be one of"),
        (FORM, b"task.url=http://h/&task.method=", 400, "task.method must be one of"),
        (JSON, b'{"url": "http://h/", "method": "CONNECT"}', 400, "method must be one of"),
        (JSON, b'{"url": "http://h/", "method": 1}', 400, "method must be a string"),
        (JSON, b'{"url": "http://h/", "method": "opt\\u0131ons"}', 400, "method must be one of"),
        (FORM, b"task.url=http://h/&task.id=", 400, "task.id must be 1 or more of"),
        (FORM, b"task.url=http://h/&task.id=a.b", 400, "task.id must be 1 or more of"),
        (JSON, b'{"url": "http://h/", "id": "a b"}', 400, "id must be 1 or more of"),
        (JSON, b'{"url": "http://h/", "id": 5}', 400, "id must be a string"),
        (JSON, b'{"url": "http://h/", "params": {}, "body": ""}', 400, "params or body"),
        (JSON, b'{"url": "http://h/", "params": [["a", "1"]]}', 400, "params must be an object"),
        (JSON, b'{"url": "http://h/", "params": {"a": null}}', 400, 'params["a"] must be'),
        (JSON, b'{"url": "http://h/", "params": {"a": [[1]]}}', 400, 'params["a"] must be'),
        (JSON, b'{"url": "http://h/", "params": {"a": {}}}', 400, 'params["a"] must be'),
        (JSON, b'{"url": "http://h/", "body": 5}', 400, "body must be a string"),
        (JSON, b'{"url": "http://h/", "method": "GET", "body": "x"}', 400, "GET task cannot"),
        (JSON, b'{"url": "http://h/", "body": "\\ud800"}', 400, "lone surrogate"),
        (JSON, b'{"url": "http://h/", "params": {"\\udfff": "x"}}', 400, "lone surrogate"),
        (JSON, b'{"url": "http://h/\\ud800"}', 400, "lone surrogate"),
        (JSON, b'{"url": "http://h/", "url": "http://i/"}', 400, 'duplicate key "url"'),
        (JSON, b"", 400, "malformed JSON: Expecting value"),
        (JSON, b'{"url": ', 400, "malformed JSON"),
        (JSON, b"\xff{}", 400, "malformed JSON: not UTF-8 at byte 0"),
        (JSON, b'{"url": "http://h/", "countdown": NaN}', 400, "NaN is not a JSON number"),
        (JSON, b'{"url": "http://h/", "countdown": 1e999}', 400, "out of range"),
        (JSON, b"[" * 100_000, 400, "malformed JSON: nested too deeply"),
        (JSON, b'"http://h/"', 400, "must be an object (one task) or an array"),
        (JSON, b"[]", 400, "at least one task"),
        (FORM, b"task.url=http://h/&a=\xff", 400, "malformed form body: it is not UTF-8"),
        (FORM, b"task.url=http://h/&a=%ff", 400, "malformed form body: it is not UTF-8"),
        ("text/plain", b"x", 415, f"send {FORM} or {JSON}"),
        ("multipart/form-data; boundary=x", b"x", 415, '"multipart/form-data"'),
        ("application/json; charset=latin-1", b"{}", 415, 'charset "latin-1"'),
    ],
)
def test_errors(content_type: str | None, body: bytes, status: int, message_part: str) -> None:
    error = refused(content_type, body)
    assert error.status == status
    assert message_part in error.message


def test_form_tolerates_bad_percent_escapes() -> None:
    assert one(FORM, b"task.url=http://h/&a=%zz%").body == b"a=%25zz%25"


@pytest.mark.parametrize(
    "content_type",
    [None, "", "Application/X-WWW-Form-Urlencoded", f"{FORM}; charset=UTF-8", f" {FORM} "],
)
def test_form_content_types(content_type: str | None) -> None:
    assert one(content_type, b"task.url=http://h/&a=1").body == b"a=1"


@pytest.mark.parametrize(
    "content_type", ["APPLICATION/JSON", 'application/json; charset="utf-8"', "application/json;"]
)
def test_json_content_types(content_type: str) -> None:
    assert one(content_type, b'{"url": "http://h/", "params": {"a": 1}}').body == b"a=1"


# --- limits, each stated in its error ----------------------------------------------------------


def test_task_body_limit_is_413() -> None:
    limits = Limits(task_body_bytes_max=10)
    assert (
        one(JSON, as_json({"url": "http://h/", "body": "é" * 5}), limits).body == ("é" * 5).encode()
    )
    error = refused(JSON, as_json({"url": "http://h/", "body": "x" * 11}), limits)
    assert (error.status, error.message) == (413, "task body is 11 bytes; the limit is 10 bytes")
    error = refused(FORM, b"task.url=http://h/&abcde=fghij", limits)
    assert (error.status, error.message) == (413, "task body is 11 bytes; the limit is 10 bytes")


def test_request_body_limit_is_413() -> None:
    limits = Limits(request_body_bytes_max=20)
    error = refused(FORM, b"task.url=http://h/&a=12", limits)
    assert (error.status, error.message) == (413, "request body is 23 bytes; the limit is 20 bytes")


def test_params_count_limit_is_413() -> None:
    limits = Limits(params_count_max=3)
    assert one(FORM, b"task.url=http://h/&task.countdown=1&a=1&a=2&a=3", limits)
    error = refused(FORM, b"task.url=http://h/&a=1&a=2&a=3&a=4", limits)
    assert (error.status, error.message) == (413, "4 params; the limit is 3 params")
    error = refused(FORM, b"task.url=http://h/" + b"&" * 5000, limits)
    assert (error.status, error.message) == (413, "too many form fields; the limit is 3 params")
    error = refused(
        JSON, as_json({"url": "http://h/", "params": {"a": [1, 2], "b": [3, 4]}}), limits
    )
    assert (error.status, error.message) == (413, "too many params; the limit is 3")


def test_url_limit_counts_params_in_the_query_string() -> None:
    limits = Limits(url_chars_max=20)
    assert (
        one(FORM, b"task.url=http://h/&task.method=GET&a=12345678", limits).url
        == "http://h/?a=12345678"
    )
    error = refused(FORM, b"task.url=http://h/&task.method=GET&a=123456789", limits)
    assert error.status == 400
    assert (
        error.message == "url with the params in its query string is 21 characters; the limit is 20"
    )


def test_client_id_limit_is_stated() -> None:
    limits = Limits(task_id_chars_max=5)
    assert one(FORM, b"task.url=http://h/&task.id=abcde", limits).client_id == "abcde"
    error = refused(FORM, b"task.url=http://h/&task.id=abcdef", limits)
    assert (error.status, error.message) == (400, "task.id is 6 characters; the limit is 5")


# --- batches ----------------------------------------------------------------------------------


def test_batch_one_bad_element_does_not_refuse_the_others() -> None:
    body = as_json(
        [
            {"url": "http://h/1", "params": {"n": 1}},
            {"url": "ftp://h/2"},
            "not an object",
            {"url": "http://h/3", "countdown": 2},
        ]
    )
    results = parse_enqueue("q", JSON, body, NOW, LIMITS)
    assert isinstance(results, list)
    first, second, third, fourth = results
    assert isinstance(first, TaskSpec) and first.body == b"n=1"
    assert isinstance(second, ClientError) and "scheme" in second.message
    assert isinstance(third, ClientError) and "must be an object" in third.message
    assert isinstance(fourth, TaskSpec) and fourth.eta_ms == NOW + 2000


def test_batch_limit_is_413_for_the_whole_request() -> None:
    limits = Limits(batch_tasks_max=2)
    task = {"url": "http://h/"}
    accepted = parse_enqueue("q", JSON, as_json([task, task]), NOW, limits)
    assert isinstance(accepted, list) and len(accepted) == 2
    error = refused(JSON, as_json([task, task, task]), limits)
    assert (error.status, error.message) == (413, "a batch holds 3 tasks; the limit is 2")


# --- queue names ------------------------------------------------------------------------------


def test_queue_names() -> None:
    for name in ("q", "Queue-1_x", "-", "9" * 100):
        assert validate_queue_name(name, LIMITS) == name
    for name in ("", "_health", "a/b", "a b", "ä", "q\n", "9" * 101):
        with pytest.raises(ClientError) as caught:
            validate_queue_name(name, LIMITS)
        assert caught.value.status == 400
    with pytest.raises(ClientError, match="1 to 100 characters, not 101"):
        validate_queue_name("9" * 101, LIMITS)
    with pytest.raises(ClientError, match="not starting with _"):
        parse_enqueue("_x", FORM, b"task.url=http://h/", NOW, LIMITS)
