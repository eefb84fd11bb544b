"""The run's fingerprint: a running hash of every random draw and every event.

Two runs of one seed must give the same hash (madsim/turmoil's determinism check). Events are
hashed as text lines with blake2b, never with `hash(str)`, which PYTHONHASHSEED changes between
processes. Draws are mixed into a 64-bit integer, which is cheap enough to do for every draw.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

_MASK64 = (1 << 64) - 1
_MIX = 0x100000001B3  # the 64-bit FNV prime
_FLOAT_SCALE = float(1 << 53)


class Trace:
    """Collects the run's fingerprint; optionally passes each event line on (for `--trace`)."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self._events = hashlib.blake2b(digest_size=16)
        self._draws = 0
        self.draw_count = 0
        self.event_count = 0
        self._echo = echo

    def event(self, line: str) -> None:
        self.event_count += 1
        self._events.update(line.encode())
        self._events.update(b"\n")
        if self._echo is not None:
            self._echo(line)

    def draw(self, value: int) -> None:
        self.draw_count += 1
        self._draws = ((self._draws ^ (value & _MASK64)) * _MIX) & _MASK64

    def digest(self) -> str:
        """The fingerprint so far, as 16 hex digits."""
        final = self._events.copy()
        final.update(self._draws.to_bytes(8, "big"))
        return final.hexdigest()[:16]


class TracedRandom(random.Random):
    """A `random.Random` whose every draw is mixed into a `Trace`.

    Every method of `random.Random` draws through `random()` or `getrandbits()`, so overriding
    those two sees them all.
    """

    def __init__(self, seed: str, trace: Trace) -> None:
        super().__init__(seed)  # a str seed is hashed with sha512: the same in every process
        self._trace = trace

    def random(self) -> float:
        value = super().random()
        self._trace.draw(int(value * _FLOAT_SCALE))
        return value

    def getrandbits(self, k: int, /) -> int:
        value = super().getrandbits(k)
        self._trace.draw(value)
        return value
