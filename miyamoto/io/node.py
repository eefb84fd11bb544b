"""The Miyamoto daemon: `python -m miyamoto.io.node INTERFACE LEADER [--port 8088] [--help]`.

`serve_node` puts the pieces together (the node state machine, its runtime, the API server, the
webhook client, the peer links, and what watches them: metrics, logs, /_ready) so tests can run
a whole node in their own nursery; `main` is the command: it sets up logging, serves, reloads
the queues file on SIGHUP, and on SIGINT or SIGTERM drains (drain.py) and stops; a second one
stops it at once. With a data directory
(docs/durability.md) the membership comes back from the store and every change of its hard
state is committed before the peer messages that follow it.
"""

from __future__ import annotations

import dataclasses
import gc
import ipaddress
import logging
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

import trio

from .. import __version__
from ..logic.api_tokens import ApiTokens, TokensFileError
from ..logic.destinations import DestinationPolicy
from ..logic.events import QueuesReconfigured
from ..logic.limits import Limits
from ..logic.membership import Membership
from ..logic.node import Node, NodeConfig
from ..logic.queue_config import QueueConfigError, QueuesConfig, parse_queues_toml
from .api_auth import read_api_tokens, requiring_tokens
from .cli import Address, DaemonOptions, parse_args
from .cluster_counters import with_cluster_section, with_peer_counters
from .drain import DeliveriesUnderWay, Drain, DrainReport, drain_node, log_drained
from .durable.cluster_view import durability_section
from .durable.commit_gate import CommitGate
from .durable.data_dir import DataDirError
from .durable.startup import OpenedDataDir, open_data_dir
from .durable.store import DataFileError, FsyncMode, StoreUnavailable
from .http_server import (
    ApiDrain,
    PeerHandler,
    RequestHandler,
    ServerSettings,
    open_api_listeners,
    serve_api,
)
from .leave_on_exit import ApiAsk, leave_before_exit
from .logs import configure_logging
from .metrics import NodeMetrics
from .node_watch import NodeWatch
from .ops_endpoints import ApiFront
from .peer_auth import ClusterKeyError, ClusterKeys, PeerSigner, PeerVerifier, load_keys, new_boot
from .peer_endpoint import PeerEndpoint, is_peer_request
from .peer_links import PeerLinks, PeerLinkSettings
from .runtime import Deliver, NodeCrashed, NodeRuntime, wall_clock_ms
from .signing import DeliverySigner, SigningKeyError, read_signing_keys
from .ssrf_guard import SsrfGuard
from .static_routes import with_static_routes
from .webhook_client import WebhookClient

log = logging.getLogger("miyamoto")

EXIT_NODE_CRASHED = 70
"""The exit status when `Node.handle` raised (a bug; EX_SOFTWARE): the log has the traceback."""


EXIT_STOPPED_UNDRAINED = 3
"""The exit status when a second SIGTERM or SIGINT stopped the node before its drain finished."""
EXIT_LAST_COMMIT_FAILED = 4
"""The exit status when the drain's last commit failed (the store could not write)."""


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
    bind: Address | None = None,
    metrics: bool = True,
    access_log: bool = False,
    queues_reloads: trio.MemoryReceiveChannel[QueuesConfig] | None = None,
    api_tokens: ApiTokens | None = None,
    signing_keys: tuple[bytes, ...] = (),
    cluster_keys: ClusterKeys | None = None,
    on_peer_endpoint: Callable[[PeerEndpoint], None] | None = None,
    deliver: Deliver | None = None,
    durable: OpenedDataDir | None = None,
    more_seeds: tuple[str, ...] = (),
    drain: Drain | None = None,
    on_api: Callable[[ApiAsk], None] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a node on `bind` (default `config.node_id`, host:port) until cancelled;
    `started(bound_port)`.

    Port 0 serves on a free port, and the node's id then names the port actually bound (unless
    `bind` is given: the id is then the advertised address, as it is). `metrics` off: nothing
    is counted and /_metrics answers 404. `access_log`: a line per API request. Each settings
    object from `queues_reloads` replaces the queues' settings at once.
    With `api_tokens` API requests need a token (docs/security.md); with `signing_keys` every
    delivery is signed. With `cluster_keys`, peer batches are signed and checked (peer_auth.py).
    `on_peer_endpoint` is given the `/_peer` endpoint, whose counters `GET /_cluster` is to show.
    `deliver` replaces the webhook client (tests that must reach no webhook pass their own).
    `durable`: the opened data directory (the caller closes it); None keeps nothing on disk.
    `more_seeds`: nodes to join through besides `config.seed_id`.
    `drain`: once `drain.requested` is set, the node drains (drain.py) and this returns.
    `on_api` is given the node's API as this process asks it (no token check): `--leave-on-exit`.
    Raises NodeCrashed (in an exception group) when the node raised.
    """
    address = bind or split_node_id(config.node_id)
    if durable is not None and address.port == 0:
        raise ValueError("a durable node needs a fixed port: its id is host:port")
    listeners, bound_port = await open_api_listeners(address.host, address.port)
    if bound_port != address.port and bind is None:
        bound = Address(host=address.host, port=bound_port)
        founder = config.seed_id in (None, config.node_id)
        config = dataclasses.replace(
            config, node_id=str(bound), seed_id=str(bound) if founder else config.seed_id
        )
    rng = rng or random.Random()
    membership = _membership(config, durable, rng, clock_ms())
    membership.add_seeds(more_seeds)
    node = Node(config, rng, clock_ms(), membership=membership)
    if durable is not None:
        # Before the first event: overdue copies fire (or ask first) as the node starts.
        node.restore(durable.tasks, durable.paused_queues, clock_ms())
        durable.tasks = []  # the node holds them now
        node.keep_changes()
    client = WebhookClient(
        connections_per_destination_max=config.limits.connections_per_destination_max,
        guard=SsrfGuard(_with_own_addresses(config.destinations, listeners)),
        sign=DeliverySigner(keys=signing_keys).sign if signing_keys else None,
    )
    signer = verifier = None
    if cluster_keys is not None:
        signer = PeerSigner(
            cluster_keys, self_id=config.node_id, boot=new_boot(), clock_ms=clock_ms
        )
        verifier = PeerVerifier(cluster_keys, self_id=config.node_id, clock_ms=clock_ms)
    # Backoff jitter only: no run replays through the shell, so the OS's randomness is right.
    peer_links = PeerLinks(
        rng=random.Random(os.urandom(16)), settings=peer_link_settings, signer=signer
    )
    gate = None
    if durable is not None:
        # What the node starts from is on disk before it says anything (a founder's cluster id).
        committed = membership.hard_state()
        if committed != durable.saved:
            durable.store.commit_hard_state(committed)
        gate = CommitGate(
            durable.store,
            membership.hard_state,
            committed=committed,
            take_changes=node.take_changes,
            find_task=node.tasks.get,
        )
    # With a data directory, /_ready and miyamoto_ready say when the store takes no writes.
    store_problem = (lambda: gate.last_error) if gate is not None else (lambda: None)
    node_metrics = (
        NodeMetrics(
            node, peer_stats=peer_links.stats, clock_ms=clock_ms, store_problem=store_problem
        )
        if metrics
        else None
    )
    watch = NodeWatch(node, metrics=node_metrics)
    deliveries = DeliveriesUnderWay(deliver or client.deliver)
    runtime = NodeRuntime(
        node,
        deliver=deliveries,
        send_peer=peer_links.send,
        clock_ms=clock_ms,
        deliveries_per_destination_max=config.limits.connections_per_destination_max,
        observe=watch.observe,
        gate=gate,
    )
    peer_endpoint = PeerEndpoint(runtime.feed, verifier=verifier)
    if on_api is not None:
        on_api(runtime.handle_api_request)
    if on_peer_endpoint is not None:
        on_peer_endpoint(peer_endpoint)
    peer_handler = PeerHandler(claims=is_peer_request, answer=peer_endpoint.answer)
    handler: RequestHandler = runtime.answer_api_request
    if api_tokens is not None:
        handler = requiring_tokens(handler, api_tokens)
    handler = with_peer_counters(handler, peer_endpoint.stats_json)
    store = None if durable is None else durable.store
    handler = with_cluster_section(handler, "durability", partial(durability_section, store, gate))
    # The status page and the OpenAPI description are public (the page asks the API with the
    # browser's own credentials); the front counts and logs every answer, theirs included.
    front = ApiFront(
        with_static_routes(handler, limits=config.limits),
        view=node.membership.view,
        metrics=node_metrics,
        access_log_on=access_log,
        store_problem=store_problem,
    )
    settings = server_settings or ServerSettings(limits=config.limits)
    api_drain = ApiDrain()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(peer_links.run)  # before the node runs: it may send at once
            if gate is not None:
                await nursery.start(gate.run)
            await nursery.start(runtime.run)
            await nursery.start(
                partial(
                    serve_api,
                    front,
                    listeners,
                    settings=settings,
                    peer_handler=peer_handler,
                    on_refusal=front.note_refusal,
                    drain=api_drain,
                )
            )
            if queues_reloads is not None:
                nursery.start_soon(_apply_queues_reloads, runtime, queues_reloads)
            if drain is not None:
                stop = partial(drain_node, drain, api=api_drain, deliveries=deliveries, gate=gate)
                nursery.start_soon(_drain_when_requested, drain, stop, nursery.cancel_scope)
            task_status.started(bound_port)
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()


async def _drain_when_requested(
    drain: Drain, stop: Callable[[], Awaitable[DrainReport]], serving: trio.CancelScope
) -> None:
    await drain.requested.wait()
    log_drained(await stop())
    serving.cancel()


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


def _with_own_addresses(
    policy: DestinationPolicy, listeners: list[trio.SocketListener]
) -> DestinationPolicy:
    """`policy`, also denying every address this node's API (and so its peer link) is bound to:
    a task must not make the node call its own `/_peer` or admin operations."""
    for listener in listeners:
        host, port = listener.socket.getsockname()[:2]
        policy = policy.with_own_address(host, port)
    return policy


async def _apply_queues_reloads(
    runtime: NodeRuntime, reloads: trio.MemoryReceiveChannel[QueuesConfig]
) -> None:
    async for queues in reloads:
        runtime.feed(QueuesReconfigured(config=queues))
        log.info("queue settings reloaded: %d named queues", len(queues.queues))


def reload_queues(path: str, limits: Limits) -> QueuesConfig | None:
    """The queues file at `path` parsed and checked; None (and logged why) when it is not
    usable, so the node keeps the settings it has."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
        return parse_queues_toml(text, limits)
    except QueueConfigError as error:
        log.error("SIGHUP: %s: %s; keeping the previous queue settings", path, error.message)
    except (OSError, UnicodeDecodeError) as error:
        log.error("SIGHUP: cannot read %s (%s); keeping the previous queue settings", path, error)
    return None


async def _run_daemon(
    config: NodeConfig,
    options: DaemonOptions,
    security: _Security,
    durable: OpenedDataDir | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM, reloading the queues file on SIGHUP; the exit status."""
    crashes: list[BaseException] = []
    try:
        return await _serve_until_signal(config, options, security, durable)
    except* NodeCrashed as crashed:
        crashes.extend(crashed.exceptions)
    print(f"miyamoto: stopped: {crashes[0]} (a bug; see the log)", file=sys.stderr, flush=True)
    return EXIT_NODE_CRASHED


async def _serve_until_signal(
    config: NodeConfig,
    options: DaemonOptions,
    security: _Security,
    durable: OpenedDataDir | None,
) -> int:
    send_reload, receive_reload = trio.open_memory_channel[QueuesConfig](1)
    drain = Drain(timeout_s=options.drain_timeout_s)
    own_api: list[ApiAsk] = []
    serve = partial(
        serve_node,
        config,
        bind=options.bind_address if options.advertise is not None else None,
        metrics=options.metrics,
        access_log=options.access_log,
        queues_reloads=receive_reload,
        api_tokens=security.api_tokens,
        signing_keys=security.signing_keys,
        cluster_keys=security.cluster_keys,
        durable=durable,
        more_seeds=options.seed_ids[1:],
        drain=drain,
        on_api=own_api.append,
    )

    async def serve_then_stop(*, task_status: trio.TaskStatus[int]) -> None:
        await serve(task_status=task_status)  # returns once drained
        nursery.cancel_scope.cancel()

    status = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            try:
                bound_port = await nursery.start(serve_then_stop)
            except StoreUnavailable as error:
                log.error("%s", error)
                return 1
            except OSError as error:
                log.error("cannot serve on %s: %s", options.bind_address, error)
                return 1
            host = options.interface
            url_host = f"[{host}]" if ":" in host else host
            log.info(
                "miyamoto %s serving on http://%s:%d (node %s, joining through %s, %d replicas, "
                "queues %s, %s)",
                __version__,
                url_host,
                bound_port,
                config.node_id if options.advertise else f"{url_host}:{bound_port}",
                config.seed_id,
                config.replicas,
                options.queues_file or "with default settings",
                "no data directory: nothing is kept on disk"
                if options.data_dir is None
                else f"data directory {options.data_dir}: the membership and the tasks are kept "
                "on disk",
            )
            if security.api_tokens is None and not _is_loopback(host):
                log.warning(
                    "no --api-tokens-file, and %s is not a loopback address: anyone who reaches "
                    "this port may enqueue, read, delete and purge",
                    host,
                )
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    _on_sighup(options, config, send_reload)
                    continue
                if not drain.requested.is_set():
                    log.info("%s, shutting down: draining (send it again to stop at once)", name)
                    if options.leave_on_exit:
                        # Leaving first: the copies go to the other members while this node
                        # still serves them; then the drain finishes what is under way.
                        await leave_before_exit(own_api[0], timeout_s=options.leave_timeout_s)
                    drain.requested.set()
                    continue
                # What was acknowledged is committed already; outcomes not yet are made again.
                log.warning("%s again: stopping at once, without waiting for the drain", name)
                status = EXIT_STOPPED_UNDRAINED
                nursery.cancel_scope.cancel()
                break
    if status == 0 and not drain.committed:
        status = EXIT_LAST_COMMIT_FAILED
    return status


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _on_sighup(
    options: DaemonOptions, config: NodeConfig, send: trio.MemorySendChannel[QueuesConfig]
) -> None:
    if options.queues_file is None:
        log.warning("SIGHUP: no queues file to reload (the node runs without --queues)")
        return
    queues = reload_queues(options.queues_file, config.limits)
    if queues is None:
        return
    try:
        send.send_nowait(queues)
    except trio.WouldBlock:
        log.warning("SIGHUP: a reload is still being applied; send SIGHUP again")


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
        limits=Limits(task_bytes_max=options.max_task_bytes),
        queues=queues,
        timing=options.timing(),
        destinations=DestinationPolicy(
            denied=options.deny_destinations, allowed=options.allow_destinations
        ),
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Security:
    """What the daemon read from --api-tokens-file, --signing-key-file and the cluster key."""

    api_tokens: ApiTokens | None = None
    signing_keys: tuple[bytes, ...] = ()
    cluster_keys: ClusterKeys | None = None


def _security(options: DaemonOptions) -> _Security:
    """Raises TokensFileError or SigningKeyError, with the file name first."""
    api_tokens = None
    if options.api_tokens_file is not None:
        try:
            api_tokens = read_api_tokens(options.api_tokens_file)
        except TokensFileError as error:
            raise TokensFileError(f"{options.api_tokens_file}: {error}") from None
    signing_keys: tuple[bytes, ...] = ()
    if options.signing_key_file is not None:
        try:
            signing_keys = read_signing_keys(options.signing_key_file)
        except SigningKeyError as error:
            raise SigningKeyError(f"{options.signing_key_file}: {error}") from None
    cluster_keys = load_keys(options.cluster_key_file, os.environ)
    return _Security(api_tokens=api_tokens, signing_keys=signing_keys, cluster_keys=cluster_keys)




GC_THRESHOLDS = (50_000, 20, 10)
"""The cyclic garbage collector's thresholds for the daemon (Python's default: 700, 10, 10).

A node keeps up to millions of long-lived objects (its tasks) that form no cycles, and the
default thresholds make the collector walk them again and again while they pile up: that was a
quarter of the CPU of a batch enqueue. Rarer young collections also mean far fewer full ones;
garbage without cycles is still freed at once by reference counting."""


def unauthenticated_warning(interface: str) -> str | None:
    """What to print at start when a node without a cluster key serves on `interface`: None on
    loopback, where only this machine can reach it."""
    if _is_loopback(interface):
        return None
    return (
        f"miyamoto: WARNING: no cluster key, and {interface} is not a loopback address: anyone "
        "who can reach this port can act as a peer (forge task results, join or disrupt the "
        "cluster). Give every node the same --cluster-key-file (or MIYAMOTO_CLUSTER_KEY)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        config = node_config(options)
        security = _security(options)
    except (
        QueueConfigError,
        TokensFileError,
        SigningKeyError,
        ClusterKeyError,
        OSError,
        UnicodeDecodeError,
    ) as error:
        print(f"miyamoto: {error}", file=sys.stderr)
        return 2
    configure_logging(options.log_level, options.log_format)
    if security.cluster_keys is None and (warning := unauthenticated_warning(options.interface)):
        log.warning("%s", warning.removeprefix("miyamoto: "))
    gc.set_threshold(*GC_THRESHOLDS)
    if options.data_dir is None:
        return trio.run(_run_daemon, config, options, security)
    try:
        durable = open_durable(options.data_dir, options.node_id, FsyncMode(options.fsync))
    except (DataDirError, DataFileError) as error:
        print(f"miyamoto: {error}", file=sys.stderr)
        return 1
    try:
        return trio.run(_run_daemon, config, options, security, durable)
    finally:
        durable.close()


def open_durable(path: Path, node_id: str, fsync: FsyncMode) -> OpenedDataDir:
    """The data directory opened for `node_id`, saying what it found in the log."""
    durable = open_data_dir(path, node_id=node_id, fsync=fsync)
    saved = durable.saved
    if saved is None:
        found = "new"
    else:
        members = ", ".join(m.id for m in saved.committed.members) or "none yet"
        found = f"member of cluster {saved.cluster_id}, term {saved.term}, members {members}"
    found += f", {len(durable.tasks)} tasks"
    log.info("data directory %s (%s)", path, found)
    return durable


if __name__ == "__main__":
    sys.exit(main())
