"""The token bucket behind a queue's `rate` and `bucket_size`."""

from __future__ import annotations

import copy
import itertools

from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.token_bucket import TokenBucket

# Rates the bucket holds exactly as fractions, and any others.
rates = st.one_of(
    st.sampled_from([0.1, 1 / 3, 0.7, 1.0, 2.5, 10.0, 600.0, 1000.0, 1 / 86_400, 4000.0]),
    st.floats(0.01, 5000.0),
)
bucket_sizes = st.integers(1, 20)
# The bucket's rate is within 10^-9 (relative) of the float given: over these runs (< 10^6 ms,
# < 5000/s) that is far less than this many tokens.
SLACK_TOKENS = 1e-3


def drain(bucket: TokenBucket, now_ms: int) -> int:
    taken = 0
    while bucket.try_take(now_ms):
        taken += 1
    return taken


def test_rate_10_bucket_1_spreads_50_due_tasks_over_4_9_seconds() -> None:
    bucket = TokenBucket(rate_per_s=10, bucket_size=1, now_ms=0)
    started: list[int] = []
    now_ms = 0
    while len(started) < 50:
        now_ms = bucket.next_token_ms(now_ms)
        assert bucket.try_take(now_ms)
        started.append(now_ms)
    assert started == list(range(0, 5000, 100))


def test_rate_10_bucket_10_sends_10_at_once_and_40_over_the_next_4_seconds() -> None:
    bucket = TokenBucket(rate_per_s=10, bucket_size=10, now_ms=0)
    started: list[int] = []
    now_ms = 0
    while len(started) < 50:
        now_ms = bucket.next_token_ms(now_ms)
        assert bucket.try_take(now_ms)
        started.append(now_ms)
    assert started == [0] * 10 + list(range(100, 4001, 100))


def test_a_full_bucket_bursts_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, bucket_size=10, now_ms=0)
    assert drain(bucket, 0) == 10
    assert bucket.next_token_ms(0) == 100
    assert drain(bucket, 4000) == 10  # capped at bucket_size, not 40
    assert drain(bucket, 4099) == 0
    assert drain(bucket, 4100) == 1


def test_tokens_do_not_pile_up_past_the_bucket_size() -> None:
    bucket = TokenBucket(rate_per_s=1000, bucket_size=3, now_ms=0)
    assert bucket.available(10**12) == 3
    bucket = TokenBucket(rate_per_s=0.5, bucket_size=1, now_ms=0)
    assert bucket.try_take(0)
    assert bucket.available(60_000) == 1
    assert bucket.try_take(60_000)
    assert bucket.next_token_ms(60_000) == 62_000  # an idle bucket of 1 gives no burst


def test_a_bucket_of_one_polled_each_millisecond_still_gives_600_a_second() -> None:
    # A token every 1.67 ms: the millisecond clock is late for most of them, and the bucket
    # forgives it instead of dropping what came in meanwhile.
    bucket = TokenBucket(rate_per_s=600, bucket_size=1, now_ms=0)
    assert sum(drain(bucket, now_ms) for now_ms in range(1, 10_001)) == 6000


def test_a_slow_rate_waits_exactly_its_interval() -> None:
    bucket = TokenBucket(rate_per_s=1 / 86_400, bucket_size=1, now_ms=0)
    assert bucket.try_take(0)
    assert bucket.next_token_ms(0) == 86_400_000
    assert not bucket.try_take(86_399_999)
    assert bucket.try_take(86_400_000)


def test_set_rate_keeps_what_was_earned_at_the_old_rate() -> None:
    bucket = TokenBucket(rate_per_s=1, bucket_size=1, now_ms=0)
    assert bucket.try_take(0)
    bucket.set_rate(2, 500)  # half a token earned at 1/s; the other half at 2/s takes 250 ms
    assert bucket.rate_per_s == 2 and bucket.bucket_size == 1
    assert bucket.next_token_ms(500) == 750
    assert not bucket.try_take(749)
    assert bucket.try_take(750)


def test_a_clock_set_back_neither_adds_tokens_nor_stalls_the_bucket() -> None:
    bucket = TokenBucket(rate_per_s=1, bucket_size=2, now_ms=0)
    assert drain(bucket, 3_600_000) == 2
    # The clock is set back an hour: no token appears, and the next comes a second later by
    # the new clock, not an hour and a second later.
    assert bucket.available(0) == 0
    assert bucket.next_token_ms(0) == 1000
    assert not bucket.try_take(999)
    assert bucket.try_take(1000)
    # Coming back to the old reading credits only the time that really passed.
    assert bucket.available(3_600_000) == 2


def test_no_drift_over_a_long_run_of_a_rate_floats_cannot_hold() -> None:
    bucket = TokenBucket(rate_per_s=0.7, bucket_size=1, now_ms=0)
    taken, now_ms = 0, 0
    end_ms = 100_000_000  # 28 hours: 70000 tokens after the first
    while (now_ms := bucket.next_token_ms(now_ms)) <= end_ms:
        assert bucket.try_take(now_ms)
        taken += 1
    assert taken == 1 + 70_000


@given(rates, bucket_sizes, st.integers(1, 3000), st.integers(0, 200))
def test_refilling_in_one_step_or_many_gives_the_same_tokens(
    rate: float, size: int, steps: int, step_ms: int
) -> None:
    one, many = (TokenBucket(rate_per_s=rate, bucket_size=size, now_ms=0) for _ in range(2))
    drain(one, 0)
    drain(many, 0)
    for i in range(1, steps + 1):
        many.available(i * step_ms)
    end_ms = steps * step_ms
    assert one.next_token_ms(end_ms) == many.next_token_ms(end_ms)
    assert drain(one, end_ms) == drain(many, end_ms)


@given(rates, bucket_sizes, st.lists(st.integers(0, 2000), min_size=1, max_size=150))
def test_no_window_has_more_takes_than_rate_times_window_plus_bucket(
    rate: float, size: int, gaps_ms: list[int]
) -> None:
    """At most `bucket_size + rate x (W + 1 ms)`: the 1 ms is the bucket forgiving whole-ms time."""
    bucket = TokenBucket(rate_per_s=rate, bucket_size=size, now_ms=0)
    times = list(itertools.accumulate(gaps_ms))
    # a caller that tries up to three times at each moment
    takes = [(t, sum(bucket.try_take(t) for _ in range(3))) for t in times]
    for i, (start_ms, _) in enumerate(takes):
        count = 0
        for end_ms, taken in takes[i:]:
            count += taken
            assert count <= size + rate * (end_ms - start_ms + 1) / 1000 + SLACK_TOKENS


@given(rates, bucket_sizes, st.integers(1, 3000), st.integers(0, 999))
def test_a_steady_caller_gets_the_full_rate(
    rate: float, size: int, tokens: int, extra_ms: int
) -> None:
    duration_ms = tokens * 1000 // rate + extra_ms  # a run of about `tokens` tokens
    bucket = TokenBucket(rate_per_s=rate, bucket_size=size, now_ms=0)
    taken, now_ms = 0, 0
    while (now_ms := bucket.next_token_ms(now_ms)) <= duration_ms:
        assert bucket.try_take(now_ms)
        taken += 1
    expected = size + rate * duration_ms / 1000
    assert expected - 1 - SLACK_TOKENS < taken <= expected + SLACK_TOKENS


@given(
    st.one_of(st.sampled_from([3.0, 7.0, 600.0, 999.0, 1500.0]), st.floats(5.0, 5000.0)),
    bucket_sizes,
    st.integers(1, 20),
)
def test_a_caller_polling_each_millisecond_gets_the_full_rate(
    rate: float, size: int, tokens: int
) -> None:
    bucket = TokenBucket(rate_per_s=rate, bucket_size=size, now_ms=0)
    duration_ms = int(tokens * 1000 // rate)
    taken = sum(drain(bucket, now_ms) for now_ms in range(duration_ms + 1))
    expected = size + rate * duration_ms / 1000
    assert expected - 1 - SLACK_TOKENS < taken <= expected + SLACK_TOKENS


@given(
    rates,
    bucket_sizes,
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 4)), min_size=1, max_size=60),
)
def test_next_token_ms_is_exact(rate: float, size: int, steps: list[tuple[int, int]]) -> None:
    bucket = TokenBucket(rate_per_s=rate, bucket_size=size, now_ms=0)
    now_ms = 0
    for gap_ms, tries in steps:
        now_ms += gap_ms
        for _ in range(tries):
            bucket.try_take(now_ms)
        next_ms = bucket.next_token_ms(now_ms)
        assert next_ms >= now_ms
        assert copy.copy(bucket).try_take(next_ms)
        if next_ms > now_ms:  # empty now: one millisecond earlier is too early
            assert not copy.copy(bucket).try_take(next_ms - 1)
        else:
            assert bucket.available(now_ms) >= 1


@given(
    rates,
    bucket_sizes,
    st.lists(st.tuples(st.integers(-(10**7), 10**4), st.integers(0, 3)), min_size=1, max_size=80),
)
def test_a_clock_stepping_back_counts_only_forward_time(
    rate: float, size: int, steps: list[tuple[int, int]]
) -> None:
    """A bucket on a clock that jumps back behaves as one on a clock of only the forward steps."""
    wall = TokenBucket(rate_per_s=rate, bucket_size=size, now_ms=0)
    forward = TokenBucket(rate_per_s=rate, bucket_size=size, now_ms=0)
    wall_ms = forward_ms = 0
    for step_ms, tries in steps:
        before = wall.available(wall_ms)
        wall_ms += step_ms
        forward_ms += max(step_ms, 0)
        if step_ms < 0:
            assert wall.available(wall_ms) <= before  # a step back never adds a token
        for _ in range(tries):
            assert wall.try_take(wall_ms) == forward.try_take(forward_ms)
        assert (
            wall.next_token_ms(wall_ms) - wall_ms == forward.next_token_ms(forward_ms) - forward_ms
        )


def test_a_smaller_bucket_keeps_its_tokens_up_to_the_new_size_and_a_larger_adds_none() -> None:
    bucket = TokenBucket(rate_per_s=1, bucket_size=6, now_ms=0)
    bucket.set_bucket_size(2, 0)
    assert bucket.available(0) == 2
    assert bucket.try_take(0) and bucket.try_take(0) and not bucket.try_take(0)
    bucket.set_bucket_size(10, 0)
    assert bucket.available(0) == 0  # growing the bucket is no fresh burst
    assert bucket.available(3_000) == 3
