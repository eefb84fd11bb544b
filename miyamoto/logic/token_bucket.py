"""A token bucket (App Engine's `rate` and `bucket_size`) in integer arithmetic, time passed in.

The rate is taken as a fraction p/q tokens per second: the nearest one with q up to 10^6 when that
is within 10^-9 of the float given (so "1/d", 1/3 and 0.7 are exact), else the float's exact
value. Tokens are counted in units of 1/(1000 q) token, so p units come in each millisecond:
refilling is exact integer arithmetic, and a bucket refilled once a millisecond holds exactly what
one refilled once a day holds. Nothing drifts however long a node runs.

Time is in whole milliseconds, so a caller cannot take a token at the fraction of a millisecond
at which it comes; the bucket forgives that: tokens that came in less than a millisecond after the
bucket filled up are kept (see `_advance`). Without it a bucket of 1 at 600/s, polled each
millisecond, would give 500/s. The price: over any span of W ms at most
`bucket_size + rate x (W + 1) / 1000` tokens are taken, one millisecond's worth more than a bucket
in continuous time.
"""

from __future__ import annotations

import math
from fractions import Fraction

_DENOMINATOR_MAX = 10**6
_RATE_TOLERANCE = Fraction(1, 10**9)


class TokenBucket:
    """Starts full. Each `try_take` that succeeds spends one token; tokens come back at
    `rate_per_s`, up to `bucket_size`.

    A clock that steps back (a wall clock corrected) neither creates tokens nor stalls the
    bucket: the bucket counts only time that moves forward, from its latest reading.
    """

    __slots__ = ("_bucket_size", "_rate_per_s", "_units", "_units_per_ms", "_units_per_token",
                 "_updated_ms")  # fmt: skip

    def __init__(self, *, rate_per_s: float, bucket_size: int, now_ms: int) -> None:
        assert bucket_size >= 1, bucket_size
        self._bucket_size = bucket_size
        self._rate_per_s = rate_per_s
        self._units_per_ms, self._units_per_token = _scale(rate_per_s)
        self._units = self._capacity_units()
        self._updated_ms = now_ms

    @property
    def rate_per_s(self) -> float:
        return self._rate_per_s

    @property
    def bucket_size(self) -> int:
        return self._bucket_size

    def available(self, now_ms: int) -> int:
        """Whole tokens in the bucket now."""
        self._advance(now_ms)
        return self._units // self._units_per_token

    def try_take(self, now_ms: int) -> bool:
        """Spend one token if there is one."""
        self._advance(now_ms)
        if self._units < self._units_per_token:
            return False
        self._units -= self._units_per_token
        return True

    def next_token_ms(self, now_ms: int) -> int:
        """The first millisecond at which `try_take` succeeds (`now_ms` if it does now), provided
        nothing else takes a token or changes the rate meanwhile."""
        self._advance(now_ms)
        missing_units = self._units_per_token - self._units
        if missing_units <= 0:
            return now_ms
        return now_ms + -(-missing_units // self._units_per_ms)

    def set_rate(self, rate_per_s: float, now_ms: int) -> None:
        """Change the rate from `now_ms` on; the tokens earned until then are kept (rounded
        down to the new rate's units)."""
        self._advance(now_ms)
        units_per_ms, units_per_token = _scale(rate_per_s)
        self._units = self._units * units_per_token // self._units_per_token
        self._rate_per_s = rate_per_s
        self._units_per_ms, self._units_per_token = units_per_ms, units_per_token

    def set_bucket_size(self, bucket_size: int, now_ms: int) -> None:
        """The cluster share of the burst changes: tokens carry over, capped at the new size
        (a new member list must not hand every node a fresh burst)."""
        assert bucket_size >= 1, bucket_size
        self._advance(now_ms)
        self._bucket_size = bucket_size
        self._units = min(self._units, self._capacity_units())

    def _capacity_units(self) -> int:
        return self._bucket_size * self._units_per_token

    def _advance(self, now_ms: int) -> None:
        elapsed_ms = now_ms - self._updated_ms
        # A step back credits nothing but still moves the reading: keeping the later reading
        # would stall the bucket for as long as the step.
        self._updated_ms = now_ms
        if elapsed_ms <= 0:
            return
        self._units += elapsed_ms * self._units_per_ms
        capacity_units = self._capacity_units()
        # Past capacity, the bucket filled up (units - capacity) / units_per_ms ms ago. Within
        # the last millisecond that is the clock's rounding, not the caller's lateness: keep the
        # tokens, as if the caller had come the moment it filled. Any later, they are lost.
        if self._units - capacity_units >= self._units_per_ms:
            self._units = capacity_units


def _scale(rate_per_s: float) -> tuple[int, int]:
    """(units per ms, units per token) for a rate."""
    assert math.isfinite(rate_per_s) and rate_per_s > 0, rate_per_s
    exact = Fraction(rate_per_s)
    rate = exact.limit_denominator(_DENOMINATOR_MAX)
    if abs(rate - exact) > exact * _RATE_TOLERANCE:
        rate = exact
    return rate.numerator, 1000 * rate.denominator
