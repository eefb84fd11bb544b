from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.retry import RetryPolicy


def test_backoff_doubles_then_grows_linearly_then_caps_as_in_app_engine() -> None:
    policy = RetryPolicy(min_backoff_ms=10_000, max_backoff_ms=300_000, max_doublings=3)
    got = [policy.backoff_ms(n) // 1000 for n in range(8)]
    assert got == [10, 20, 40, 80, 160, 240, 300, 300]


def test_retry_limit_counts_retries_after_the_first_attempt() -> None:
    policy = RetryPolicy(retry_limit=2)
    assert policy.may_retry(0, 0, 0)
    assert policy.may_retry(1, 0, 0)
    assert not policy.may_retry(2, 0, 0)


def test_with_both_limits_retries_stop_only_when_both_are_passed() -> None:
    policy = RetryPolicy(retry_limit=2, age_limit_ms=60_000)
    assert policy.may_retry(5, 0, 59_999)  # count passed, age not
    assert policy.may_retry(1, 0, 60_000)  # age passed, count not
    assert not policy.may_retry(2, 0, 60_000)


def test_unlimited_retries_still_respect_the_age_limit() -> None:
    policy = RetryPolicy(retry_limit=-1, age_limit_ms=60_000)
    assert policy.may_retry(10_000, 0, 59_999)
    assert not policy.may_retry(1, 0, 60_000)


@given(
    st.integers(0, 100_000), st.integers(0, 10**7), st.integers(0, 40), st.integers(0, 200)
)
def test_backoff_never_shrinks_and_stays_within_bounds(
    lo: int, extra: int, doublings: int, n: int
) -> None:
    policy = RetryPolicy(min_backoff_ms=lo, max_backoff_ms=lo + extra, max_doublings=doublings)
    assert lo <= policy.backoff_ms(n) <= lo + extra
    assert policy.backoff_ms(n) <= policy.backoff_ms(n + 1)
