"""Open a webhook's connection only to addresses the destination policy allows.

The host is resolved once, every address it resolves to is checked, and the connection is made
to a checked address (an IP literal, so no second lookup happens): a name whose DNS answer
changes between a check and the connect (DNS rebinding) cannot slip an address past the check.
If any address of a name is denied, the delivery is refused outright rather than tried on the
others, so a name cannot mix a metadata address in with harmless ones. The resolver and the
connect function are injected, so tests never need a packet to leave the machine.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import trio

from ..logic.destinations import DestinationPolicy, IpAddress

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""host, port -> the IP addresses (as text) the host resolves to, in the order to try them;
raises socket.gaierror when it does not resolve."""

Connect = Callable[[str, int], Awaitable[trio.abc.Stream]]
"""IP address (text), port -> an open stream to it; raises OSError when it cannot."""

ADDRESSES_MAX = 32
"""Addresses of one name that are checked and tried; a longer DNS answer is cut here."""


class DestinationDenied(Exception):
    """The destination's address is one deliveries may not connect to; the message says why."""


async def resolve_with_getaddrinfo(host: str, port: int) -> list[str]:
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def connect_tcp(address: str, port: int) -> trio.abc.Stream:
    # An IP literal: trio's getaddrinfo answers it without any lookup.
    return await trio.open_tcp_stream(address, port)


class SsrfGuard:
    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        resolve: Resolve = resolve_with_getaddrinfo,
        connect: Connect = connect_tcp,
    ) -> None:
        self.policy = policy
        self._resolve = resolve
        self._connect = connect

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        """A TCP stream to host:port through an allowed address.

        Raises DestinationDenied, socket.gaierror (no such name), or OSError (no allowed address
        accepted the connection; its __cause__ groups each attempt's error, as trio's does)."""
        addresses = await self._addresses(host, port)
        for address in addresses:
            why = self.policy.refusal(address, port)
            if why is not None:
                shown = host if str(address) == host else f"{host} (resolved to {address})"
                raise DestinationDenied(f"delivery to {shown} port {port} is denied: {why}")
        errors: list[OSError] = []
        for address in addresses:
            try:
                return await self._connect(str(address), port)
            except OSError as error:
                # trio's own error for a failed connect groups its attempts: keep those.
                cause = error.__cause__
                if isinstance(cause, BaseExceptionGroup):
                    errors += [e for e in cause.exceptions if isinstance(e, OSError)] or [error]
                else:
                    errors.append(error)
        failed = OSError(errno.ECONNREFUSED, f"all {len(errors)} addresses of {host} failed")
        raise failed from ExceptionGroup("connect attempts", errors)

    async def _addresses(self, host: str, port: int) -> list[IpAddress]:
        try:
            return [ipaddress.ip_address(host)]  # a literal: nothing to resolve
        except ValueError:
            pass
        texts = await self._resolve(host, port)
        if not texts:
            raise socket.gaierror(socket.EAI_NONAME, "the name has no addresses")
        return [ipaddress.ip_address(text) for text in texts[:ADDRESSES_MAX]]
