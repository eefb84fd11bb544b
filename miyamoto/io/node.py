"""The Miyamoto daemon: `python -m miyamoto.io.node INTERFACE LEADER [--port 8088] [--help]`.

`serve_node` puts the pieces together (the node state machine, its runtime, the API server, the
webhook client and the peer links) so tests can run a whole node in their own nursery; `main` is
the command. With a data directory (docs/durability.md) the membership comes back from the store
and every change of its hard state is committed before the peer messages that follow it.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import random
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import trio

from .. import __version__
from ..logic.limits import Limits
from ..logic.membership import Membership
from ..logic.node import Node, NodeConfig
from ..logic.queue_config import QueueConfigError, parse_queues_toml
from .cli import Address, DaemonOptions, parse_args
from .durable.commit_gate import CommitGate
from .durable.data_dir import DataDirError
from .durable.startup import OpenedDataDir, open_data_dir
from .durable.store import DataFileError, FsyncMode, StoreUnavailable
from .http_server import ServerSettings, open_api_listeners, serve_api
from .peer_links import PeerLinks, PeerLinkSettings
from .runtime import NodeRuntime, wall_clock_ms
from .webhook_client import WebhookClient


def split_node_id(node_id: str) -> Address:
    """ "host:port" or "[v6]:port" as an Address."""
    host, sep, port = node_id.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"node_id must be host:port, not {node_id!r}")
    return Address(host=host.removeprefix("[").removesuffix("]"), port=int(port))


async def serve_node(
    config: NodeConfig,
    *,
    rng: random.Random | None = None,
    clock_ms: Callable[[], int] = wall_clock_ms,
    server_settings: ServerSettings | None = None,
    peer_link_settings: PeerLinkSettings | None = None,
    durable: OpenedDataDir | None = None,
    more_seeds: tuple[str, ...] = (),
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a node on `config.node_id` (host:port) until cancelled; `started(bound_port)`.

    Port 0 serves on a free port, and the node's id then names the port actually bound.
    `durable`: the opened data directory (the caller closes it); None keeps nothing on disk.
    `more_seeds`: nodes to join through besides `config.seed_id`.
    """
    address = split_node_id(config.node_id)
    if durable is not None and address.port == 0:
        raise ValueError("a durable node needs a fixed port: its id is host:port")
    listeners, bound_port = await open_api_listeners(address.host, address.port)
    if bound_port != address.port:
        bound = Address(host=address.host, port=bound_port)
        founder = config.seed_id in (None, config.node_id)
        config = dataclasses.replace(
            config, node_id=str(bound), seed_id=str(bound) if founder else config.seed_id
        )
    rng = rng or random.Random()
    membership = _membership(config, durable, rng, clock_ms())
    membership.add_seeds(more_seeds)
    node = Node(config, rng, clock_ms(), membership=membership)
    client = WebhookClient(
        connections_per_destination_max=config.limits.connections_per_destination_max
    )
    # Backoff jitter only: no run replays through the shell, so the OS's randomness is right.
    peer_links = PeerLinks(rng=random.Random(os.urandom(16)), settings=peer_link_settings)
    gate = None
    if durable is not None:
        # What the node starts from is on disk before it says anything (a founder's cluster id).
        committed = membership.hard_state()
        if committed != durable.saved:
            durable.store.commit_hard_state(committed)
        gate = CommitGate(
            durable.store, membership.hard_state, peer_links.send, committed=committed
        )
    runtime = NodeRuntime(
        node,
        deliver=client.deliver,
        send_peer=peer_links.send if gate is None else gate.send,
        clock_ms=clock_ms,
        deliveries_per_destination_max=config.limits.connections_per_destination_max,
    )
    settings = server_settings or ServerSettings(limits=config.limits)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(peer_links.run)  # before the node runs: it may send at once
            if gate is not None:
                await nursery.start(gate.run)
            await nursery.start(runtime.run)
            await nursery.start(
                partial(serve_api, runtime.answer_api_request, listeners, settings=settings)
            )
            task_status.started(bound_port)
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()


def _membership(
    config: NodeConfig, durable: OpenedDataDir | None, rng: random.Random, now_ms: int
) -> Membership:
    """The membership as saved in the data directory, or a new one (founding or joining)."""
    seed_id = config.seed_id or config.node_id
    if durable is not None and durable.saved is not None:
        return Membership.restored(
            durable.saved, seed_id=seed_id, config=config.timing, rng=rng, now_ms=now_ms
        )
    return Membership(
        self_id=config.node_id, seed_id=seed_id, config=config.timing, rng=rng, now_ms=now_ms
    )


async def _run_daemon(
    config: NodeConfig, durable: OpenedDataDir | None = None, more_seeds: tuple[str, ...] = ()
) -> int:
    """Serve until SIGINT or SIGTERM; the exit status."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                bound_port = await nursery.start(
                    partial(serve_node, config, durable=durable, more_seeds=more_seeds)
                )
            except StoreUnavailable as error:
                print(f"miyamoto: {error}", file=sys.stderr)
                return 1
            except OSError as error:
                print(f"miyamoto: cannot serve on {config.node_id}: {error}", file=sys.stderr)
                return 1
            host = split_node_id(config.node_id).host
            url_host = f"[{host}]" if ":" in host else host
            print(
                f"miyamoto {__version__} serving on http://{url_host}:{bound_port}",
                file=sys.stderr,
                flush=True,
            )
            async for signum in signals:
                name = signal.Signals(signum).name
                print(f"miyamoto: {name}, shutting down", file=sys.stderr, flush=True)
                nursery.cancel_scope.cancel()
                break
    return 0


def node_config(options: DaemonOptions) -> NodeConfig:
    """The node's configuration from the command line (the rest keeps its defaults).

    Raises QueueConfigError (its message starts with the file name) for a bad queues file."""
    queues = None
    if options.queues_file is not None:
        with open(options.queues_file, encoding="utf-8") as file:
            text = file.read()
        try:
            queues = parse_queues_toml(text, Limits())
        except QueueConfigError as error:
            raise QueueConfigError(f"{options.queues_file}: {error.message}") from None
    return NodeConfig(
        node_id=options.node_id,
        seed_id=options.seed_id,
        replicas=options.replicas,
        replica_delay_ms=round(options.replica_delay_s * 1000),
        retention_ms=round(options.retention_s * 1000),
        queues=queues,
    )


GC_THRESHOLDS = (50_000, 20, 10)
"""The cyclic garbage collector's thresholds for the daemon (Python's default: 700, 10, 10).

A node keeps up to millions of long-lived objects (its tasks) that form no cycles, and the
default thresholds make the collector walk them again and again while they pile up: that was a
quarter of the CPU of a batch enqueue. Rarer young collections also mean far fewer full ones;
garbage without cycles is still freed at once by reference counting."""


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_args(argv)
        config = node_config(options)
    except (QueueConfigError, OSError, UnicodeDecodeError) as error:
        print(f"miyamoto: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    gc.set_threshold(*GC_THRESHOLDS)
    more_seeds = options.seed_ids[1:]
    if options.data_dir is None:
        return trio.run(_run_daemon, config, None, more_seeds)
    try:
        durable = open_durable(options.data_dir, options.node_id, FsyncMode(options.fsync))
    except (DataDirError, DataFileError) as error:
        print(f"miyamoto: {error}", file=sys.stderr)
        return 1
    try:
        return trio.run(_run_daemon, config, durable, more_seeds)
    finally:
        durable.close()


def open_durable(path: Path, node_id: str, fsync: FsyncMode) -> OpenedDataDir:
    """The data directory opened for `node_id`, saying what it found on stderr."""
    durable = open_data_dir(path, node_id=node_id, fsync=fsync)
    saved = durable.saved
    if saved is None:
        found = "new"
    else:
        members = ", ".join(m.id for m in saved.committed.members) or "none yet"
        found = f"member of cluster {saved.cluster_id}, term {saved.term}, members {members}"
    print(f"miyamoto: data directory {path} ({found})", file=sys.stderr, flush=True)
    return durable


if __name__ == "__main__":
    sys.exit(main())
