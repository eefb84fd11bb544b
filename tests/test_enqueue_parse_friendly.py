"""The enqueue parser forgives the most common mistake (JSON sent as curl's default form) and
words its errors in JSON and human units."""

from __future__ import annotations

import pytest

from miyamoto.logic.enqueue_parse import parse_enqueue_with_warnings
from miyamoto.logic.errors import ClientError, duration_text, shown, size_text
from miyamoto.logic.limits import Limits
from miyamoto.logic.task import TaskSpec

LIMITS = Limits()
NOW_MS = 1_700_000_000_000
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
TASK = b'{"url": "http://h/w", "params": {"a": "1"}}'


def parse(content_type: str | None, body: bytes) -> tuple[TaskSpec, tuple[str, ...]]:
    tasks, warnings = parse_enqueue_with_warnings("q", content_type, body, NOW_MS, LIMITS)
    assert isinstance(tasks, TaskSpec)
    return tasks, warnings


def refused(content_type: str | None, body: bytes) -> ClientError:
    with pytest.raises(ClientError) as raised:
        parse_enqueue_with_warnings("q", content_type, body, NOW_MS, LIMITS)
    return raised.value


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        (None, "no Content-Type"),
        ("", "no Content-Type"),
        (FORM, f"Content-Type said {FORM} (curl -d's default)"),
        (f"{FORM}; charset=utf-8", f"Content-Type said {FORM}"),
        ("text/plain", 'Content-Type said "text/plain", which the node does not take'),
        ("application/x-ndjson", 'Content-Type said "application/x-ndjson"'),
    ],
)
def test_json_under_another_content_type_is_read_as_json_with_a_warning(
    content_type: str | None, said: str
) -> None:
    spec, warnings = parse(content_type, b"  \n" + TASK)
    proper, none = parse(JSON, TASK)
    assert spec == proper and none == ()
    assert spec.url == "http://h/w" and spec.body == b"a=1"
    (warning,) = warnings
    assert said in warning
    assert "read as JSON" in warning and "Content-Type: application/json" in warning


def test_a_batch_sent_as_a_form_is_read_as_json_with_a_warning() -> None:
    tasks, warnings = parse_enqueue_with_warnings("q", FORM, b"[" + TASK + b"]", NOW_MS, LIMITS)
    assert isinstance(tasks, list) and len(tasks) == 1
    assert isinstance(tasks[0], TaskSpec)
    assert len(warnings) == 1


def test_a_real_form_gets_no_warning() -> None:
    spec, warnings = parse(None, b"task.url=http://h/w&a=1")
    assert (spec.url, spec.body, warnings) == ("http://h/w", b"a=1", ())


def test_an_encoded_form_starting_with_a_brace_stays_a_form() -> None:
    # A form encodes `{` as %7B, so only a raw brace or bracket says "JSON".
    spec, warnings = parse(FORM, b"%7Bx=1&task.url=http://h/w")
    assert (spec.body, warnings) == (b"%7Bx=1", ())


def test_broken_json_sent_as_a_form_is_reported_as_json() -> None:
    error = refused(None, b'{"url": "http://h/w",}')
    assert error.status == 400
    assert error.message.startswith("malformed JSON")


def test_an_unknown_content_type_that_is_not_json_is_still_415() -> None:
    error = refused("text/plain", b"hello")
    assert error.status == 415
    assert error.message == (
        'unsupported content type "text/plain"; send application/x-www-form-urlencoded or '
        "application/json"
    )


def test_a_bad_charset_is_refused_even_for_json_looking_bodies() -> None:
    assert refused("text/plain; charset=latin-1", TASK).status == 415


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"url": true}', "url must be a string, not true"),
        (b'{"url": null, "x": 1}', 'unknown field "x"'),
        (
            b'{"url": "http://h/", "countdown": false}',
            "countdown must be a number of seconds, not false",
        ),
        (b'{"url": "http://h/", "method": null, "id": 1.5}', "id must be a string, not 1.5"),
        (b'{"url": "http://h/", "params": {"k": {"n": 1}}}', 'params["k"] must be'),
    ],
)
def test_errors_speak_json(body: bytes, message: str) -> None:
    error = refused(JSON, body)
    assert message in error.message
    assert "True" not in error.message and "False" not in error.message
    assert "None" not in error.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"url": "http://h/", "countdown": 2592001}', "the limit is 30 days"),
        (
            b'{"url": "http://h/", "deadline": 3600}',
            "deadline is 3600 seconds; the limit is 30 minutes (1800 seconds)",
        ),
        (
            b'{"url": "http://h/", "body": "' + b"x" * (1024 * 1024 + 1) + b'"}',
            "task body is 1048577 bytes; the limit is 1 MiB",
        ),
        (
            b'{"url": "http://h/", "headers": {"X-A": "' + b"v" * 8192 + b'"}}',
            "the limit is 8 KiB",
        ),
    ],
)
def test_limits_are_stated_in_human_units(body: bytes, message: str) -> None:
    assert message in refused(JSON, body).message


def test_request_body_limit_in_mib() -> None:
    body = b"x" * (LIMITS.request_body_bytes_max + 1)
    error = refused(JSON, body)
    assert (error.status, error.message) == (
        413,
        "request body is 4194305 bytes; the limit is 4 MiB",
    )


def test_wording_helpers() -> None:
    assert [shown(True), shown(None), shown(2.5), shown("a'b")] == ["true", "null", "2.5", '"a\'b"']
    assert shown("x" * 100) == '"' + "x" * 60 + '"...'
    assert [size_text(4 << 20), size_text(8 << 10), size_text(1000)] == [
        "4 MiB", "8 KiB", "1000 bytes"
    ]  # fmt: skip
    assert [duration_text(30 * 86_400_000), duration_text(1_800_000), duration_text(1500)] == [
        "30 days", "30 minutes", "1.5 seconds"
    ]  # fmt: skip
