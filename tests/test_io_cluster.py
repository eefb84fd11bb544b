"""The cluster as a user runs it: real node processes on 127.0.0.1, issue 3's four scenarios.

Each node is `python -m miyamoto.io.node 127.0.0.1 127.0.0.1 --port P [--seed 127.0.0.1:P0]`, its
output in a log file that is printed when a test fails. Webhooks go to a raw receiver in the test
process. Every wait is bounded, and generous: CI has 2 shared cores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import pytest
import trio

from miyamoto.io.runtime import wall_clock_ms
from miyamoto.logic.ring import placement

from .io_raw_http import RawMessage, RawReceiver, exchange, http_response, request_bytes

REPO = Path(__file__).resolve().parent.parent
REPLICA_DELAY_S = 2
SCENARIO_TIMEOUT_S = 90
FORM = "application/x-www-form-urlencoded"

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="runs node processes and kills them with SIGKILL"
)


# -- node processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class NodeProcess:
    port: int
    process: trio.Process
    log_path: Path
    log_file: BinaryIO

    @property
    def node_id(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


async def call(port: int, method: str, target: str, body: bytes = b"", **headers: str) -> Any:
    """One API request on its own connection; the JSON reply with `_status` added."""
    header_list = tuple((k.replace("_", "-"), v) for k, v in headers.items())
    header_list += (("Connection", "close"),)
    (response,) = await exchange(port, request_bytes(method, target, body, header_list))
    payload = response.json()
    if isinstance(payload, dict):
        payload["_status"] = response.status
    return payload


async def until(condition: Callable[[], Awaitable[bool]], *, poll_s: float = 0.1) -> None:
    """Poll `condition` (the caller's fail_after bounds it): node state has no event to await."""
    while not await condition():
        await trio.sleep(poll_s)


@dataclass
class LocalCluster:
    log_dir: Path
    nodes: list[NodeProcess] = field(default_factory=list)
    extra_args: tuple[str, ...] = ()
    """More options for every node's command line."""

    async def start_node(self, seed: NodeProcess | None = None) -> NodeProcess:
        port = free_port()
        command = [sys.executable, "-m", "miyamoto.io.node", "127.0.0.1", "127.0.0.1"]
        command += ["--port", str(port), "--replica-delay", str(REPLICA_DELAY_S), "--in-memory"]
        if seed is not None:
            command += ["--seed", seed.node_id]
        command += self.extra_args
        log_path = self.log_dir / f"node-{port}.log"
        log_file = log_path.open("wb")
        process = await trio.lowlevel.open_process(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
        node = NodeProcess(port=port, process=process, log_path=log_path, log_file=log_file)
        self.nodes.append(node)

        async def serving() -> bool:
            assert node.alive, f"node {node.node_id} exited: {log_path.read_text()}"
            try:
                return bool((await call(port, "GET", "/_health"))["_status"] == 200)
            except OSError:
                return False

        await until(serving, poll_s=0.05)
        return node

    async def start(self, count: int) -> list[NodeProcess]:
        """`count` nodes, the first its own seed, the others joining through it; all converged."""
        first = await self.start_node()
        for _ in range(count - 1):
            await self.start_node(seed=first)
        await self.converged()
        return self.live

    @property
    def live(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.alive]

    async def views(self) -> dict[str, Any]:
        return {node.node_id: await call(node.port, "GET", "/_cluster") for node in self.live}

    async def converged(self) -> dict[str, Any]:
        """Wait until every live node sees the same leader and exactly the live nodes, alive."""
        expected = sorted(node.node_id for node in self.live)
        views: dict[str, Any] = {}

        async def agreed() -> bool:
            nonlocal views
            views = await self.views()
            leaders = {view["leader"] for view in views.values()}
            return (
                len(leaders) == 1
                and None not in leaders
                and all(
                    [m["node"] for m in view["members"]] == expected
                    and all(m["state"] == "alive" for m in view["members"])
                    for view in views.values()
                )
            )

        await until(agreed)
        return views

    async def leader(self) -> NodeProcess:
        views = await self.converged()
        (leader_id,) = {view["leader"] for view in views.values()}
        return next(node for node in self.live if node.node_id == leader_id)

    async def kill(self, node: NodeProcess) -> None:
        """kill -9: no goodbye, no flushing; its memory is gone. Returns once it is dead."""
        node.process.kill()
        await node.process.wait()

    async def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                node.process.kill()
            await node.process.wait()
            node.log_file.close()

    def print_logs(self) -> None:
        for node in self.nodes:
            lines = node.log_path.read_text(errors="replace").splitlines()
            print(f"---- {node.node_id} (exit {node.process.returncode}), last lines ----")
            print("\n".join(lines[-40:]))


@asynccontextmanager
async def local_cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    cluster = LocalCluster(log_dir=tmp_path)
    try:
        yield cluster
    except BaseException:
        cluster.print_logs()  # pytest shows it with the failure
        raise
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop()


# -- the webhook receiver -------------------------------------------------------------------------


@dataclass
class Delivery:
    task_id: str
    arrived_ms: int
    node_port: int | None
    """The node that delivered it, when the receiver could tell (Linux: from /proc)."""


class RecordingReceiver(RawReceiver):
    """A raw receiver that notes when each task arrived and which node process sent it."""

    def __init__(self, *, answer_after_s: float, nodes: Sequence[NodeProcess]) -> None:
        super().__init__(answer=self._answer)
        self.answer_after_s = answer_after_s
        self.nodes = nodes
        self.deliveries: list[Delivery] = []
        self._sender_of_connection: dict[int, int | None] = {}

    async def _answer(self, request: RawMessage, receiver: RawReceiver) -> bytes:
        task_id = request.header("x-task-id") or ""
        sender = self._sender_of_connection.get(request.connection)
        self.deliveries.append(Delivery(task_id, wall_clock_ms(), sender))
        if self.answer_after_s:
            await trio.sleep(self.answer_after_s)
        return http_response(200, b"ok")

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        # Before any await: the index the base class is about to give this connection.
        client_port = stream.socket.getpeername()[1]
        owner = self._node_owning(client_port, self.port)
        self._sender_of_connection[self.connections_accepted] = owner
        await super()._serve_connection(stream)

    def _node_owning(self, local_port: int, remote_port: int) -> int | None:
        """The port of the node process whose socket is local_port -> remote_port (Linux only)."""
        inode = socket_inode(local_port, remote_port)
        if inode is None:
            return None
        for node in self.nodes:
            try:
                fds = os.listdir(f"/proc/{node.process.pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{node.process.pid}/fd/{fd}") == f"socket:[{inode}]":
                        return node.port
                except OSError:
                    continue
        return None

    def ids(self) -> Counter[str]:
        return Counter(delivery.task_id for delivery in self.deliveries)


def socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the IPv4 TCP socket from `local_port` to `remote_port`, from /proc/net/tcp."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if (
            int(local.split(":")[1], 16) == local_port
            and int(remote.split(":")[1], 16) == remote_port
            and inode != "0"
        ):
            return inode
    return None


async def start_receiver(
    nursery: trio.Nursery, *, answer_after_s: float = 0.0, nodes: Sequence[NodeProcess] = ()
) -> RecordingReceiver:
    receiver = RecordingReceiver(answer_after_s=answer_after_s, nodes=nodes)
    await nursery.start(receiver.serve)
    return receiver


async def enqueue(node: NodeProcess, receiver: RawReceiver, countdown_s: float, n: int) -> Any:
    url = quote(f"http://127.0.0.1:{receiver.port}/work")
    body = f"task.url={url}&task.countdown={countdown_s}&n={n}".encode()
    return await call(node.port, "POST", "/jobs", body, Content_Type=FORM)


def scheduled(reply: Any) -> bool:
    return bool(reply["_status"] == 200 and reply["status"] == "scheduled")


# -- the scenarios --------------------------------------------------------------------------------


async def test_three_nodes_deliver_300_tasks_once_each_and_share_the_first_copies(
    tmp_path: Path,
) -> None:
    with trio.fail_after(SCENARIO_TIMEOUT_S):
        async with local_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            nodes = await cluster.start(3)
            receiver = await start_receiver(nursery, nodes=nodes)
            replies: list[Any] = []

            async def enqueue_through(node: NodeProcess, first: int) -> None:
                for n in range(first, first + 100):
                    replies.append(await enqueue(node, receiver, 2, n))

            async with trio.open_nursery() as clients:
                for index, node in enumerate(nodes):
                    clients.start_soon(enqueue_through, node, index * 100)
            assert [reply for reply in replies if not scheduled(reply)] == []
            ids = {reply["id"] for reply in replies}
            await receiver.wait_for(lambda: set(receiver.ids()) >= ids)
            # Long enough for any second copy to fire, were it not told the task is done.
            await trio.sleep(REPLICA_DELAY_S + 1.5)
            nursery.cancel_scope.cancel()
    assert {reply["replicas"] for reply in replies} == {2}
    assert len(ids) == 300
    counts = receiver.ids()
    assert set(counts) == ids
    assert [task_id for task_id, count in counts.items() if count > 1] == []
    eta_ms = {reply["id"]: round(reply["eta"] * 1000) for reply in replies}
    assert [d for d in receiver.deliveries if d.arrived_ms < eta_ms[d.task_id]] == []  # not early
    by_node = Counter(delivery.node_port for delivery in receiver.deliveries)
    print(f"deliveries by node port: {dict(by_node)}")
    if sys.platform == "linux":
        assert None not in by_node, by_node  # every delivery traced to the node that made it
        assert len(by_node) == 3, by_node
        assert max(by_node.values()) <= 0.45 * 300, by_node


async def test_killing_the_holder_of_copy_0_delivers_the_task_once_a_replica_delay_later(
    tmp_path: Path,
) -> None:
    with trio.fail_after(SCENARIO_TIMEOUT_S):
        async with local_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            nodes = await cluster.start(3)
            receiver = await start_receiver(nursery)
            reply = await enqueue(nodes[0], receiver, 3, 1)
            assert scheduled(reply), reply
            # Copy k goes to the k-th member in the placement order of "queue/id".
            members = sorted(node.node_id for node in nodes)
            holder_id = placement(f"jobs/{reply['id']}", members)[0]
            holder = next(node for node in nodes if node.node_id == holder_id)
            await cluster.kill(holder)
            await receiver.wait_for(lambda: len(receiver.deliveries) == 1)
            # A third copy (if a repair made one) or a confused replica would show up here.
            await trio.sleep(REPLICA_DELAY_S + 3)
            nursery.cancel_scope.cancel()
    (delivery,) = receiver.deliveries
    assert delivery.task_id == reply["id"]
    eta_ms = round(reply["eta"] * 1000)
    late_ms = delivery.arrived_ms - eta_ms
    print(f"delivered {late_ms} ms after the ETA, copy 0's holder killed")
    assert REPLICA_DELAY_S * 1000 <= late_ms <= REPLICA_DELAY_S * 1000 + 2_000, late_ms


async def test_after_the_leader_dies_a_new_one_leads_a_node_joins_and_all_deliver(
    tmp_path: Path,
) -> None:
    with trio.fail_after(SCENARIO_TIMEOUT_S):
        async with local_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            await cluster.start(3)
            receiver = await start_receiver(nursery)
            old_leader = await cluster.leader()
            await cluster.kill(old_leader)
            killed_s = trio.current_time()
            survivors = cluster.live

            async def new_leader() -> bool:
                views = [await call(node.port, "GET", "/_cluster") for node in survivors]
                leaders = {view["leader"] for view in views}
                return len(leaders) == 1 and leaders != {None} and leaders != {old_leader.node_id}

            await until(new_leader)
            elected_after_s = trio.current_time() - killed_s
            joiner = await cluster.start_node(seed=survivors[-1])
            await cluster.converged()  # the dead leader removed, the joiner in, on every node
            live = cluster.live
            replies = [await enqueue(node, receiver, 0.5, n) for n, node in enumerate(live)]
            assert [reply for reply in replies if not scheduled(reply)] == []
            ids = {reply["id"] for reply in replies}
            await receiver.wait_for(lambda: set(receiver.ids()) >= ids)
            await trio.sleep(REPLICA_DELAY_S + 1.5)
            nursery.cancel_scope.cancel()
    print(f"new leader {elected_after_s:.2f} s after the old one was killed")
    assert elected_after_s < 10
    assert joiner in live and old_leader not in live and len(live) == 3
    assert receiver.ids() == Counter({task_id: 1 for task_id in ids})


async def test_a_receiver_taking_3_s_to_answer_gets_exactly_one_delivery(tmp_path: Path) -> None:
    with trio.fail_after(SCENARIO_TIMEOUT_S):
        async with local_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            nodes = await cluster.start(3)
            receiver = await start_receiver(nursery, answer_after_s=3.0)
            reply = await enqueue(nodes[1], receiver, 1, 1)
            assert scheduled(reply), reply
            await receiver.wait_for(lambda: len(receiver.deliveries) == 1)
            # The replica is due REPLICA_DELAY_S after the ETA, while the answer is still 1 s
            # away; the claim must hold it back. Wait past the answer and a delay more.
            await trio.sleep(3.0 + REPLICA_DELAY_S + 1.0)
            task = await call(nodes[2].port, "GET", f"/jobs/{reply['id']}")
            nursery.cancel_scope.cancel()
    assert [d.task_id for d in receiver.deliveries] == [reply["id"]]
    assert task["state"] == "succeeded" and task["attempts"] == 1, task
