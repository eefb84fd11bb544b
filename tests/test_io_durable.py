"""Durable nodes as a user runs them: real processes on 127.0.0.1, each with its --data-dir,
stopped (SIGTERM or kill -9) and started again with the same command (docs/durability.md).

Every wait is bounded and generous (CI has 2 shared cores), except the one the issue promises:
a two-node cluster has a leader again within 5 s of its second node's restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import trio

from .test_io_cluster import call, free_port, until

REPO = Path(__file__).resolve().parent.parent
SCENARIO_TIMEOUT_S = 90
LEADER_AGAIN_S = 5

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses flock and SIGKILL")


@dataclass
class Node:
    port: int
    command: list[str]
    log_path: Path
    process: trio.Process | None = None
    log_file: BinaryIO | None = None

    @property
    def node_id(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Nodes:
    tmp_path: Path
    nodes: list[Node] = field(default_factory=list)
    starts: int = 0

    def define(self, *, seed: Node | None = None, data_dir: Path | None = None) -> Node:
        """A node's command (its first command, used again for every restart)."""
        port = free_port()
        command = [sys.executable, "-m", "miyamoto.io.node", "127.0.0.1", "127.0.0.1"]
        command += ["--port", str(port), "--data-dir", str(data_dir or self.tmp_path / str(port))]
        if seed is not None:
            command += ["--seed", seed.node_id]
        node = Node(port=port, command=command, log_path=self.tmp_path / f"node-{port}.log")
        self.nodes.append(node)
        return node

    async def start(self, node: Node) -> None:
        """Start `node` (again) and wait until it serves."""
        assert node.process is None or node.process.returncode is not None
        self.starts += 1
        node.log_file = (self.tmp_path / f"node-{node.port}-{self.starts}.log").open("wb")
        node.log_path = Path(node.log_file.name)
        node.process = await trio.lowlevel.open_process(
            node.command,
            cwd=self.tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=node.log_file,
            stderr=node.log_file,
        )

        async def serving() -> bool:
            assert node.process is not None
            assert node.process.returncode is None, node.log_path.read_text()
            try:
                return bool((await call(node.port, "GET", "/_health"))["_status"] == 200)
            except OSError:
                return False

        await until(serving, poll_s=0.05)

    async def stop(self, node: Node, sig: signal.Signals = signal.SIGKILL) -> None:
        assert node.process is not None
        node.process.send_signal(sig)
        await node.process.wait()

    async def views(self, nodes: list[Node]) -> dict[str, Any]:
        return {n.node_id: await call(n.port, "GET", "/_cluster") for n in nodes}

    async def converged(self, nodes: list[Node]) -> dict[str, Any]:
        """Until every node in `nodes` follows one leader and lists exactly `nodes`, alive."""
        expected = sorted(n.node_id for n in nodes)
        views: dict[str, Any] = {}

        async def agreed() -> bool:
            nonlocal views
            try:
                views = await self.views(nodes)
            except OSError:
                return False
            leaders = {v["leader"] for v in views.values()}
            return (
                len(leaders) == 1
                and None not in leaders
                and all(
                    [m["node"] for m in v["members"]] == expected
                    and all(m["state"] == "alive" for m in v["members"])
                    for v in views.values()
                )
            )

        await until(agreed)
        return views

    def cleanup(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.returncode is None:
                node.process.kill()
            if node.log_file is not None:
                node.log_file.close()

    def print_logs(self) -> None:
        for log in sorted(self.tmp_path.glob("node-*.log")):
            print(f"---- {log.name} ----")
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))


@asynccontextmanager
async def durable_nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    nodes = Nodes(tmp_path)
    try:
        with trio.fail_after(SCENARIO_TIMEOUT_S):
            yield nodes
    except BaseException:
        nodes.print_logs()
        raise
    finally:
        nodes.cleanup()
        with trio.CancelScope(shield=True):
            for node in nodes.nodes:
                if node.process is not None:
                    await node.process.wait()


def run_node(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miyamoto.io.node", "127.0.0.1", "127.0.0.1", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- restarts -------------------------------------------------------------------------------------


async def test_a_founder_restarted_with_its_first_command_rejoins_its_cluster(
    tmp_path: Path,
) -> None:
    async with durable_nodes(tmp_path) as nodes:
        founder = nodes.define()
        other = nodes.define(seed=founder)
        await nodes.start(founder)
        await nodes.start(other)
        await nodes.converged([founder, other])
        await nodes.stop(founder, signal.SIGTERM)
        await nodes.start(founder)  # `... 127.0.0.1 127.0.0.1 --port P`: itself as the seed
        views = await nodes.converged([founder, other])
    # One cluster: had it founded a new one, each would lead its own and list only itself.
    assert views[other.node_id]["stats"]["dropped_foreign"] == 0


async def test_two_nodes_one_stopped_and_started_again_have_a_leader_within_5_s(
    tmp_path: Path,
) -> None:
    async with durable_nodes(tmp_path) as nodes:
        first = nodes.define()
        second = nodes.define(seed=first)
        await nodes.start(first)
        await nodes.start(second)
        await nodes.converged([first, second])
        await nodes.stop(second, signal.SIGTERM)
        await trio.sleep(3)  # the survivor steps down: it hears no majority of two
        assert (await call(first.port, "GET", "/_cluster"))["leader"] is None
        started_s = trio.current_time()
        await nodes.start(second)
        with trio.fail_after(LEADER_AGAIN_S):
            await nodes.converged([first, second])
        took_s = trio.current_time() - started_s
    print(f"leader again {took_s:.2f} s after the restart command")


async def test_three_nodes_killed_and_restarted_with_their_first_commands_are_one_cluster(
    tmp_path: Path,
) -> None:
    async with durable_nodes(tmp_path) as nodes:
        first = nodes.define()
        others = [nodes.define(seed=first), nodes.define(seed=first)]
        await nodes.start(first)
        for node in others:
            await nodes.start(node)
        everyone = [first, *others]
        before = await nodes.converged(everyone)
        for node in everyone:
            await nodes.stop(node, signal.SIGKILL)
        for node in everyone:
            await nodes.start(node)
        after = await nodes.converged(everyone)
    assert {v["epoch"] for v in after.values()} == {before[first.node_id]["epoch"]}, (
        "the same member list: nobody was removed and let in again"
    )
    assert all(v["term"] > before[first.node_id]["term"] for v in after.values())


async def test_a_node_joins_through_the_first_seed_of_its_list_that_answers(
    tmp_path: Path,
) -> None:
    async with durable_nodes(tmp_path) as nodes:
        first = nodes.define()
        joiner = nodes.define()
        nobody = f"127.0.0.1:{free_port()}"  # no node listens there
        joiner.command += ["--seed", f"{nobody},{first.node_id}"]
        await nodes.start(first)
        await nodes.start(joiner)
        await nodes.converged([first, joiner])


# -- refusals -------------------------------------------------------------------------------------


async def test_a_second_process_on_a_data_directory_exits_naming_it_and_the_holder(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "shared"
    async with durable_nodes(tmp_path) as nodes:
        holder = nodes.define(data_dir=data_dir)
        await nodes.start(holder)
        assert holder.process is not None
        second = await trio.to_thread.run_sync(
            run_node, ["--port", str(free_port()), "--data-dir", str(data_dir)], tmp_path
        )
    assert second.returncode == 1
    assert f"the data directory {data_dir} is in use" in second.stderr
    assert f"pid {holder.process.pid}" in second.stderr


def test_a_corrupt_data_file_stops_the_node_naming_the_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "miyamoto.sqlite3").write_bytes(os.urandom(8192))
    result = run_node(["--port", str(free_port()), "--data-dir", str(data_dir)], tmp_path)
    assert result.returncode == 1
    assert f"{data_dir / 'miyamoto.sqlite3'}: not a readable SQLite database" in result.stderr
    assert "serving" not in result.stderr


async def test_another_clusters_data_directory_stops_the_node(tmp_path: Path) -> None:
    async with durable_nodes(tmp_path) as nodes:
        theirs = nodes.define()
        await nodes.start(theirs)  # founds its own cluster
        await nodes.stop(theirs, signal.SIGTERM)
    data_dir = tmp_path / str(theirs.port)
    result = await trio.to_thread.run_sync(
        run_node, ["--port", str(free_port()), "--data-dir", str(data_dir)], tmp_path
    )
    assert result.returncode == 1
    assert f"belongs to node {theirs.node_id} of cluster" in result.stderr
    assert "serving" not in result.stderr


def test_the_default_data_directory_is_under_the_working_directory(tmp_path: Path) -> None:
    port = free_port()
    with socket_taken(port):
        result = run_node(["--port", str(port)], tmp_path)
    # It could not serve (the port is taken), but it had locked and created its directory.
    assert result.returncode == 1
    assert (tmp_path / "miyamoto-data" / f"127.0.0.1-{port}" / "miyamoto.sqlite3").is_file()


@contextmanager
def socket_taken(port: int) -> Iterator[None]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        yield


# -- what /_cluster says about the store ---------------------------------------------------------


async def test_cluster_view_shows_the_data_directory_and_commit_latency(tmp_path: Path) -> None:
    async with durable_nodes(tmp_path) as nodes:
        node = nodes.define()
        await nodes.start(node)
        body = b'{"url": "http://127.0.0.1:9/", "countdown": 3600}'
        before_ms = time.time_ns() // 1_000_000
        for _ in range(3):
            reply = await call(node.port, "POST", "/q", body, Content_Type="application/json")
            assert reply["status"] == "scheduled", reply
        store = (await call(node.port, "GET", "/_cluster"))["durability"]
    assert store["data_dir"] == str(tmp_path / str(node.port))
    assert store["fsync"] == "always"
    assert store["commits"] >= 4, store  # the membership's first, then one per enqueue at least
    assert store["last_commit_ms"] >= before_ms
    latency = store["commit_latency"]
    assert latency["commits"] == min(store["commits"], 100)
    assert 0 < latency["p50_ms"] <= latency["max_ms"]
    assert store["last_error"] is None


async def test_an_in_memory_node_says_it_keeps_nothing_on_disk(tmp_path: Path) -> None:
    async with durable_nodes(tmp_path) as nodes:
        node = nodes.define()
        node.command[node.command.index("--data-dir") : node.command.index("--data-dir") + 2] = [
            "--in-memory"
        ]
        await nodes.start(node)
        view = await call(node.port, "GET", "/_cluster")
    assert view["durability"] == {"data_dir": None}
