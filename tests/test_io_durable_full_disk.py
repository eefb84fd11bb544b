"""A durable node whose disk fails (full, I/O error): enqueues answer 507 with the JSON error
body, nothing unconfirmed is acknowledged, and the node keeps serving what it has
(docs/durability.md). The error is injected into the store's commit; the node runs in-process
on a free loopback port."""

from __future__ import annotations

import errno
import json
from functools import partial
from pathlib import Path

import trio

from miyamoto.io.durable.startup import open_data_dir
from miyamoto.io.durable.store import Commit, FsyncMode, StoreUnavailable, describe_write_error
from miyamoto.io.node import serve_node
from miyamoto.io.runtime import Deliver
from miyamoto.logic.config import NodeConfig

from .test_io_cluster import call, free_port, until

WAIT_S = 30


async def never_deliver(start: object) -> object:
    raise AssertionError("no task of this test is due")


async def test_a_full_disk_answers_507_and_the_node_keeps_serving(tmp_path: Path) -> None:
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

    async def enqueue(task_id: str) -> dict[str, object]:
        body = json.dumps({"url": "http://127.0.0.1:9/w", "id": task_id, "countdown": 3600})
        reply: dict[str, object] = await call(
            port, "POST", "/q", body.encode(), Content_Type="application/json"
        )
        return reply

    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                deliver: Deliver = never_deliver  # type: ignore[assignment]
                serve = partial(
                    serve_node, NodeConfig(node_id=node_id), durable=durable, deliver=deliver
                )
                await nursery.start(serve)

                async def member() -> bool:
                    return (await enqueue("first"))["_status"] == 200

                await until(member)
                disk_full = True
                reply = await enqueue("second")
                assert reply["_status"] == 507, reply
                assert reply["status"] == "error"
                assert reply["error"] == (
                    f"not stored: the disk holding {store.path} is full: the task store "
                    "cannot take more"
                )
                # What it has, it still serves.
                assert (await call(port, "GET", "/_health"))["_status"] == 200
                assert (await call(port, "GET", "/q/first"))["state"] == "scheduled"
                disk_full = False  # space freed: enqueues are acknowledged again
                assert (await enqueue("third"))["status"] == "scheduled"
                nursery.cancel_scope.cancel()
        # The copy the failed commit missed was written by a later one.
        assert sorted(t.id for t in store.load_tasks()) == ["first", "second", "third"]
    finally:
        durable.close()
