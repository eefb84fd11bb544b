"""Leaving a cluster as a user does it: real node processes on 127.0.0.1 (test_io_cluster.py's
harness). `POST /_cluster/leave`, or SIGTERM with `--leave-on-exit`: the node leaves, the
others show two members long before `member_timeout` could have removed it, and every task is
delivered once."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import trio

from .test_io_cluster import (
    REPLICA_DELAY_S,
    SCENARIO_TIMEOUT_S,
    LocalCluster,
    NodeProcess,
    call,
    enqueue,
    local_cluster,
    scheduled,
    start_receiver,
    until,
)

MEMBER_TIMEOUT_S = 60
"""Far longer than a leave takes: a removal seen sooner was the leave's, not a timeout's."""
TASKS = 30


async def _enqueue_through_all(
    nodes: list[NodeProcess], receiver: Any, countdown_s: float
) -> set[str]:
    replies = [await enqueue(nodes[n % 3], receiver, countdown_s, n) for n in range(TASKS)]
    assert [r for r in replies if not scheduled(r)] == []
    return {r["id"] for r in replies}


async def _stayers_agree(stay: list[NodeProcess]) -> bool:
    expected = sorted(node.node_id for node in stay)
    views = [await call(node.port, "GET", "/_cluster") for node in stay]
    leaders = {view["leader"] for view in views}
    return (
        len(leaders) == 1
        and leaders <= set(expected)
        and all([m["node"] for m in view["members"]] == expected for view in views)
    )


async def _delivered_once(receiver: Any, ids: set[str]) -> None:
    await receiver.wait_for(lambda: set(receiver.ids()) >= ids)
    await trio.sleep(REPLICA_DELAY_S + 1.5)  # a second copy that fires would show up by now
    counts = receiver.ids()
    assert set(counts) == ids
    assert [task_id for task_id, count in counts.items() if count > 1] == []


async def test_the_leader_leaves_through_the_api_and_the_two_others_deliver_everything(
    tmp_path: Path,
) -> None:
    with trio.fail_after(SCENARIO_TIMEOUT_S):
        async with local_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            cluster.extra_args = ("--member-timeout", str(MEMBER_TIMEOUT_S))
            await cluster.start(3)
            leaving = await cluster.leader()
            stay = [node for node in cluster.live if node is not leaving]
            receiver = await start_receiver(nursery)
            ids = await _enqueue_through_all(cluster.live, receiver, 4)

            started = trio.current_time()
            reply = await call(leaving.port, "POST", "/_cluster/leave")
            assert reply["_status"] == 202 and reply["state"] == "leaving", reply

            async def left() -> bool:
                answer = await call(leaving.port, "POST", "/_cluster/leave")
                assert answer["_status"] in (200, 202), answer
                return bool(answer["_status"] == 200)

            await until(left)
            await until(lambda: _stayers_agree(stay))
            took_s = trio.current_time() - started
            view = await call(leaving.port, "GET", "/_cluster")
            assert view["role"] == "left" and view["leave"]["state"] == "left", view
            ready = await call(leaving.port, "GET", "/_ready")
            assert ready["_status"] == 503 and "left the cluster" in ready["error"], ready
            refused = await enqueue(leaving, receiver, 0, 999)
            assert refused["_status"] == 503 and "left the cluster" in refused["error"]
            await _delivered_once(receiver, ids)
            nursery.cancel_scope.cancel()
    print(f"the leader left and the others agreed on two members in {took_s:.2f} s")
    assert took_s < MEMBER_TIMEOUT_S / 2


async def test_sigterm_with_leave_on_exit_leaves_then_exits_0(tmp_path: Path) -> None:
    with trio.fail_after(SCENARIO_TIMEOUT_S):
        async with local_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            cluster.extra_args = (
                "--leave-on-exit", "--member-timeout", str(MEMBER_TIMEOUT_S)
            )  # fmt: skip
            await cluster.start(3)
            leader = await cluster.leader()
            leaving = next(node for node in cluster.live if node is not leader)
            stay = [node for node in cluster.live if node is not leaving]
            receiver = await start_receiver(nursery)
            ids = await _enqueue_through_all(cluster.live, receiver, 4)

            started = trio.current_time()
            leaving.process.send_signal(signal.SIGTERM)
            await leaving.process.wait()
            exited_s = trio.current_time() - started
            await until(lambda: _stayers_agree(stay))
            took_s = trio.current_time() - started
            await _delivered_once(receiver, ids)
            nursery.cancel_scope.cancel()
    _check_left_log(cluster, leaving)
    print(f"SIGTERM: exited after {exited_s:.2f} s, two members after {took_s:.2f} s")
    assert leaving.process.returncode == 0
    assert took_s < MEMBER_TIMEOUT_S / 2


def _check_left_log(cluster: LocalCluster, node: NodeProcess) -> None:
    """(The log file is closed by now: the child wrote it.)"""
    text = node.log_path.read_text(errors="replace")
    assert "left the cluster" in text, text[-2000:]
