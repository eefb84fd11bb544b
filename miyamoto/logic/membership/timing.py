"""How fast the cluster beats, suspects and elects. Defaults suit a LAN; tests shrink them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterTiming:
    heartbeat_interval_ms: int = 200
    """The leader sends its member list to every member this often."""
    election_timeout_min_ms: int = 1_000
    election_timeout_max_ms: int = 2_000
    """A member that hears no leader for a random time in [min, max] starts a pre-vote. `min` is
    also the lease: a member that heard its leader more recently refuses to help depose it, and
    a leader that has not heard from a majority for that long steps down (check-quorum)."""
    member_timeout_ms: int = 5_000
    """The leader removes a member it has not heard from for this long."""
    join_retry_min_ms: int = 200
    join_retry_max_ms: int = 2_000
    """A joining node asks again after a delay that doubles from min up to max (with jitter)."""

    def __post_init__(self) -> None:
        assert 0 < self.heartbeat_interval_ms < self.election_timeout_min_ms, self
        assert self.election_timeout_min_ms <= self.election_timeout_max_ms, self
        # A leader cut off from the majority steps down (after election_timeout_min) long before
        # it could remove anyone, so a minority side never changes the membership.
        assert self.election_timeout_max_ms < self.member_timeout_ms, self
        assert 0 < self.join_retry_min_ms <= self.join_retry_max_ms, self
