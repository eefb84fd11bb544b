"""Outbound keep-alive connections, pooled per destination (scheme, host, port), bounded.

A delivery first takes one of its destination's slots (at most `connections_per_destination_max`
are in use at once; further deliveries queue for a slot), then reuses an idle connection if one
is pooled, else opens its own. Idle connections are closed after `idle_s_max` or when more than
`idle_connections_max` are pooled in all, oldest first, so file descriptors stay bounded however
many receivers a node has talked to.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio

Destination = tuple[str, str, int]
"""(scheme, host, port)."""


class PooledConnection:
    """One open connection to a destination and its h11 state."""

    __slots__ = ("destination", "h11", "idle_since_s", "stream")

    def __init__(self, stream: trio.abc.Stream, destination: Destination) -> None:
        self.stream = stream
        self.destination = destination
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since_s = 0.0


class _DestinationSlots:
    __slots__ = ("idle", "semaphore", "users")

    def __init__(self, connections_max: int) -> None:
        self.semaphore = trio.Semaphore(connections_max)
        self.idle: list[PooledConnection] = []
        """Most recently used last."""
        self.users = 0
        """Leases held or waited for; the entry is dropped when 0 and nothing is idle."""


class Lease:
    """One slot of a destination, held for one delivery."""

    def __init__(self, pool: ConnectionPool, slots: _DestinationSlots) -> None:
        self._pool = pool
        self._slots = slots

    def take_idle(self) -> PooledConnection | None:
        """The most recently pooled idle connection to this destination, if any."""
        if not self._slots.idle:
            return None
        connection = self._slots.idle.pop()
        del self._pool._idle_by_age[connection]
        return connection

    def give_back(self, connection: PooledConnection) -> None:
        """Pool `connection` (both sides DONE and cycled) for the next delivery to reuse."""
        assert connection.h11.our_state is h11.IDLE, connection.h11.states
        connection.idle_since_s = trio.current_time()
        self._slots.idle.append(connection)
        self._pool._idle_by_age[connection] = None


class ConnectionPool:
    def __init__(
        self,
        *,
        connections_per_destination_max: int,
        idle_connections_max: int = 1024,
        idle_s_max: float = 30.0,
    ) -> None:
        assert connections_per_destination_max >= 1, connections_per_destination_max
        assert idle_connections_max >= 0, idle_connections_max
        self._connections_per_destination_max = connections_per_destination_max
        self._idle_connections_max = idle_connections_max
        self._idle_s_max = idle_s_max
        self._destinations: dict[Destination, _DestinationSlots] = {}
        self._idle_by_age: OrderedDict[PooledConnection, None] = OrderedDict()
        """Every idle connection, oldest first."""

    @property
    def idle_count(self) -> int:
        return len(self._idle_by_age)

    @asynccontextmanager
    async def lease(self, destination: Destination) -> AsyncIterator[Lease]:
        """Hold one of `destination`'s slots (waiting for one if all are in use)."""
        await self._close_expired()
        slots = self._destinations.get(destination)
        if slots is None:
            slots = self._destinations[destination] = _DestinationSlots(
                self._connections_per_destination_max
            )
        slots.users += 1
        try:
            try:
                # A free slot is taken without the task switch `acquire` makes even then (about
                # 2.5 us a delivery); the delivery's socket I/O lets other tasks run anyway.
                slots.semaphore.acquire_nowait()
            except trio.WouldBlock:
                await slots.semaphore.acquire()
            try:
                yield Lease(self, slots)
            finally:
                slots.semaphore.release()
        finally:
            slots.users -= 1
            if not slots.users and not slots.idle:
                del self._destinations[destination]
            await self._close_expired()

    async def aclose(self) -> None:
        """Close every idle connection."""
        while self._idle_by_age:
            await self._close_oldest()

    async def _close_expired(self) -> None:
        expired_s = trio.current_time() - self._idle_s_max
        while self._idle_by_age and (
            len(self._idle_by_age) > self._idle_connections_max
            or next(iter(self._idle_by_age)).idle_since_s <= expired_s
        ):
            await self._close_oldest()

    async def _close_oldest(self) -> None:
        connection, _ = self._idle_by_age.popitem(last=False)
        slots = self._destinations[connection.destination]
        slots.idle.remove(connection)
        if not slots.users and not slots.idle:
            del self._destinations[connection.destination]
        await trio.aclose_forcefully(connection.stream)
