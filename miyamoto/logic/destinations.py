"""Which addresses a webhook may be delivered to (the SSRF guard's rule). Pure: addresses in,
a reason to refuse (or None) out; the shell resolves names and connects only to addresses this
allows.

Denied by default: addresses that reach the machine's own services or its cloud's metadata
service rather than a worker: link-local (169.254.0.0/16, fe80::/10: where clouds serve
instance credentials), "this network" 0.0.0.0/8 and :: (Linux connects them to the local host),
multicast and broadcast, AWS's IPv6 metadata address, and the node's own API and peer address.
Loopback and private ranges stay allowed by default: the walkthrough and most workers live
there. `--deny-destinations` and `--allow-destinations` add rules; the most specific network
that contains an address decides (on a tie, deny wins), so `--deny-destinations 10.0.0.0/8
--allow-destinations 10.1.2.0/24` allows just that subnet of 10/8.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .errors import ClientError
from .urls import WebhookUrl

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DENIED: dict[str, str] = {
    "0.0.0.0/8": '"this network" (reaches the local host)',
    "169.254.0.0/16": "link-local (cloud metadata services live here)",
    "224.0.0.0/4": "multicast",
    "255.255.255.255/32": "broadcast",
    "::/128": "unspecified (reaches the local host)",
    "fe80::/10": "link-local (cloud metadata services live here)",
    "fd00:ec2::254/128": "the AWS instance metadata service",
    "ff00::/8": "multicast",
}
"""Networks denied unless allowed by a more specific `--allow-destinations`, with why."""

RULES_MAX = 1000
"""Networks one of `--deny-destinations` and `--allow-destinations` may list."""


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """`CIDR,CIDR,...` (a bare address is a /32 or /128); ValueError saying which is bad."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as error:
            message = f"not a network (CIDR such as 10.0.0.0/8): {item[:60]!r}: {error}"
            raise ValueError(message) from None
    if len(networks) > RULES_MAX:
        raise ValueError(f"{len(networks)} networks; the limit is {RULES_MAX}")
    return tuple(networks)


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationPolicy:
    denied: tuple[IpNetwork, ...] = ()
    """`--deny-destinations`, on top of DEFAULT_DENIED."""
    allowed: tuple[IpNetwork, ...] = ()
    """`--allow-destinations`: exceptions to less specific denials (the defaults included)."""
    own_addresses: tuple[tuple[IpAddress, int], ...] = ()
    """This node's API and peer address(es): always denied, whatever the rules say (a task
    must not make a node talk to itself: its `/_peer` or its admin operations)."""
    _rules: tuple[tuple[IpNetwork, bool, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        assert len(self.denied) <= RULES_MAX and len(self.allowed) <= RULES_MAX
        rules: list[tuple[IpNetwork, bool, str]] = [
            (ipaddress.ip_network(cidr), False, why) for cidr, why in DEFAULT_DENIED.items()
        ]
        rules += [(network, False, "denied by --deny-destinations") for network in self.denied]
        rules += [(network, True, "") for network in self.allowed]
        # Most specific first; at equal length a denial before an allowance.
        rules.sort(key=lambda rule: (-rule[0].prefixlen, rule[1]))
        object.__setattr__(self, "_rules", tuple(rules))

    def with_own_address(self, host: str, port: int) -> DestinationPolicy:
        """This policy, also denying the node's own `host:port` (an IP address). A node bound
        to every interface (0.0.0.0 or ::) is reached on loopback too; its other addresses
        are not known here: deny them with `--deny-destinations`."""
        address = _plain(ipaddress.ip_address(host))
        own = [(address, port)]
        if address.is_unspecified:
            own += [(ipaddress.ip_address("127.0.0.1"), port), (ipaddress.ip_address("::1"), port)]
        return DestinationPolicy(
            denied=self.denied, allowed=self.allowed, own_addresses=(*self.own_addresses, *own)
        )

    def for_node(self, node_id: str) -> DestinationPolicy:
        """This policy, also denying `node_id` (host:port) when its host is an IP address."""
        host, _, port = node_id.rpartition(":")
        try:
            return self.with_own_address(host.strip("[]"), int(port))
        except ValueError:
            return self  # a host name: the shell denies the addresses it is bound to

    def refusal(self, address: IpAddress, port: int) -> str | None:
        """Why a delivery must not connect to address:port, or None when it may."""
        address = _plain(address)
        for own, own_port in self.own_addresses:
            if port == own_port and (address == own or (own.is_loopback and address.is_loopback)):
                return "it is this node's own API and peer address"
        for network, allow, why in self._rules:
            if network.version == address.version and address in network:
                return None if allow else why
        return None


def _plain(address: IpAddress) -> IpAddress:
    """An IPv4-mapped IPv6 address (::ffff:169.254.169.254) as the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(str(address).partition("%")[0])
    return address


def denied_literal(url: WebhookUrl, policy: DestinationPolicy) -> ClientError | None:
    """The 400 for a `url` whose host is an IP address the policy denies (known at enqueue; a
    name is resolved and checked at each delivery); None when it is not denied."""
    try:
        address = ipaddress.ip_address(url.host)
    except ValueError:
        return None
    why = policy.refusal(address, url.port)
    if why is None:
        return None
    return ClientError(400, f"url may not point at {url.host} port {url.port}: {why}")
