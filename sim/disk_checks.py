"""Election checks that must hold across restarts (with disks a restarted node is the same
member, so the checks keyed by member in sim/checkers.py cannot tell its processes apart).

- A member never grants two votes in one term, whichever of its processes sent them (Raft's
  votedFor, kept on disk before the vote is sent).
- One process leads a term: a member that crashed while leading must not lead the same term
  again after its restart (it would have to vote for itself a second time).

Both are read off the messages nodes send, so they hold with and without disks.
"""

from __future__ import annotations

from miyamoto.logic.messages import Envelope, Heartbeat, VoteResponse

from .checkers import Anomaly, Checker

Process = tuple[str, int]
"""(node id, the simulator's incarnation of it: one per start)."""


class DiskChecks:
    def __init__(self, checker: Checker) -> None:
        self._checker = checker
        self._votes: dict[tuple[int, str, int, int], str] = {}
        """(cluster id, voter id, its member incarnation, term) -> the candidate it granted."""
        self._leaders: dict[tuple[int, int], Process] = {}
        """(cluster id, term) -> the process that sent its heartbeats."""

    def sent(self, process: Process, to: str, envelope: Envelope, time_ms: int) -> None:
        message = envelope.message
        if isinstance(message, VoteResponse) and message.granted:
            key = (envelope.cluster_id, envelope.sender, envelope.incarnation, envelope.term)
            granted = self._votes.setdefault(key, to)
            if granted != to:
                self._checker.violate(
                    Anomaly.ELECTION_SAFETY,
                    time_ms,
                    f"{envelope.sender} granted two votes in term {envelope.term}: to "
                    f"{granted}, then to {to} (process {process[1]})",
                )
        elif isinstance(message, Heartbeat):
            leader = self._leaders.setdefault((envelope.cluster_id, envelope.term), process)
            if leader != process:
                self._checker.violate(
                    Anomaly.ELECTION_SAFETY,
                    time_ms,
                    f"term {envelope.term} led by two processes: {leader[0]} (start "
                    f"{leader[1]}) and {process[0]} (start {process[1]})",
                )
