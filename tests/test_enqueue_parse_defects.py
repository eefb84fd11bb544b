"""A fully valid task is accepted as given, in JSON and as a form alike; one defect in any field
is refused with a message naming that field."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.enqueue_parse import METHODS, parse_enqueue
from miyamoto.logic.errors import ClientError
from miyamoto.logic.limits import Limits
from miyamoto.logic.task import RetryOverrides, TaskSpec
from miyamoto.logic.urls import parse_webhook_url, with_query

NOW = 1_700_000_000_000
LIMITS = Limits()
FORM = "application/x-www-form-urlencoded"


def seconds(low: float, high: float) -> st.SearchStrategy[Any]:
    """A number of seconds as a JSON number or a numeric string, both accepted."""
    number = st.one_of(st.integers(int(low) + 1, int(high)), st.floats(low, high))
    return st.one_of(number, number.map(str))


TOKENS = st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True)
PARAM_SCALARS = st.one_of(
    st.text(max_size=8),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "method": st.sampled_from(sorted(METHODS)).flatmap(
        lambda method: st.sampled_from([method, method.lower(), method.title()])
    ),
    "id": st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True),
    "retry_limit": st.integers(-1, 100).flatmap(lambda n: st.sampled_from([n, str(n)])),
    "age_limit": seconds(0, 1e6),
    "min_backoff": seconds(0, 10),
    "max_backoff": seconds(10, 1000),
    "max_doublings": st.integers(0, 20),
    "deadline": seconds(0.001, 1800),
    "headers": st.dictionaries(
        TOKENS, st.from_regex(r"[!-~]([ -~]{0,20}[!-~])?", fullmatch=True), max_size=3
    ),
}
VALID_TASKS = st.tuples(
    st.fixed_dictionaries(
        {
            "url": st.sampled_from(
                ["http://h/", "HTTPS://Ex.com:8443/p?x=1#f", "http://[::1]:9/\u00e9"]
            )
        },
        optional=VALID_FIELDS,
    ),
    st.one_of(
        st.just({}),
        st.fixed_dictionaries({"countdown": seconds(0, 30 * 86400)}),
        st.fixed_dictionaries({"eta": seconds(0, NOW / 1000 + 30 * 86400)}),
    ),
    st.one_of(
        st.just({}),
        st.fixed_dictionaries({"params": st.dictionaries(st.text(max_size=5), PARAM_SCALARS)}),
        st.fixed_dictionaries({"body": st.text(max_size=30)}),
    ),
).map(lambda parts: {**parts[0], **parts[1], **parts[2]})


def is_valid(task: dict[str, Any]) -> bool:
    """The few combinations the field strategies alone cannot rule out."""
    bodyless = str(task.get("method", "")).upper() in ("GET", "HEAD")
    return not (bodyless and "body" in task)


# Each field with values it must refuse; the message must say the field's name.
DEFECTS: dict[str, list[Any]] = {
    "url": ["ftp://h/", "http://u@h/", "http:///", "h/p", "http://h/ x", 5, None],
    "method": ["FETCH", "", "GET ", 1],
    "countdown": [-1, "-0.5", "x", True, "nan", 1e12, [1]],
    "eta": [-1, "1e20", False, "1,5"],
    "id": ["a.b", "", 5, "a" * 501],
    "retry_limit": [-2, 1.5, "1.5", True, 2**64],
    "age_limit": [-1, "x", 1e300],
    "min_backoff": [-0.1, "", "1 0"],
    "max_backoff": [-5, "inf", 1e300],
    "max_doublings": [-1, 0.5, "2.0"],
    "deadline": [0, -1, 1801, "x", 0.0001],
    "params": [5, "a=1", {"a": None}, {"a": {"b": 1}}, {"a": [[1]]}],
    "body": [5, True, ["x"]],
    "headers": [5, {"Host": "h"}, {"X-A": "a\r\nb"}, {"Bad Name": "x"}, {"X-Task-Id": "1"}],
    "countdwn": [1],
}
DEFECTIVE = st.sampled_from(sorted(DEFECTS)).flatmap(
    lambda field: st.tuples(st.just(field), st.sampled_from(DEFECTS[field]))
)


def expected_spec(task: dict[str, Any]) -> TaskSpec:
    """What the API documents for a valid task, computed independently of the parser."""
    method = task.get("method", "POST").upper()
    url = parse_webhook_url(task["url"], LIMITS)
    pairs = [(key, value_text(value)) for key, value in task.get("params", {}).items()]
    body, content_type = b"", None
    if pairs and method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        url = with_query(url, pairs, LIMITS)
    elif pairs:
        body, content_type = urlencode(pairs).encode(), FORM
    elif "body" in task:
        body, content_type = task["body"].encode(), "text/plain; charset=utf-8"
    headers = tuple((name.lower(), value) for name, value in task.get("headers", {}).items())
    if body and content_type is not None:
        headers = (("content-type", content_type), *headers)
    if "countdown" in task:
        eta_ms = NOW + round(float(task["countdown"]) * 1000)
    elif "eta" in task:
        eta_ms = round(float(task["eta"]) * 1000)
    else:
        eta_ms = NOW
    retry = None
    if any(name in task for name in ("retry_limit", "age_limit", "min_backoff", "max_backoff",
                                     "max_doublings", "deadline")):  # fmt: skip
        retry = RetryOverrides(
            retry_limit=_maybe(task, "retry_limit", int),
            age_limit_ms=_maybe(task, "age_limit", lambda s: round(float(s) * 1000)),
            min_backoff_ms=_maybe(task, "min_backoff", lambda s: round(float(s) * 1000)),
            max_backoff_ms=_maybe(task, "max_backoff", lambda s: round(float(s) * 1000)),
            max_doublings=_maybe(task, "max_doublings", int),
            deadline_ms=_maybe(task, "deadline", lambda s: round(float(s) * 1000)),
        )
    return TaskSpec(
        queue="q", url=url.url, method=method, client_id=task.get("id"), eta_ms=eta_ms,
        headers=headers, body=body, retry=retry,
    )  # fmt: skip


def value_text(value: Any) -> str:
    """A value as a form carries it: JSON's spelling for anything but a string."""
    return value if isinstance(value, str) else json.dumps(value)


def as_form_pairs(task: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = [(f"task.{key}", value_text(value)) for key, value in task.items() if key != "params"]
    return pairs + [(key, value_text(value)) for key, value in task.get("params", {}).items()]


def _maybe(task: dict[str, Any], name: str, convert: Any) -> Any:
    return convert(task[name]) if name in task else None


@given(task=VALID_TASKS)
def test_a_valid_json_task_is_accepted_as_documented(task: dict[str, Any]) -> None:
    if not is_valid(task):
        return
    spec = parse_enqueue("q", "application/json", json.dumps(task).encode(), NOW, LIMITS)
    assert spec == expected_spec(task)


@given(task=VALID_TASKS)
def test_a_valid_form_task_is_the_same_task_as_in_json(task: dict[str, Any]) -> None:
    task = {key: item for key, item in task.items() if key not in ("body", "headers")}
    from_form = parse_enqueue("q", FORM, urlencode(as_form_pairs(task)).encode(), NOW, LIMITS)
    from_json = parse_enqueue("q", "application/json", json.dumps(task).encode(), NOW, LIMITS)
    assert from_form == from_json == expected_spec(task)


@given(task=VALID_TASKS, defect=DEFECTIVE)
def test_one_defect_in_json_is_refused_naming_the_field(
    task: dict[str, Any], defect: tuple[str, Any]
) -> None:
    if not is_valid(task):
        return
    field, value = defect
    try:
        parse_enqueue(
            "q", "application/json", json.dumps({**task, field: value}).encode(), NOW, LIMITS
        )
    except ClientError as error:
        assert field.removesuffix("s") in error.message, (field, value, error.message)
    else:
        raise AssertionError(f"{field}={value!r} was accepted")


@given(task=VALID_TASKS, defect=DEFECTIVE)
def test_one_defect_in_a_form_is_refused_naming_the_form_field(
    task: dict[str, Any], defect: tuple[str, Any]
) -> None:
    field, value = defect
    if field in ("params", "body", "headers"):  # a form cannot say these
        return
    if (field, value) == ("id", 5):  # as form text, "5" is a good id
        return
    task = {key: item for key, item in task.items() if key not in ("body", "headers")}
    body = urlencode(as_form_pairs({**task, field: value})).encode()
    try:
        parse_enqueue("q", FORM, body, NOW, LIMITS)
    except ClientError as error:
        assert f"task.{field}" in error.message, (field, value, error.message)
    else:
        raise AssertionError(f"task.{field}={value!r} was accepted")
