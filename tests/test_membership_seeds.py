"""A joining node asks every seed it was given (`--seed A,B,C`), in turn."""

from __future__ import annotations

import random

from miyamoto.logic.membership import ClusterTiming, Membership
from miyamoto.logic.messages import JoinRequest

A, B, C, D = (f"10.0.0.{i}:7000" for i in range(1, 5))


def test_a_joining_node_asks_each_of_its_seeds_in_turn() -> None:
    m = Membership(self_id=A, seed_id=B, config=ClusterTiming(), rng=random.Random(1), now_ms=0)
    m.add_seeds((C, D, A))  # its own id in the list is left out
    asked = []
    now_ms = 0
    for _ in range(8):
        for out in m.handle_timer(now_ms):
            assert isinstance(out.envelope.message, JoinRequest)
            asked.append(out.to)
        deadline = m.next_deadline_ms()
        assert deadline is not None
        now_ms = deadline
    assert set(asked) == {B, C, D}
