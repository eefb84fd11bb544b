"""The queue-limit checkers: a rate-limited queue's starts and a capped queue's deliveries in
flight, across the whole cluster, against what docs/queues.md ("In a cluster") promises.

Each of the N members enforces 1/N of a queue's rate, `max(1, bucket_size // N)` of its burst
and `max(1, max_concurrent // N)` of its concurrency, N being the length of the member list it
knows, and takes a new share when that list changes. When every running process knows the same
list of N members, the allowances below are exactly the documented ones:

- RATE: in any span [t0, t1] the cluster starts at most
  `rate x (t1 - t0 + 2 ms) x (1 + drift) + N x max(1, bucket_size // N)` attempts (first
  attempts and retries alike);
- CONCURRENCY: at most `N x max(1, max_concurrent // N)` deliveries are in flight at once.

While the member lists differ (a list is changing, a node was cut off, paused or restarted)
the documented overlap is allowed, and only it. It is computed from the member-list length
each process knows at each moment (read after each of its steps, `Checker.members_known`):

- the rate term is the integral over the span of the sum of the shares the running processes
  hold, `rate x sum(1 / n_p)` (that is `rate` when they agree), instead of `rate x span`;
- the burst term is the sum of the buckets held at t0, `sum(max(1, bucket_size // n_p))`,
  plus one fresh full bucket, `max(1, bucket_size // n)`, for each time in the span that a
  process learned a member list of length n (a new share may come with a new bucket; a
  restarted process's first list is one of these);
- a process that knows no member list holds no share: a node must not deliver at the whole
  queue's rate because it has not yet heard who the members are.

The slack beyond the documented formula is (a) `x (1 + drift)`: a clock that runs fast earns
tokens faster in true time (drift is at most 500 ppm here); (b) 2 ms of rate: the token
bucket's documented millisecond of rounding, plus one for the integer clock model, whose
local span can be one millisecond longer than the true one. Both are at most a few hundredths
of a token at the rates drawn here.

"In flight" is from a node's StartDelivery until that node hears the outcome, or crashes (its
connections break). A process's deliveries started under a larger share (before it learned of
more members) still count against that larger share until they end: the cluster-wide check
allows each process the largest share it held since its oldest delivery in flight started.
The per-process check is exact: when a process starts a delivery, its deliveries in flight
(this one included) are at most its share at that moment, which is what its admission rule
tested.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from fractions import Fraction

from .limits import CAPPED_QUEUE, RATE_QUEUE, QueueLimits

Process = tuple[str, int]
"""(node id, incarnation): a restarted node is a new process with its memory lost."""

PPM = 1_000_000
RATE_ROUNDING_MS = 2
"""The bucket's documented extra millisecond, plus one for the integer clock model."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitViolation:
    kind: str
    """"rate" or "concurrency"."""
    time_ms: int
    detail: str


@dataclass(slots=True, kw_only=True)
class _Breakpoint:
    """From `time_ms` on (until the next breakpoint): what the running processes hold."""

    time_ms: int
    shares: Fraction
    """sum(1 / n_p) over running processes that know a member list."""
    buckets: int
    """sum(max(1, bucket_size // n_p)) over the same."""
    integral: Fraction
    """The integral of `shares` from the first breakpoint to `time_ms` (share x ms)."""
    deposits: int
    """Fresh buckets at or before `time_ms`, summed."""


@dataclass(slots=True, kw_only=True)
class RateWindow:
    """The worst span found: its starts against what was allowed."""

    start_ms: int
    end_ms: int
    starts: int
    allowed: Fraction
    buckets: int
    fresh_buckets: int
    shares_ms: Fraction
    """The integral of sum(1 / n_p) over the span, in share x ms."""

    @property
    def excess(self) -> Fraction:
        return self.starts - self.allowed


@dataclass(slots=True, kw_only=True)
class LimitStats:
    rate_starts: int = 0
    rate_worst: RateWindow | None = None
    """The span where the starts came closest to (or went furthest over) the allowance."""
    capped_in_flight_max: int = 0
    """The most deliveries of the capped queue in flight at once, cluster-wide."""
    capped_allowed_at_max: int = 0
    """The cluster-wide allowance at that moment."""
    capped_held_back: int = 0
    """Starts in the very millisecond one of their process's deliveries of the queue ended
    while it was at its share: tasks the cap had held back (so the cap was put to the test)."""
    violations: list[LimitViolation] = field(default_factory=list)


class LimitChecker:
    def __init__(self, limits: QueueLimits, drift_ppm_max: int) -> None:
        assert limits.any_queue
        self.limits = limits
        self.drift = Fraction(max(0, drift_ppm_max), PPM)
        self._members: dict[Process, int] = {}
        """Running processes (paused ones too: their buckets keep filling) -> the length of the
        member list they know (0: none yet)."""
        self._breakpoints: list[_Breakpoint] = []
        self._times: list[int] = []
        """The breakpoints' times, for bisecting (filled in by `check_rate`)."""
        self._rate_starts: list[int] = []
        self._rate_checked = False
        self._in_flight: dict[Process, dict[int, str]] = {}
        """Process -> its deliveries of the capped queue in flight (delivery id -> task id)."""
        self._freed: dict[Process, int] = {}
        """Process -> when a delivery of the capped queue it had at its full share ended."""
        self._share_held: dict[Process, int] = {}
        """Process with deliveries of the capped queue in flight -> the largest concurrency
        share it held since the oldest of them started."""
        self.stats = LimitStats()

    # -- what happened ---------------------------------------------------------------------------

    def members_known(self, process: Process, members: int, time_ms: int) -> None:
        """`process` is running and knows a member list of length `members` (0: none)."""
        before = self._members.get(process)
        if before == members:
            return
        self._members[process] = members
        fresh = 0
        if members >= 1 and self.limits.rate_per_s is not None:
            fresh = max(1, self.limits.bucket_size // members)
        self._add_breakpoint(time_ms, fresh)
        if process in self._share_held and members >= 1:
            self._share_held[process] = max(self._share_held[process], self._cap_share(members))

    def process_ended(self, process: Process, time_ms: int) -> None:
        """`process` crashed: its shares are gone and its connections broke."""
        if self._members.pop(process, None) is not None:
            self._add_breakpoint(time_ms, 0)
        self._in_flight.pop(process, None)
        self._share_held.pop(process, None)

    def delivery_started(
        self, process: Process, delivery_id: int, queue: str, task_id: str, time_ms: int
    ) -> None:
        if queue == RATE_QUEUE and self.limits.rate_per_s is not None:
            self._rate_starts.append(time_ms)
        if queue == CAPPED_QUEUE and self.limits.max_concurrent is not None:
            self._capped_started(process, delivery_id, task_id, time_ms)

    def delivery_ended(self, process: Process, delivery_id: int, time_ms: int) -> None:
        """`process` heard the outcome of one of its deliveries."""
        flights = self._in_flight.get(process)
        if flights is None or delivery_id not in flights:
            return
        if len(flights) >= self._cap_share(self._members.get(process, 0)):
            self._freed[process] = time_ms
        del flights[delivery_id]
        if not flights:
            del self._in_flight[process]
            self._share_held.pop(process, None)

    # -- concurrency: checked as each delivery starts -------------------------------------------

    def _cap_share(self, members: int) -> int:
        """A process's share of the cap when it knows `members` members (none: it knows no
        member list, so it holds no share)."""
        cap = self.limits.max_concurrent
        assert cap is not None
        return max(1, cap // members) if members >= 1 else 0

    def _capped_started(
        self, process: Process, delivery_id: int, task_id: str, time_ms: int
    ) -> None:
        cap = self.limits.max_concurrent
        assert cap is not None
        members = self._members.get(process, 0)
        share = self._cap_share(members)
        flights = self._in_flight.setdefault(process, {})
        flights[delivery_id] = task_id
        self._share_held[process] = max(self._share_held.get(process, 0), share)
        node = process[0]
        self.stats.capped_held_back += self._freed.get(process) == time_ms
        if len(flights) > share:
            self._violate(
                "concurrency",
                time_ms,
                f"{node} started {task_id} with {len(flights)} deliveries of {CAPPED_QUEUE} in "
                f"flight; its share is {share} (max(1, max_concurrent {cap} // {members} "
                "members it knows))"
                if members
                else f"{node} started {task_id} of {CAPPED_QUEUE} (cap {cap}) knowing no member "
                "list, so holding no share of the cap",
            )
        total = sum(len(f) for f in self._in_flight.values())
        allowed = sum(self._share_held.get(p, self._cap_share(n)) for p, n in self._members.items())
        if total > self.stats.capped_in_flight_max:
            self.stats.capped_in_flight_max, self.stats.capped_allowed_at_max = total, allowed
        if total > allowed:
            held = ", ".join(
                f"{p[0]}:{len(self._in_flight.get(p, {}))}/{self._share_held.get(p, 0)}"
                for p in sorted(self._in_flight)
            )
            self._violate(
                "concurrency",
                time_ms,
                f"{total} deliveries of {CAPPED_QUEUE} in flight across the cluster when "
                f"{node} started {task_id}; allowed {allowed} (the shares of max_concurrent "
                f"{cap} the running processes hold; in flight/share: {held})",
            )

    # -- rate: checked over every span at the end -----------------------------------------------

    def _add_breakpoint(self, time_ms: int, fresh: int) -> None:
        bucket = self.limits.bucket_size
        known = [n for n in self._members.values() if n >= 1]
        shares = sum((Fraction(1, n) for n in known), Fraction(0))
        buckets = sum(max(1, bucket // n) for n in known)
        points = self._breakpoints
        if points:
            last = points[-1]
            assert time_ms >= last.time_ms
            integral = last.integral + last.shares * (time_ms - last.time_ms)
            deposits = last.deposits + fresh
            if last.time_ms == time_ms:
                points.pop()
        else:
            integral, deposits = Fraction(0), fresh
        points.append(
            _Breakpoint(
                time_ms=time_ms, shares=shares, buckets=buckets, integral=integral,
                deposits=deposits,
            )
        )  # fmt: skip

    def _at(self, time_ms: int, *, before: bool) -> _Breakpoint | None:
        """The last breakpoint at or before `time_ms` (strictly before, if `before`)."""
        times = self._times
        index = (bisect.bisect_left if before else bisect.bisect_right)(times, time_ms) - 1
        return self._breakpoints[index] if index >= 0 else None

    def _integral(self, time_ms: int) -> Fraction:
        point = self._at(time_ms, before=False)
        if point is None:
            return Fraction(0)
        return point.integral + point.shares * (time_ms - point.time_ms)

    def check_rate(self) -> None:
        """Every span [t_i, t_j] between two starts: starts in it <= buckets held just before
        t_i + fresh buckets in [t_i, t_j] + rate x (1 + drift) x the shares' integral over
        [t_i, t_j + 2 ms). Spans between starts are the tightest (a longer span only adds
        allowance), and the scan is linear: with A_j = (starts up to t_j) - deposits(<= t_j) -
        c x I(t_j + 2) and B_i = (starts before t_i) + buckets(< t_i) - deposits(< t_i) -
        c x I(t_i), a span is over iff A_j > B_i for some i <= j."""
        rate = self.limits.rate_per_s
        if rate is None or self._rate_checked:
            return
        self._rate_checked = True
        starts = sorted(self._rate_starts)
        self.stats.rate_starts = len(starts)
        if not starts:
            return
        self._times = [p.time_ms for p in self._breakpoints]
        c = Fraction(rate) * (1 + self.drift) / 1000
        worst: RateWindow | None = None
        over = 0
        best_b: tuple[Fraction, int, int] | None = None  # (B_i, index, time) with the least B
        index = 0
        while index < len(starts):
            time_ms = starts[index]
            last = index
            while last + 1 < len(starts) and starts[last + 1] == time_ms:
                last += 1
            point_before = self._at(time_ms, before=True)
            buckets_before = point_before.buckets if point_before is not None else 0
            deposits_before = point_before.deposits if point_before is not None else 0
            b_i = index + buckets_before - deposits_before - c * self._integral(time_ms)
            if best_b is None or b_i < best_b[0]:
                best_b = (b_i, index, time_ms)
            point = self._at(time_ms, before=False)
            deposits_upto = point.deposits if point is not None else 0
            a_j = last + 1 - deposits_upto - c * self._integral(time_ms + RATE_ROUNDING_MS)
            _, first, first_ms = best_b
            excess = a_j - best_b[0]
            if worst is None or excess > worst.excess:
                first_point = self._at(first_ms, before=True)
                buckets = first_point.buckets if first_point is not None else 0
                fresh = deposits_upto - (first_point.deposits if first_point is not None else 0)
                shares_ms = self._integral(time_ms + RATE_ROUNDING_MS) - self._integral(first_ms)
                worst = RateWindow(
                    start_ms=first_ms, end_ms=time_ms, starts=last + 1 - first,
                    allowed=buckets + fresh + c * shares_ms, buckets=buckets,
                    fresh_buckets=fresh, shares_ms=shares_ms,
                )  # fmt: skip
            over += excess > 0
            index = last + 1
        self.stats.rate_worst = worst
        if worst is not None and worst.excess > 0:
            self._violate("rate", worst.end_ms, self._describe_rate(worst, over))

    def _describe_rate(self, window: RateWindow, over: int) -> str:
        rate, bucket = self.limits.rate_per_s, self.limits.bucket_size
        span_ms = window.end_ms - window.start_ms
        return (
            f"{RATE_QUEUE} (rate {rate:g}/s, bucket_size {bucket}) started {window.starts} "
            f"attempts in {span_ms} ms ({window.start_ms / 1000:.3f}s to "
            f"{window.end_ms / 1000:.3f}s); allowed {float(window.allowed):.2f}: buckets held "
            f"{window.buckets} + fresh buckets {window.fresh_buckets} + rate x "
            f"{float(window.shares_ms) / 1000:.3f} share-seconds x (1 + drift); {over} spans "
            "over"
        )

    def _violate(self, kind: str, time_ms: int, detail: str) -> None:
        self.stats.violations.append(LimitViolation(kind=kind, time_ms=time_ms, detail=detail))
