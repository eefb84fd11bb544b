"""`/_ready` (and the `miyamoto_ready` gauge) also need the node's store to take writes: a
durable node whose last commit failed (disk full, injected into the store's commit) is not
ready, says why, and is ready again once a commit succeeds. In-process, on loopback."""

from __future__ import annotations

import errno
import json
import random
from functools import partial
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from miyamoto.io.durable.startup import open_data_dir
from miyamoto.io.durable.store import Commit, FsyncMode, StoreUnavailable, describe_write_error
from miyamoto.io.node import serve_node
from miyamoto.io.runtime import Deliver
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import TimerExpired
from miyamoto.logic.node import Node
from miyamoto.logic.readiness import readiness

from .io_raw_http import exchange, request_bytes
from .test_io_cluster import call, free_port, until

WAIT_S = 30


def test_a_store_that_takes_no_writes_makes_a_ready_member_not_ready() -> None:
    node = Node(NodeConfig(node_id="127.0.0.1:1"), random.Random(1), 0)
    node.handle(TimerExpired(), 0)
    view = node.membership.view()
    assert readiness(view, store_problem=None).ready
    full = readiness(view, store_problem="the disk holding /d/x is full")
    assert not full.ready
    assert full.reason == "the task store does not take writes: the disk holding /d/x is full"


async def never_deliver(start: object) -> object:
    raise AssertionError("no task of this test is due")


async def ready_gauge(port: int) -> float:
    request = request_bytes("GET", "/_metrics", b"", (("Connection", "close"),))
    (response,) = await exchange(port, request)
    for family in text_string_to_metric_families(response.body.decode()):
        if family.name == "miyamoto_ready":
            return float(family.samples[0].value)
    raise AssertionError("no miyamoto_ready gauge")


async def test_a_full_disk_makes_the_node_not_ready_until_a_commit_succeeds(
    tmp_path: Path,
) -> None:
    port = free_port()
    node_id = f"127.0.0.1:{port}"
    durable = open_data_dir(tmp_path, node_id=node_id, fsync=FsyncMode.ALWAYS)
    store = durable.store
    disk_full = False
    commit_store = store.commit

    def commit(commit: Commit) -> None:
        if disk_full:
            error = OSError(errno.ENOSPC, "No space left on device")
            raise StoreUnavailable(describe_write_error(store.path, error))
        commit_store(commit)

    store.commit = commit  # type: ignore[method-assign]

    async def enqueue(task_id: str) -> int:
        body = json.dumps({"url": "http://127.0.0.1:9/w", "id": task_id, "countdown": 3600})
        reply = await call(port, "POST", "/q", body.encode(), Content_Type="application/json")
        status: int = reply["_status"]
        return status

    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                deliver: Deliver = never_deliver  # type: ignore[assignment]
                serve = partial(
                    serve_node, NodeConfig(node_id=node_id), durable=durable, deliver=deliver
                )
                await nursery.start(serve)

                async def ready() -> bool:
                    return bool((await call(port, "GET", "/_ready"))["_status"] == 200)

                await until(ready)
                assert await ready_gauge(port) == 1
                disk_full = True
                assert await enqueue("refused") == 507
                not_ready = await call(port, "GET", "/_ready")
                assert not_ready["_status"] == 503
                assert not_ready["status"] == "error"
                assert not_ready["error"] == (
                    f"the task store does not take writes: the disk holding {store.path} is "
                    "full: the task store cannot take more"
                )
                assert await ready_gauge(port) == 0
                disk_full = False  # space freed: the node retries its writes on its own

                await until(ready)
                assert await ready_gauge(port) == 1
                assert await enqueue("taken") == 200
                nursery.cancel_scope.cancel()
    finally:
        durable.close()
