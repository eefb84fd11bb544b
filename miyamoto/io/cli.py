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
from ..logic.destinations import IpNetwork, parse_networks
from ..logic.membership import ClusterTiming
from .logs import LOG_FORMATS, LOG_LEVELS

DEFAULT_PORT = 8088
REPLICAS_MAX = 16
_TIMING = ClusterTiming()
SEEDS_MAX = 16
DATA_ROOT = Path("miyamoto-data")
"""The default data directory is DATA_ROOT/HOST-PORT, under the working directory."""
FSYNC_MODES = ("always", "off")
TASK_BYTES_MEMORY_FRACTION = 4
"""--max-task-bytes defaults to a quarter of physical memory: bodies, headers and URLs beside
the fixed few hundred bytes a task costs (bounded by the task count) and the process itself."""
TASK_BYTES_FALLBACK = 1024 * 1024 * 1024
"""The default when physical memory cannot be read (1 GiB)."""
_BYTE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

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
    # Operations: logs, metrics, the advertised address and the cluster's timing.
    log_level: str = "info"
    log_format: str = "text"
    access_log: bool = False
    metrics: bool = True
    advertise: Address | None = None
    """--advertise: the address peers and the cluster view use (when serving on 0.0.0.0)."""
    heartbeat_interval_s: float = _TIMING.heartbeat_interval_ms / 1000
    election_timeout_min_s: float = _TIMING.election_timeout_min_ms / 1000
    election_timeout_max_s: float = _TIMING.election_timeout_max_ms / 1000
    member_timeout_s: float = _TIMING.member_timeout_ms / 1000

    @property
    def bind_address(self) -> Address:
        """Where to serve."""
        return Address(host=self.interface, port=self.port)
    more_seeds: tuple[Address, ...] = ()
    """--seed's further addresses, tried in turn with the first."""
    data_dir: Path | None = None
    """Where the node keeps its state; None: in memory only (--in-memory, or --port 0)."""
    fsync: str = "always"
    max_task_bytes: int = TASK_BYTES_FALLBACK
    """--max-task-bytes: task bodies, headers and URLs one node holds (default: a quarter of
    physical memory)."""
    drain_timeout_s: float = 10.0
    """On SIGTERM or Ctrl-C, how long deliveries under way may take to finish (io/drain.py)."""
    leave_on_exit: bool = False
    """--leave-on-exit: on SIGINT/SIGTERM leave the cluster for good before stopping."""
    leave_timeout_s: float = 60.0

    @property
    def node_id(self) -> str:
        """How peers and users name this node: the advertised address, else the bound one."""
        return str(self.advertise or self.bind_address)

    @property
    def seed_ids(self) -> tuple[str, ...]:
        """Every node to join through, this node left out unless it is the only one."""
        given = [
            # LEADER or --seed may name this node by the address it serves on
            str(self.advertise if self.advertise is not None and s == self.bind_address else s)
            for s in (self.seed or self.leader, *self.more_seeds)
        ]
        others = tuple(dict.fromkeys(s for s in given if s != self.node_id))
        return others or (self.node_id,)

    @property
    def seed_id(self) -> str:
        """host:port of the node to join through (this node's own id for the first node: a
        node founds a cluster only when it is its only seed)."""
        return self.seed_ids[0]

    def timing(self) -> ClusterTiming:
        return ClusterTiming(
            heartbeat_interval_ms=round(self.heartbeat_interval_s * 1000),
            election_timeout_min_ms=round(self.election_timeout_min_s * 1000),
            election_timeout_max_ms=round(self.election_timeout_max_s * 1000),
            member_timeout_ms=round(self.member_timeout_s * 1000),
        )


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
    options = DaemonOptions(
        interface=args.interface,
        port=port,
        leader=leader,
        seed=seeds[0] if seeds else None,
        more_seeds=seeds[1:],
        replicas=args.replicas,
        replica_delay_s=args.replica_delay,
        queues_file=args.queues,
        retention_s=args.retention,
        api_tokens_file=args.api_tokens_file,
        signing_key_file=args.signing_key_file,
        deny_destinations=args.deny_destinations,
        allow_destinations=args.allow_destinations,
        cluster_key_file=args.cluster_key_file,
        log_level=args.log_level,
        log_format=args.log_format,
        access_log=args.access_log,
        metrics=not args.no_metrics,
        advertise=args.advertise,
        heartbeat_interval_s=args.heartbeat_interval,
        election_timeout_min_s=args.election_timeout_min,
        election_timeout_max_s=args.election_timeout_max,
        member_timeout_s=args.member_timeout,
        data_dir=data_dir,
        fsync=args.fsync,
        max_task_bytes=(
            args.max_task_bytes if args.max_task_bytes is not None else default_task_bytes()
        ),
        drain_timeout_s=args.drain_timeout,
        leave_on_exit=args.leave_on_exit,
        leave_timeout_s=args.leave_timeout,
    )
    timing_error = _timing_error(options)
    if timing_error is not None:
        parser.error(timing_error)
    return options


def _timing_error(options: DaemonOptions) -> str | None:
    """Why the cluster timing flags cannot work together, or None."""
    heartbeat_ms = round(options.heartbeat_interval_s * 1000)
    election_min_ms = round(options.election_timeout_min_s * 1000)
    election_max_ms = round(options.election_timeout_max_s * 1000)
    member_ms = round(options.member_timeout_s * 1000)
    if not 0 < heartbeat_ms < election_min_ms:
        return (
            "--heartbeat-interval must be at least 0.001 s and shorter than "
            f"--election-timeout-min ({options.election_timeout_min_s:g} s)"
        )
    if election_min_ms > election_max_ms:
        return "--election-timeout-min must not be longer than --election-timeout-max"
    if election_max_ms >= member_ms:
        # A leader cut off from the majority must step down before it could remove anyone.
        return (
            "--member-timeout must be longer than --election-timeout-max "
            f"({options.election_timeout_max_s:g} s)"
        )
    return None


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
    _add_security_arguments(parser)
    parser.add_argument(
        "--cluster-key-file",
        metavar="FILE",
        type=_readable_file,
        help="peers sign and check every /_peer batch with this key (one key a line: the first "
        "signs, all verify, for rotation); or set MIYAMOTO_CLUSTER_KEY. Without a key any "
        "host that reaches the port can act as a peer",
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
    parser.add_argument(
        "--max-task-bytes",
        metavar="BYTES",
        type=_bytes,
        help="bytes of task bodies, headers and URLs one node holds; an enqueue past it gets "
        "507 (a number, or with K, M, G or T for KiB to TiB; default a quarter of physical "
        "memory)",
    )
    parser.add_argument(
        "--drain-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=10.0,
        help="on SIGTERM or Ctrl-C, how long requests and deliveries under way may take to "
        "finish before the node exits (default 10; a second signal exits at once)",
    )
    parser.add_argument(
        "--leave-on-exit",
        action="store_true",
        help="on SIGINT or SIGTERM, leave the cluster for good before stopping: hand this "
        "node's copies to the other members, then ask the leader to remove it (docs/cluster.md)",
    )
    parser.add_argument(
        "--leave-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=60.0,
        help="with --leave-on-exit: stop anyway after this long (default 60)",
    )
    parser.add_argument("--version", action="version", version=f"miyamoto {__version__}")
    _add_operations_arguments(parser)
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


def _add_operations_arguments(parser: argparse.ArgumentParser) -> None:
    ops = parser.add_argument_group("operations (docs/operations.md)")
    ops.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="least severe level logged"
    )
    ops.add_argument(
        "--log-format", choices=LOG_FORMATS, default="text", help="one line per record, as text "
        "or as a JSON object (default text)"
    )
    ops.add_argument(
        "--access-log", action="store_true", help="log one line per API request"
    )
    ops.add_argument(
        "--no-metrics", action="store_true", help="do not count anything; GET /_metrics is 404"
    )
    ops.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        type=lambda text: _address(text, default_port=None),
        help="the address peers and the cluster view use for this node (when INTERFACE is "
        "0.0.0.0 or not reachable by that name); default INTERFACE:PORT",
    )
    timing = (
        ("--heartbeat-interval", _TIMING.heartbeat_interval_ms, "the leader's heartbeat period"),
        (
            "--election-timeout-min",
            _TIMING.election_timeout_min_ms,
            "a member that hears no leader for a random time between min and max starts an "
            "election",
        ),
        ("--election-timeout-max", _TIMING.election_timeout_max_ms, "see --election-timeout-min"),
        (
            "--member-timeout",
            _TIMING.member_timeout_ms,
            "the leader removes a member it has not heard from for this long",
        ),
    )
    for flag, default_ms, text in timing:
        ops.add_argument(
            flag,
            metavar="SECONDS",
            type=_seconds,
            default=default_ms / 1000,
            help=f"{text} (default {default_ms / 1000:g})",
        )


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


def _bytes(text: str) -> int:
    match = re.fullmatch(r"([0-9]{1,15})([kmgt]?)i?b?", text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"not a byte count (a whole number above 0, optionally with K, M, G or T): {text!r}"
        )
    return int(match[1]) * _BYTE_UNITS[match[2]]


def default_task_bytes() -> int:
    """A quarter of physical memory (os.sysconf), or 1 GiB where that cannot be read."""
    try:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return TASK_BYTES_FALLBACK
    return memory_bytes // TASK_BYTES_MEMORY_FRACTION if memory_bytes > 0 else TASK_BYTES_FALLBACK


def _readable_file(text: str) -> str:
    if not os.path.isfile(text) or not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"not a readable file: {text!r}")
    return text
