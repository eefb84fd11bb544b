"""The daemon's command line: `python -m miyamoto.io.node INTERFACE LEADER [options]`.

Parsing only: every value is checked here, so a typo is refused with a usage message before the
node starts. LEADER (or `--seed HOST:PORT`, for nodes that share one address on different ports)
names a node already in the cluster, the node itself for the first one.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .. import __version__
from ..logic.destinations import IpNetwork, parse_networks

DEFAULT_PORT = 8088
REPLICAS_MAX = 16

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")
"""A DNS name (RFC 1123 labels)."""
_ADDRESS = re.compile(r"\[(?P<v6>[^\]]+)\](:(?P<port6>[^:]*))?|(?P<host>[^:]+)(:(?P<port>.*))?")
"""HOST, HOST:PORT, [V6] or [V6]:PORT."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonOptions:
    interface: str
    """The address to serve on."""
    port: int
    leader: Address
    """A node already in the cluster (this node itself for the first one)."""
    seed: Address | None = None
    """--seed: overrides LEADER, with an explicit port."""
    replicas: int = 2
    replica_delay_s: float = 5.0
    queues_file: str | None = None
    retention_s: float = 3600.0
    """How long succeeded and cancelled tasks stay visible and their ids deduplicate."""
    api_tokens_file: str | None = None
    """--api-tokens-file: without it the API is open."""
    signing_key_file: str | None = None
    """--signing-key-file: without it deliveries are not signed."""
    deny_destinations: tuple[IpNetwork, ...] = ()
    allow_destinations: tuple[IpNetwork, ...] = ()
    cluster_key_file: str | None = None
    """--cluster-key-file: the keys peers sign and check `/_peer` batches with."""

    @property
    def node_id(self) -> str:
        return str(Address(host=self.interface, port=self.port))

    @property
    def seed_id(self) -> str:
        """host:port of the node to join through (this node's own id for the first node)."""
        return str(self.seed or self.leader)


def parse_args(argv: Sequence[str] | None = None) -> DaemonOptions:
    """The options in `argv` (default sys.argv[1:]); exits with a usage message when invalid."""
    parser = _parser()
    args = parser.parse_args(argv)
    port: int = args.port
    leader = _address(args.leader, default_port=port)
    return DaemonOptions(
        interface=args.interface,
        port=port,
        leader=leader,
        seed=args.seed,
        replicas=args.replicas,
        replica_delay_s=args.replica_delay,
        queues_file=args.queues,
        retention_s=args.retention,
        api_tokens_file=args.api_tokens_file,
        signing_key_file=args.signing_key_file,
        deny_destinations=args.deny_destinations,
        allow_destinations=args.allow_destinations,
        cluster_key_file=args.cluster_key_file,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m miyamoto.io.node",
        description="Run a Miyamoto node: an HTTP task queue that delivers tasks as webhooks.",
        epilog="Example: python -m miyamoto.io.node 127.0.0.1 127.0.0.1 --port 8088",
    )
    parser.add_argument("interface", metavar="INTERFACE", type=_host, help="address to serve on")
    parser.add_argument(
        "leader",
        metavar="LEADER",
        type=_leader,
        help="HOST[:PORT] of a node already in the cluster; this node's own address for the first",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to serve on (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--seed",
        metavar="HOST:PORT",
        type=lambda text: _address(text, default_port=None),
        help="the node to join through, with its port (overrides LEADER)",
    )
    parser.add_argument(
        "--replicas",
        metavar="R",
        type=_replicas,
        default=2,
        help=f"copies of each task, on distinct nodes (1 to {REPLICAS_MAX}; default 2)",
    )
    parser.add_argument(
        "--replica-delay",
        metavar="SECONDS",
        type=_seconds,
        default=5.0,
        help="how long replicas wait for the owner before delivering a task (default 5)",
    )
    parser.add_argument("--queues", metavar="FILE", type=_readable_file, help="queue definitions")
    parser.add_argument(
        "--retention",
        metavar="SECONDS",
        type=_seconds,
        default=3600.0,
        help="how long succeeded and cancelled tasks stay visible and their task ids "
        "deduplicate (default 3600; each remembered task costs a few hundred bytes)",
    )
    _add_security_arguments(parser)
    parser.add_argument(
        "--cluster-key-file",
        metavar="FILE",
        type=_readable_file,
        help="peers sign and check every /_peer batch with this key (one key a line: the first "
        "signs, all verify, for rotation); or set MIYAMOTO_CLUSTER_KEY. Without a key any "
        "host that reaches the port can act as a peer",
    )
    parser.add_argument("--version", action="version", version=f"miyamoto {__version__}")
    return parser


def _add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of docs/security.md."""
    parser.add_argument(
        "--api-tokens-file",
        metavar="FILE",
        type=_readable_file,
        help="lines `name token scopes` (scopes: enqueue,read,admin); requests then need "
        "`Authorization: Bearer TOKEN` (default: the API is open)",
    )
    parser.add_argument(
        "--signing-key-file",
        metavar="FILE",
        type=_readable_file,
        help="whsec_ keys, one a line: every key signs every delivery (Standard Webhooks)",
    )
    parser.add_argument(
        "--deny-destinations",
        metavar="CIDR,...",
        type=_networks,
        default=(),
        help="networks webhooks may not be delivered to, besides link-local, 0.0.0.0/8, "
        "multicast and this node's own address",
    )
    parser.add_argument(
        "--allow-destinations",
        metavar="CIDR,...",
        type=_networks,
        default=(),
        help="exceptions to less specific denied networks (the most specific network decides)",
    )


def _networks(text: str) -> tuple[IpNetwork, ...]:
    try:
        return parse_networks(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _host(text: str) -> str:
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(candidate):
        return candidate
    raise argparse.ArgumentTypeError(f"not an IP address or host name: {text!r}")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r}")
    return int(text)


def _address(text: str, *, default_port: int | None) -> Address:
    """HOST:PORT, [IPv6]:PORT, or (when `default_port` is given) a bare HOST."""
    match = _ADDRESS.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    host = _host(match["v6"] or match["host"])
    port_text = match["port6"] if match["v6"] else match["port"]
    if port_text is None:
        if default_port is None:
            raise argparse.ArgumentTypeError(f"give a port, as HOST:PORT: {text!r}")
        return Address(host=host, port=default_port)
    port = _port(port_text)
    if port == 0:
        raise argparse.ArgumentTypeError(f"port 0 names no node: {text!r}")
    return Address(host=host, port=port)


def _leader(text: str) -> str:
    _address(text, default_port=DEFAULT_PORT)  # validated now, resolved against --port later
    return text


def _replicas(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= REPLICAS_MAX:
        raise argparse.ArgumentTypeError(f"not a replica count (1 to {REPLICAS_MAX}): {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds (0 or more): {text!r}")
    return value


def _readable_file(text: str) -> str:
    if not os.path.isfile(text) or not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"not a readable file: {text!r}")
    return text
