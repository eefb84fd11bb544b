"""The daemon's command line: `python -m miyamoto.io.node INTERFACE LEADER [options]`.

Parsing only: every value is checked here, so a typo is refused with a usage message before the
node starts. LEADER (or `--seed HOST:PORT[,HOST:PORT...]`, for nodes that share one address on
different ports) names a node already in the cluster, the node itself for the first one.
`--data-dir`, `--in-memory` and `--fsync` say where and how the node keeps its state
(docs/durability.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import __version__

DEFAULT_PORT = 8088
REPLICAS_MAX = 16
SEEDS_MAX = 16
DATA_ROOT = Path("miyamoto-data")
"""The default data directory is DATA_ROOT/HOST-PORT, under the working directory."""
FSYNC_MODES = ("always", "off")

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
    more_seeds: tuple[Address, ...] = ()
    """--seed's further addresses, tried in turn with the first."""
    data_dir: Path | None = None
    """Where the node keeps its state; None: in memory only (--in-memory, or --port 0)."""
    fsync: str = "always"

    @property
    def node_id(self) -> str:
        return str(Address(host=self.interface, port=self.port))

    @property
    def seed_ids(self) -> tuple[str, ...]:
        """Every node to join through, this node left out unless it is the only one."""
        given = [str(self.seed or self.leader), *(str(s) for s in self.more_seeds)]
        others = tuple(dict.fromkeys(s for s in given if s != self.node_id))
        return others or (self.node_id,)

    @property
    def seed_id(self) -> str:
        """host:port of the node to join through (this node's own id for the first node: a
        node founds a cluster only when it is its only seed)."""
        return self.seed_ids[0]


def parse_args(argv: Sequence[str] | None = None) -> DaemonOptions:
    """The options in `argv` (default sys.argv[1:]); exits with a usage message when invalid."""
    parser = _parser()
    args = parser.parse_args(argv)
    port: int = args.port
    leader = _address(args.leader, default_port=port)
    seeds: tuple[Address, ...] = args.seed or ()
    data_dir: Path | None = None
    if args.data_dir is not None:
        if port == 0:
            parser.error("--data-dir: a durable node needs a fixed --port (its id is HOST:PORT)")
        data_dir = args.data_dir
    elif not args.in_memory and port != 0:
        # A free port (0) names a new node every start: nothing to come back to, so no disk.
        host = f"[{args.interface}]" if ":" in args.interface else args.interface
        data_dir = DATA_ROOT / f"{host}-{port}"
    return DaemonOptions(
        interface=args.interface,
        port=port,
        leader=leader,
        seed=seeds[0] if seeds else None,
        more_seeds=seeds[1:],
        replicas=args.replicas,
        replica_delay_s=args.replica_delay,
        queues_file=args.queues,
        retention_s=args.retention,
        data_dir=data_dir,
        fsync=args.fsync,
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
        metavar="HOST:PORT[,HOST:PORT...]",
        type=_seeds,
        help=f"nodes to join through, with their ports, tried in turn (up to {SEEDS_MAX}; "
        "overrides LEADER; a restarted node rejoins through the members it remembers)",
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
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        help=f"where the node keeps its state (default {DATA_ROOT}/HOST-PORT under the working "
        "directory); a node restarted on it comes back as the same member",
    )
    storage.add_argument(
        "--in-memory",
        action="store_true",
        help="keep nothing on disk: a restarted node is a new node (the default with --port 0)",
    )
    parser.add_argument(
        "--fsync",
        choices=FSYNC_MODES,
        default="always",
        help="always: every commit is fsynced (survives a power cut; default); off: written to "
        "the OS only (survives a crash of the process, not a power cut)",
    )
    parser.add_argument("--version", action="version", version=f"miyamoto {__version__}")
    return parser


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


def _seeds(text: str) -> tuple[Address, ...]:
    parts = text.split(",")
    if len(parts) > SEEDS_MAX:
        raise argparse.ArgumentTypeError(f"more than {SEEDS_MAX} seeds: {text!r}")
    return tuple(_address(part.strip(), default_port=None) for part in parts)


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
