"""Simulated webhook receivers: how the far end of a delivery behaves.

A receiver gets the request when the delivery starts. It either processes it and answers (2xx
or 5xx, fast or slow), hangs without ever answering (like `nc`), or refuses the connection.
What the node hears is one outcome: the answer when it comes within the delivery deadline,
else a TIMEOUT at the deadline. Only a processed request with a 2xx status counts as delivered;
a slow answer always comes within the deadline, so a receiver never does work the node thinks
failed (that would make duplicates by design, not by fault).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from miyamoto.logic.events import DeliveryError


class Behaviour(enum.Enum):
    OK = "ok"
    ERROR = "5xx"
    HANG = "hang"
    SLOW = "slow"
    """Processes it and answers 2xx, slowly but within the deadline."""
    REFUSED = "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverMix:
    """The chance of each behaviour for one delivery; the rest is OK."""

    error: float = 0.0
    hang: float = 0.0
    slow: float = 0.0
    refused: float = 0.0
    answer_ms_max: int = 50
    """A normal answer comes within this."""

    def __post_init__(self) -> None:
        assert 0 <= self.error + self.hang + self.slow + self.refused <= 1

    def describe(self) -> str:
        return (
            f"5xx:{self.error:.2f},hang:{self.hang:.2f},slow:{self.slow:.2f},"
            f"refused:{self.refused:.2f}"
        )


HEALTHY = ReceiverMix()


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    behaviour: Behaviour
    processed_status: int | None
    """The status the receiver answered with when it processed the request; None if it did not."""
    after_ms: int
    """When the node hears, after the delivery started."""
    status: int | None
    """The status the node hears; None when it hears `error` instead."""
    error: DeliveryError | None


def decide(rng: random.Random, mix: ReceiverMix, timeout_ms: int) -> Outcome:
    """What happens to one delivery with deadline `timeout_ms`."""
    draw = rng.random()
    fast_ms = rng.randint(1, mix.answer_ms_max)
    if draw < mix.error:
        status = rng.choice((500, 502, 503))
        return Outcome(
            behaviour=Behaviour.ERROR, processed_status=status, after_ms=fast_ms,
            status=status, error=None,
        )  # fmt: skip
    draw -= mix.error
    if draw < mix.hang:
        return Outcome(
            behaviour=Behaviour.HANG, processed_status=None, after_ms=timeout_ms,
            status=None, error=DeliveryError.TIMEOUT,
        )  # fmt: skip
    draw -= mix.hang
    if draw < mix.slow:
        slow_ms = rng.randint(fast_ms, max(fast_ms, timeout_ms * 4 // 5))
        return Outcome(
            behaviour=Behaviour.SLOW, processed_status=200, after_ms=slow_ms,
            status=200, error=None,
        )  # fmt: skip
    draw -= mix.slow
    if draw < mix.refused:
        return Outcome(
            behaviour=Behaviour.REFUSED, processed_status=None, after_ms=fast_ms,
            status=None, error=DeliveryError.REFUSED,
        )  # fmt: skip
    return Outcome(
        behaviour=Behaviour.OK, processed_status=200, after_ms=fast_ms, status=200, error=None
    )
