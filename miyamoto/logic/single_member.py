"""A fixed membership: the node alone (or a fixed list, for tests). No messages, no timers."""

from __future__ import annotations

from dataclasses import dataclass

from .peer import Outgoing, PeerMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedView:
    members: tuple[str, ...]
    leader: str | None
    term: int = 1
    epoch: int = 1


class FixedMembership:
    def __init__(self, members: tuple[str, ...]) -> None:
        assert members, "a cluster has at least one member"
        self._view = FixedView(members=tuple(sorted(members)), leader=min(members))

    def view(self) -> FixedView:
        return self._view

    def handle_message(self, sender: str, message: PeerMessage, now_ms: int) -> list[Outgoing]:
        return []

    def handle_timer(self, now_ms: int) -> list[Outgoing]:
        return []

    def next_deadline_ms(self) -> int | None:
        return None
