"""The queues file, each queue's settings, and how far a task may change them (docs/queues.md)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.enqueue_parse import parse_enqueue
from miyamoto.logic.limits import Limits
from miyamoto.logic.queue_config import (
    QueueConfig,
    QueueConfigError,
    QueuesConfig,
    effective_deadline_ms,
    effective_retry,
    parse_duration_ms,
    parse_queues_toml,
)
from miyamoto.logic.retry import RetryPolicy
from miyamoto.logic.task import RetryOverrides, TaskSpec

DOC = (Path(__file__).parent.parent / "docs" / "queues.md").read_text(encoding="utf-8")
LIMITS = Limits()
DAY_MS = 86_400_000


def parse(text: str, limits: Limits = LIMITS) -> QueuesConfig:
    return parse_queues_toml(text, limits)


def refused(text: str, limits: Limits = LIMITS) -> str:
    with pytest.raises(QueueConfigError) as caught:
        parse_queues_toml(text, limits)
    assert str(caught.value) == caught.value.message
    return caught.value.message


def doc_table(header: str) -> list[list[str]]:
    """The rows of the table in docs/queues.md under `header`, each as its cells' text."""
    lines = DOC.splitlines()
    start = lines.index(header) + 2  # past the header and the --- line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    assert rows, header
    return rows


def spans(cell: str) -> list[str]:
    """The `code` spans of a table cell."""
    return re.findall(r"`([^`]*)`", cell)


# --- the docs' examples ---------------------------------------------------------------------------


def test_every_toml_example_in_the_docs_is_accepted() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        parse(block)


def test_the_docs_example_file_means_what_the_docs_say() -> None:
    block = re.findall(r"```toml\n(.*?)```", DOC, flags=re.DOTALL)[0]
    config = parse(block)
    defaults_retry = RetryPolicy(
        retry_limit=10,
        age_limit_ms=2 * DAY_MS,
        min_backoff_ms=1000,
        max_backoff_ms=600_000,
        max_doublings=16,
    )
    assert config.default == QueueConfig(
        rate_per_s=50.0,
        bucket_size=10,
        max_concurrent=100,
        retry=defaults_retry,
        delivery_deadline_ms=30_000,
    )
    # emails: its own rate, burst and cap; everything else from [defaults]
    assert config.for_queue("emails") == QueueConfig(
        rate_per_s=10.0,
        bucket_size=1,
        max_concurrent=5,
        retry=defaults_retry,
        delivery_deadline_ms=30_000,
    )
    reports = config.for_queue("reports")
    assert reports.rate_per_s is None and reports.max_concurrent is None
    assert reports.delivery_deadline_ms == 600_000
    assert reports.retry.retry_limit == -1 and reports.retry.age_limit_ms == 2 * DAY_MS
    # "retries until two days have passed"
    assert reports.retry.may_retry(1_000_000, 0, 2 * DAY_MS - 1)
    assert not reports.retry.may_retry(0, 0, 2 * DAY_MS)
    assert config.for_queue("thumbnails") is config.default


def test_the_docs_durations_table() -> None:
    rows = doc_table("| value | means |")
    assert len(rows) == 7
    for value, meaning in rows:
        (raw,) = spans(value)
        ms = int(meaning.removesuffix(" ms"))
        assert parse_duration_ms(tomllib.loads(f"v = {raw}")["v"], "v") == ms, raw


def test_the_docs_task_override_examples() -> None:
    rows = doc_table("| the queue has | the task asks | the task gets |")
    assert len(rows) >= 15
    for queue_cell, asked_cell, gets_cell in rows:
        (asked,) = spans(asked_cell)
        queue = parse("[defaults]\n" + "\n".join(spans(queue_cell))).default
        body = json.dumps({"url": "http://example.com/"})[:-1] + ", " + asked + "}"
        spec = parse_enqueue("q", "application/json", body.encode(), 0, LIMITS)
        assert isinstance(spec, TaskSpec)
        policy = effective_retry(queue, spec.retry)
        got: dict[str, int] = {
            "retry_limit": policy.retry_limit,
            "age_limit": policy.age_limit_ms,
            "min_backoff": policy.min_backoff_ms,
            "max_backoff": policy.max_backoff_ms,
            "max_doublings": policy.max_doublings,
            "delivery_deadline": effective_deadline_ms(queue, spec.retry),
        }
        for line in spans(gets_cell):
            ((key, value),) = tomllib.loads(line).items()
            if key in ("retry_limit", "max_doublings"):
                expected = value
            else:
                expected = parse_duration_ms(value, key)
            assert got[key] == expected, (queue_cell, asked, line)


def test_the_docs_error_examples_are_the_errors_given() -> None:
    rows = doc_table("| the file | the error |")
    assert len(rows) >= 10
    for file_cell, error_cell in rows:
        ((text,), (message,)) = spans(file_cell), spans(error_cell)
        assert refused(text) == message


def test_the_docs_state_the_limits_that_the_code_has() -> None:
    assert LIMITS.queues_max == 1000 and "at most 1000 queues" in DOC
    assert 'From one a day (`"1/d"`) to 1000000 a second' in DOC
    assert LIMITS.queue_rate_per_s_max == 1_000_000
    assert LIMITS.queue_bucket_size_max == 1_000_000 == LIMITS.queue_concurrent_max
    assert LIMITS.delivery_deadline_ms_max == 30 * 60_000 and "1 ms to 30 minutes" in DOC
    assert LIMITS.schedule_ahead_ms_max == 30 * DAY_MS and "up to 30 days" in DOC
    assert QueueConfig().bucket_size == 5 and "| `bucket_size` | integer, 1 to 1000000 | 5 |" in DOC


def test_the_docs_describe_the_queue_api_and_its_cluster_split() -> None:
    assert "\n## Queue API\n" in DOC
    assert "PLACEHOLDER" not in DOC
    assert "`max(1, bucket_size // N)`" in DOC


# --- defaults and inheritance ---------------------------------------------------------------------


def test_an_empty_file_gives_the_built_in_defaults() -> None:
    config = parse("")
    assert config == QueuesConfig()
    assert config.default == QueueConfig(
        rate_per_s=None,
        bucket_size=5,
        max_concurrent=None,
        retry=RetryPolicy(),
        delivery_deadline_ms=30_000,
    )
    assert config.for_queue("anything") is config.default


def test_a_named_queue_inherits_each_key_it_does_not_set_from_defaults() -> None:
    config = parse(
        """
        [defaults]
        rate = 5
        retry_limit = 3
        min_backoff = 2
        [queue.a]
        retry_limit = 7
        [queue.b]
        """
    )
    a, b = config.for_queue("a"), config.for_queue("b")
    assert a.rate_per_s == 5 and a.retry.retry_limit == 7 and a.retry.min_backoff_ms == 2000
    assert b == config.default
    assert a.retry.max_backoff_ms == RetryPolicy().max_backoff_ms  # built-in, through [defaults]


def test_unlimited_lifts_a_rate_and_a_cap_set_in_defaults() -> None:
    config = parse(
        """
        defaults = {rate = 5, max_concurrent = 2}
        queue.free = {rate = "unlimited", max_concurrent = "unlimited"}
        """
    )
    assert config.default.rate_per_s == 5 and config.default.max_concurrent == 2
    free = config.for_queue("free")
    assert free.rate_per_s is None and free.max_concurrent is None


@pytest.mark.parametrize(
    ("text", "per_s"),
    [("10", 10.0), ("0.5", 0.5), ('"10/s"', 10.0), ('"30/m"', 0.5), ('"36/h"', 0.01),
     ('"1/d"', 1 / 86_400), ('"1.5/s"', 1.5), ("1000000", 1e6)],
)  # fmt: skip
def test_rates(text: str, per_s: float) -> None:
    assert parse(f"defaults.rate = {text}").default.rate_per_s == pytest.approx(per_s, rel=1e-12)


def test_queues_are_kept_sorted_by_name_and_the_config_is_hashable() -> None:
    config = parse("queue.b.rate = 1\nqueue.a.rate = 2\nqueue.C.rate = 3")
    assert [name for name, _ in config.queues] == ["C", "a", "b"]
    assert hash(config) == hash(parse("queue.a.rate = 2\nqueue.C.rate = 3\nqueue.b.rate = 1"))
    assert config.for_queue("a").rate_per_s == 2 and config.for_queue("c") is config.default
    built = QueuesConfig(queues=(("z", QueueConfig()), ("y", QueueConfig(bucket_size=2))))
    assert [name for name, _ in built.queues] == ["y", "z"]
    assert built.for_queue("y").bucket_size == 2


def test_durations_round_to_the_millisecond() -> None:
    assert parse('defaults.min_backoff = "0.0004s"').default.retry.min_backoff_ms == 0
    assert parse("defaults.min_backoff = 0.0016").default.retry.min_backoff_ms == 2
    assert parse('defaults.age_limit = "1.5d"').default.retry.age_limit_ms == 36 * 3_600_000


# --- every mistake is refused, saying where ------------------------------------------------------


def test_toml_syntax_errors_say_where() -> None:
    message = refused("[defaults]\nrate = = 5\n")
    assert message.startswith("not valid TOML: ") and "line 2" in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("defaults = 5", "defaults must be a [defaults] table of settings, not 5"),
        ("queue = 5", "queue must be [queue.NAME] tables, not 5"),
        ("[[queue]]\nrate = 5", "queue must be [queue.NAME] tables, not an array"),
        ("[queue]\nrate = 5",
         "queue.rate must be a [queue.rate] table of settings, not 5"),
        ("[queue.a.retry]\nlimit = 5",
         '[queue.a] unknown key "retry"; known keys: rate, bucket_size, max_concurrent, '
         "retry_limit, age_limit, min_backoff, max_backoff, max_doublings, delivery_deadline"),
        ('queue._node.rate = 1',
         "[queue._node]: queue name must be of [A-Za-z0-9_-], not starting with _: \"_node\""),
        ('queue."".rate = 1', '[queue.""]: queue name must be 1 to 100 characters, not 0'),
        ("defaults.rate = true", '[defaults] rate must be a number of tasks per second, a '
         'string such as "10/s", "5/m", "100/h" or "1/d", or "unlimited"; not true'),
        ('defaults.rate = "10/x"', '[defaults] rate must be a number of tasks per second, a '
         'string such as "10/s", "5/m", "100/h" or "1/d", or "unlimited"; not "10/x"'),
        ("defaults.rate = nan", "[defaults] rate must be more than 0, not nan (to stop a queue, "
         "pause it)"),
        ("defaults.rate = -5", "[defaults] rate must be more than 0, not -5 (to stop a queue, "
         "pause it)"),
        ("defaults.rate = inf",
         "[defaults] rate is over 1000000 tasks per second; the limit is 1000000"),
        ("defaults.rate = 99999999999999999999999999999999999999999999",
         "[defaults] rate is over 1000000 tasks per second; the limit is 1000000"),
        ('defaults.rate = "2/d"', None),
        ('defaults.rate = "0.5/d"',
         '[defaults] rate is below one task a day ("1/d"), the slowest rate'),
        ("defaults.rate = 0.00001",
         '[defaults] rate is below one task a day ("1/d"), the slowest rate'),
        ("defaults.bucket_size = 1.0", "[defaults] bucket_size must be an integer, not 1.0"),
        ("defaults.bucket_size = 1_000_001",
         "[defaults] bucket_size must be from 1 to 1000000, not 1000001"),
        ('defaults.max_concurrent = "none"',
         '[defaults] max_concurrent must be an integer or "unlimited", not "none"'),
        ("defaults.max_concurrent = 0",
         "[defaults] max_concurrent must be from 1 to 1000000, not 0"),
        ("defaults.retry_limit = -2",
         "[defaults] retry_limit must be from -1 to 9223372036854775807, not -2"),
        ("defaults.retry_limit = false", "[defaults] retry_limit must be an integer, not false"),
        ('defaults.retry_limit = "5"', '[defaults] retry_limit must be an integer, not "5"'),
        ("defaults.max_doublings = 64", "[defaults] max_doublings must be from 0 to 63, not 64"),
        ("defaults.max_doublings = -1", "[defaults] max_doublings must be from 0 to 63, not -1"),
        ("defaults.age_limit = -5", "[defaults] age_limit must be 0 or more, not -5"),
        ('defaults.age_limit = "-5s"', '[defaults] age_limit must be 0 or more, not "-5s"'),
        ("defaults.age_limit = nan",
         "[defaults] age_limit must be a finite number of seconds, not nan"),
        ("defaults.age_limit = -inf",
         "[defaults] age_limit must be a finite number of seconds, not -inf"),
        ('defaults.age_limit = "5 s"', '[defaults] age_limit must be a number of seconds or a '
         'string such as "500ms", "30s", "5m", "2h" or "2d", not "5 s"'),
        ('defaults.age_limit = "5"', '[defaults] age_limit must be a number of seconds or a '
         'string such as "500ms", "30s", "5m", "2h" or "2d", not "5"'),
        ("defaults.age_limit = true",
         '[defaults] age_limit must be a number of seconds or a string such as "30s", not true'),
        ("defaults.age_limit = 1979-05-27", "[defaults] age_limit must be a number of seconds or "
         'a string such as "30s", not a date or time (1979-05-27)'),
        ("defaults.age_limit = [1]",
         '[defaults] age_limit must be a number of seconds or a string such as "30s", '
         "not an array"),
        ('defaults.age_limit = "' + "9" * 5000 + 'd"',
         "[defaults] age_limit is over 2**63 - 1 ms; the limit is 2**63 - 1 ms"),
        ('defaults.max_backoff = "31d"',
         "[defaults] max_backoff is over 30 days; the limit is 30 days (as far ahead as a task "
         "may be scheduled)"),
        ('defaults.min_backoff = "31d"',
         "[defaults] min_backoff is over 30 days; the limit is 30 days (as far ahead as a task "
         "may be scheduled)"),
        ('defaults.min_backoff = "1m"\ndefaults.max_backoff = "10s"',
         "[defaults] min_backoff (60 seconds) is more than max_backoff (10 seconds)"),
        ('defaults.max_backoff = "10s"\nqueue.q.min_backoff = 10.5',
         "[queue.q] min_backoff (10.5 seconds) is more than max_backoff (10 seconds, from "
         "[defaults])"),
        ('defaults.min_backoff = "1m"\nqueue.q.max_backoff = "10s"',
         "[queue.q] min_backoff (60 seconds, from [defaults]) is more than max_backoff "
         "(10 seconds)"),
        ("defaults.delivery_deadline = 0", "[defaults] delivery_deadline must be at least 1 ms"),
        ('defaults.delivery_deadline = "0.4ms"',
         "[defaults] delivery_deadline must be at least 1 ms"),
        ("defaults.delivery_deadline = 1800.001",
         "[defaults] delivery_deadline is over 1800 seconds; the limit is 1800 seconds"),
    ],
)  # fmt: skip
def test_mistakes_are_refused_naming_the_table_and_key(text: str, message: str | None) -> None:
    if message is None:  # a near miss that must be accepted, so the message above is no accident
        parse(text)
    else:
        assert refused(text) == message


def test_a_quoted_queue_name_is_shown_quoted_and_long_ones_shortened() -> None:
    long_name = "a" * 101
    message = refused(f"queue.{long_name}.rate = 1")
    assert message == f"[queue.{'a' * 60}...]: queue name must be 1 to 100 characters, not 101"
    assert refused('queue."é".rate = 1').startswith('[queue."\\u00e9"]: queue name must be')


def test_too_many_queues_are_refused_stating_the_limit() -> None:
    limits = Limits(queues_max=3)
    three = "\n".join(f"queue.q{i}.rate = 1" for i in range(3))
    assert len(parse(three, limits).queues) == 3
    assert refused(three + "\nqueue.q3.rate = 1", limits) == (
        "the file names 4 queues; the limit is 3"
    )
    assert len(parse("\n".join(f"queue.q{i}.rate = 1" for i in range(1000))).queues) == 1000


def test_the_limits_passed_in_are_the_ones_enforced() -> None:
    limits = Limits(delivery_deadline_ms_max=60_000, queue_rate_per_s_max=100.0)
    assert refused('defaults.delivery_deadline = "61s"', limits) == (
        "[defaults] delivery_deadline is over 60 seconds; the limit is 60 seconds"
    )
    assert refused("defaults.rate = 101", limits) == (
        "[defaults] rate is over 100 tasks per second; the limit is 100"
    )


# --- a task's own settings, within its queue's ----------------------------------------------------

limits_strategy = st.one_of(st.just(None), st.integers(-3, 50))
durations_strategy = st.one_of(st.just(None), st.integers(-5, 10**7))


@st.composite
def queue_configs(draw: st.DrawFn) -> QueueConfig:
    low = draw(st.integers(0, 10**6))
    return QueueConfig(
        retry=RetryPolicy(
            retry_limit=draw(st.integers(-1, 20)),
            age_limit_ms=draw(st.sampled_from([0, 1, 1000, 60_000, 10**7])),
            min_backoff_ms=low,
            max_backoff_ms=low + draw(st.integers(0, 10**6)),
            max_doublings=draw(st.integers(0, 63)),
        ),
        delivery_deadline_ms=draw(st.integers(1, 1_800_000)),
    )


overrides_strategy = st.builds(
    RetryOverrides,
    retry_limit=limits_strategy,
    age_limit_ms=durations_strategy,
    min_backoff_ms=durations_strategy,
    max_backoff_ms=durations_strategy,
    max_doublings=st.one_of(st.just(None), st.integers(-2, 100)),
    deadline_ms=durations_strategy,
)


@given(queue_configs(), overrides_strategy, st.integers(0, 40), st.integers(0, 2 * 10**7))
def test_a_task_never_gets_more_than_its_queue_allows(
    queue: QueueConfig, overrides: RetryOverrides, retries_done: int, age_ms: int
) -> None:
    policy = effective_retry(queue, overrides)  # constructing it checks RetryPolicy's asserts
    if policy.may_retry(retries_done, 0, age_ms):
        assert queue.retry.may_retry(retries_done, 0, age_ms)
    for retry_number in (0, 1, 5, 20, 70):
        wait_ms = policy.backoff_ms(retry_number)
        assert queue.retry.min_backoff_ms <= wait_ms <= queue.retry.max_backoff_ms
    assert policy.max_doublings <= queue.retry.max_doublings
    assert 1 <= effective_deadline_ms(queue, overrides) <= queue.delivery_deadline_ms


@given(queue_configs(), st.data())
def test_a_task_that_asks_for_less_gets_exactly_what_it_asks(
    queue: QueueConfig, data: st.DataObject
) -> None:
    q = queue.retry
    # Only a limit the queue's own combination allows (see effective_retry's docstring).
    count_allowed = q.retry_limit != -1 or q.age_limit_ms == 0
    age_allowed = q.age_limit_ms != 0 or q.retry_limit == -1
    top_count = q.retry_limit if q.retry_limit != -1 else 100
    top_age = q.age_limit_ms if q.age_limit_ms != 0 else 10**8
    retry_limit = data.draw(st.integers(0, top_count)) if count_allowed else None
    age_limit_ms = data.draw(st.integers(1, top_age)) if age_allowed else None
    low = data.draw(st.integers(q.min_backoff_ms, q.max_backoff_ms))
    high = data.draw(st.integers(low, q.max_backoff_ms))
    doublings = data.draw(st.integers(0, q.max_doublings))
    deadline_ms = data.draw(st.integers(1, queue.delivery_deadline_ms))
    overrides = RetryOverrides(
        retry_limit=retry_limit,
        age_limit_ms=age_limit_ms,
        min_backoff_ms=low,
        max_backoff_ms=high,
        max_doublings=doublings,
        deadline_ms=deadline_ms,
    )
    policy = effective_retry(queue, overrides)
    assert policy == RetryPolicy(
        retry_limit=q.retry_limit if retry_limit is None else retry_limit,
        age_limit_ms=q.age_limit_ms if age_limit_ms is None else age_limit_ms,
        min_backoff_ms=low,
        max_backoff_ms=high,
        max_doublings=doublings,
    )
    assert effective_deadline_ms(queue, overrides) == deadline_ms


def test_a_task_without_settings_gets_its_queues() -> None:
    queue = QueueConfig(retry=RetryPolicy(retry_limit=3), delivery_deadline_ms=5000)
    assert effective_retry(queue, None) is queue.retry
    assert effective_retry(queue, RetryOverrides()) == queue.retry
    assert effective_deadline_ms(queue, None) == 5000
    assert effective_deadline_ms(queue, RetryOverrides(retry_limit=1)) == 5000


def test_an_age_limit_cannot_extend_retries_on_a_queue_that_counts_them() -> None:
    # With both limits a task is retried until both are passed, so honouring the task's age
    # limit here would retry it for an hour after its queue's 3 retries.
    queue = QueueConfig(retry=RetryPolicy(retry_limit=3, age_limit_ms=0))
    policy = effective_retry(queue, RetryOverrides(age_limit_ms=3_600_000))
    assert not policy.may_retry(3, 0, 1000)
    assert policy == queue.retry
