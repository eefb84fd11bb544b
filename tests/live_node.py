"""A whole node (the daemon's `serve_node`) on a free loopback port in a background thread, for
tests whose client is synchronous: a real browser, or schemathesis."""

from __future__ import annotations

import json
import queue
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import trio

from miyamoto.io.node import serve_node
from miyamoto.io.runtime import Deliver
from miyamoto.logic.api_tokens import ApiTokens
from miyamoto.logic.config import NodeConfig

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0


@contextmanager
def node_in_thread(
    config: NodeConfig | None = None,
    *,
    deliver: Deliver | None = None,
    api_tokens: ApiTokens | None = None,
) -> Iterator[int]:
    """Serves a node until the block ends; yields its port. `deliver` replaces its webhook
    client; with `api_tokens` its API needs a token (see serve_node)."""
    config = config or NodeConfig(node_id="127.0.0.1:0")
    started: queue.Queue[int | BaseException] = queue.Queue()
    handles: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            handles["token"] = trio.lowlevel.current_trio_token()
            handles["scope"] = nursery.cancel_scope
            serve = partial(
                serve_node, config, rng=random.Random(7), deliver=deliver, api_tokens=api_tokens
            )
            started.put(await nursery.start(serve))

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # reported to the test through the queue
            started.put(error)

    thread = threading.Thread(target=run, name="miyamoto-node", daemon=True)
    thread.start()
    first = started.get(timeout=START_TIMEOUT_S)
    if isinstance(first, BaseException):
        raise first
    try:
        yield first
    finally:
        trio.from_thread.run_sync(handles["scope"].cancel, trio_token=handles["token"])
        thread.join(timeout=STOP_TIMEOUT_S)
        assert not thread.is_alive(), "the node did not stop"


def call(
    port: int, method: str, path: str, payload: Any = None, *, token: str | None = None
) -> tuple[int, Any]:
    """One API request with a JSON body (if any): the status and the decoded JSON reply."""
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
