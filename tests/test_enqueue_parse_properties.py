"""Properties of enqueue parsing: any input gives a valid task or a ClientError, nothing else.

The strategies build near-valid requests (real field names with good and bad values, small
limits) so that the runs reach the deep checks, not only "malformed JSON".
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.enqueue_parse import METHODS, parse_enqueue
from miyamoto.logic.errors import ClientError
from miyamoto.logic.limits import Limits
from miyamoto.logic.task import TaskSpec
from miyamoto.logic.urls import parse_webhook_url

NOW = 1_700_000_000_000
SMALL = Limits(
    request_body_bytes_max=2000,
    task_body_bytes_max=40,
    url_chars_max=40,
    task_id_chars_max=8,
    task_headers_count_max=2,
    task_header_bytes_max=16,
    params_count_max=3,
    schedule_ahead_ms_max=100_000,
    batch_tasks_max=3,
    delivery_deadline_ms_max=5_000,
)
LIMITS = st.sampled_from([Limits(), SMALL])
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "Application/JSON; charset=utf-8",
            "application/json; charset=utf-16",
            "text/plain",
            "",
            ";",
            "application/json;charset",
        ]
    ),
    st.text(max_size=30),
)


def mostly(
    valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Three times in four a valid value, so that a task with several fields often passes."""
    return st.sampled_from((0, 1, 2, 3)).flatmap(lambda n: invalid if n == 3 else valid)


SCALARS = st.one_of(st.text(max_size=10), st.integers(), st.floats(), st.booleans(), st.none())
URLS = mostly(
    st.sampled_from(
        ["http://h/", "https://example.com:8443/a?b=c#d", "http://[::1]:9/", "HTTP://H/\u00e9"]
    ),
    st.one_of(
        st.sampled_from(
            ["ftp://h/", "http://u@h/", "http://h:0/", "http://h/" + "x" * 40, "http://h/ "]
        ),
        st.text(max_size=20).map(lambda s: "http://" + s),
        SCALARS,
    ),
)
SECONDS = st.one_of(
    st.integers(min_value=0, max_value=200),
    st.floats(min_value=0, max_value=200),
    st.sampled_from(["1.5", ".5", "1e2", "0", str(NOW / 1000)]),
)
NUMBERS = mostly(
    SECONDS,
    st.one_of(
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["-1", "nan", "inf", "1e999", "", "x", "9" * 30]),
        st.booleans(),
        st.lists(st.integers(), max_size=1),
    ),
)
PARAM_VALUES = mostly(
    st.one_of(st.text(max_size=10), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.booleans(), st.lists(st.text(max_size=4), max_size=3)),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=2), SCALARS, max_size=1),
              st.lists(st.lists(st.integers(), max_size=1), min_size=1, max_size=1)),
)  # fmt: skip
HEADER_NAMES = mostly(
    st.sampled_from(["X-A", "Content-Type", "authorization", "X-Long-Header-Name"]),
    st.one_of(
        st.sampled_from(["Host", "X-Task-Id", "Connection", "Bad Name", ""]), st.text(max_size=8)
    ),
)
HEADER_VALUES = mostly(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.one_of(st.text(max_size=20), SCALARS),
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "method": mostly(st.sampled_from(["get", "POST", "Delete", "head", "put"]),
                     st.one_of(st.sampled_from(["FETCH", ""]), SCALARS)),
    "id": mostly(st.sampled_from(["a", "order-1", "a_B-9"]),
                 st.one_of(st.sampled_from(["a" * 9, "a.b", ""]), SCALARS)),
    "retry_limit": NUMBERS,
    "age_limit": NUMBERS,
    "min_backoff": NUMBERS,
    "max_backoff": NUMBERS,
    "max_doublings": NUMBERS,
    "deadline": NUMBERS,
    "headers": mostly(st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=3), SCALARS),
}  # fmt: skip
PARAMS = mostly(st.dictionaries(st.text(max_size=5), PARAM_VALUES, max_size=4), SCALARS)
BODIES = mostly(st.text(max_size=50), SCALARS)
# params or body, countdown or eta: both at once only now and then, as that is always refused
PAYLOADS = mostly(
    st.one_of(
        st.just({}),
        st.fixed_dictionaries({"params": PARAMS}),
        st.fixed_dictionaries({"body": BODIES}),
    ),
    st.fixed_dictionaries({"params": PARAMS, "body": BODIES}),
)
WHENS = mostly(
    st.one_of(
        st.just({}),
        st.fixed_dictionaries({"countdown": NUMBERS}),
        st.fixed_dictionaries({"eta": NUMBERS}),
    ),
    st.fixed_dictionaries({"countdown": NUMBERS, "eta": NUMBERS}),
)
TASK_OBJECTS = st.tuples(
    st.fixed_dictionaries({"url": URLS}, optional=FIELD_VALUES), PAYLOADS, WHENS
).map(lambda parts: {**parts[0], **parts[1], **parts[2]})
TYPOS = st.fixed_dictionaries({}, optional={"countdwn": SCALARS, "url": SCALARS})
JSON_DOCUMENTS = mostly(
    st.one_of(TASK_OBJECTS, st.lists(TASK_OBJECTS, min_size=1, max_size=4)),
    st.one_of(
        st.tuples(TASK_OBJECTS, TYPOS).map(lambda pair: {**pair[0], **pair[1]}),
        st.lists(st.one_of(TASK_OBJECTS, SCALARS), max_size=4),
        SCALARS,
    ),
)


def as_form_pairs(task: dict[str, Any]) -> list[tuple[str, str]]:
    """The form version of a near-valid JSON task (numbers and others as JSON writes them)."""
    pairs = [
        (f"task.{key}", value if isinstance(value, str) else json.dumps(value))
        for key, value in task.items()
        if key not in ("params", "body", "headers")
    ]
    params = task.get("params")
    if isinstance(params, dict):
        for key, value in params.items():
            for element in value if isinstance(value, list) else [value]:
                pairs.append((key, element if isinstance(element, str) else json.dumps(element)))
    return pairs


JUNK_FORM_PAIRS = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["task.", "task.url", "task.body", "task.countdwn"]),
                  st.text(max_size=6)),
        st.text(max_size=10),
    ),
    max_size=2,
)  # fmt: skip
FORM_PAIRS = st.tuples(TASK_OBJECTS.map(as_form_pairs), mostly(st.just([]), JUNK_FORM_PAIRS)).map(
    lambda drawn: drawn[0] + drawn[1]
)


FRAGMENTS = st.lists(
    st.sampled_from(
        [b"task.url=", b"http://h/", b"&", b"=", b"%", b"%ff", b"%C3%A9", b"\xc3", b"{", b"}",
         b"[", b"]", b'"url"', b":", b",", b"task.countdown=", b"1e5", b"NaN", b'"', b"\\ud800"]
    ),
    max_size=20,
).map(b"".join)  # fmt: skip


def check(content_type: str | None, body: bytes, limits: Limits) -> None:
    """Parse; a result must be a valid task (or a list of tasks and errors) within the limits."""
    try:
        result = parse_enqueue("q", content_type, body, NOW, limits)
    except ClientError as error:
        check_error(error)
        return
    if isinstance(result, TaskSpec):
        check_spec(result, limits)
        return
    assert 1 <= len(result) <= limits.batch_tasks_max
    for item in result:
        if isinstance(item, TaskSpec):
            check_spec(item, limits)
        else:
            check_error(item)


def check_error(error: ClientError) -> None:
    assert error.status in (400, 413, 415, 431)
    assert 0 < len(error.message) < 600  # never echoes a huge input back


def check_spec(spec: TaskSpec, limits: Limits) -> None:
    assert spec.queue == "q"
    assert spec.method in METHODS
    assert len(spec.url) <= limits.url_chars_max
    assert parse_webhook_url(spec.url, limits).url == spec.url
    assert len(spec.body) <= limits.task_body_bytes_max
    assert 0 <= spec.eta_ms <= NOW + limits.schedule_ahead_ms_max
    assert len(spec.headers) <= limits.task_headers_count_max + 1
    names = [name for name, _ in spec.headers]
    assert len(set(names)) == len(names)
    assert all(name == name.lower() and not name.startswith("x-task-") for name in names)
    assert all(
        value.isascii() and "\r" not in value and "\n" not in value for _, value in spec.headers
    )
    if spec.body:
        assert "content-type" in names
    if spec.method in ("GET", "HEAD"):
        assert spec.body == b""
    if spec.client_id is not None:
        assert 1 <= len(spec.client_id) <= limits.task_id_chars_max
    if spec.retry is not None and spec.retry.deadline_ms is not None:
        assert 1 <= spec.retry.deadline_ms <= limits.delivery_deadline_ms_max


@given(
    content_type=CONTENT_TYPES, body=st.one_of(st.binary(max_size=200), FRAGMENTS), limits=LIMITS
)
def test_arbitrary_bytes_only_ever_raise_client_error(
    content_type: str | None, body: bytes, limits: Limits
) -> None:
    check(content_type, body, limits)


@given(document=JSON_DOCUMENTS, limits=LIMITS)
def test_near_valid_json_gives_valid_tasks_or_client_errors(document: Any, limits: Limits) -> None:
    check("application/json", json.dumps(document).encode(), limits)


@given(pairs=FORM_PAIRS, limits=LIMITS)
def test_near_valid_forms_give_valid_tasks_or_client_errors(
    pairs: list[tuple[str, str]], limits: Limits
) -> None:
    check("application/x-www-form-urlencoded", urlencode(pairs).encode(), limits)


PARAM_NAMES = st.text(max_size=8).filter(lambda name: not name.startswith("task."))


@given(pairs=st.lists(st.tuples(PARAM_NAMES, st.text(max_size=8)), min_size=1, max_size=20))
def test_form_params_are_sent_all_in_order_with_repeats(pairs: list[tuple[str, str]]) -> None:
    spec = parse_enqueue(
        "q", None, urlencode([("task.url", "http://h/"), *pairs]).encode(), NOW, Limits()
    )
    assert isinstance(spec, TaskSpec)
    assert parse_qsl(spec.body.decode(), keep_blank_values=True) == pairs
