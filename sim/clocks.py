"""Per-node clocks: each node reads the true time plus an offset and a drift.

A node is given `local_ms(true)` as its `now_ms`; the checkers use true time. The error of a
clock is linear in time, so its extremes over a run are at the run's ends, which is how the
checkers bound how early a correct node may fire (`ClockModel.error_span_ms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PPM = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeClock:
    start_ms: int
    """True time at which drift starts to accumulate (the run's start)."""
    offset_ms: int = 0
    drift_ppm: int = 0
    """Parts per million the clock runs fast (> 0) or slow (< 0)."""

    def __post_init__(self) -> None:
        assert -PPM // 10 < self.drift_ppm < PPM // 10, self.drift_ppm

    def error_ms(self, true_ms: int) -> int:
        """local - true at `true_ms`."""
        return self.offset_ms + (true_ms - self.start_ms) * self.drift_ppm // PPM

    def local_ms(self, true_ms: int) -> int:
        return true_ms + self.error_ms(true_ms)

    def true_ms_at(self, local_ms: int) -> int:
        """The earliest true time at which this clock reads at least `local_ms`."""
        elapsed_local = local_ms - self.offset_ms - self.start_ms
        true_ms = self.start_ms + elapsed_local * PPM // (PPM + self.drift_ppm)
        while self.local_ms(true_ms) < local_ms:  # integer rounding: at most a step or two
            true_ms += 1
        while self.local_ms(true_ms - 1) >= local_ms:
            true_ms -= 1
        return true_ms


def error_span_ms(clocks: Sequence[NodeClock], start_ms: int, end_ms: int) -> int:
    """How far apart any two clocks (and true time, the clients' clock) read within the run.

    A correct node may fire up to this much before the true ETA: its clock can be ahead of the
    clock of the node (or client) that set the ETA by at most this much.
    """
    errors = [0]
    for clock in clocks:
        errors += [clock.error_ms(start_ms), clock.error_ms(end_ms)]
    return max(errors) - min(errors)
