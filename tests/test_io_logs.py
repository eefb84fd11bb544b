"""The node's logs: formats, timestamps, rate-limited warnings, what is logged and what never is.

The daemon tests run `python -m miyamoto.io.node` and read its stderr; the cluster test captures
two in-process nodes' records with caplog.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from miyamoto.io.http_server import open_api_listeners, serve_api
from miyamoto.io.logs import RepeatedWarningFilter, configure_logging
from miyamoto.io.node import serve_node
from miyamoto.io.runtime import NodeRuntime
from miyamoto.logic.actions import OutboundRequest, StartDelivery
from miyamoto.logic.events import DeliveryFailed, DeliveryResponded
from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.membership import ClusterTiming
from miyamoto.logic.node import NodeConfig

from .io_raw_http import exchange, request_bytes
from .test_io_runtime import FakeNode

REPO = Path(__file__).resolve().parent.parent
TEST_TIMEOUT_S = 20
SECRET = "s3cret-token-value"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers (pytest's too): put them back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_repeated_warnings_go_out_once_per_interval_with_a_count() -> None:
    now = [100.0]
    stream = io.StringIO()
    logger = logging.getLogger("miyamoto.test.repeated")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatedWarningFilter(interval_s=60, clock_s=lambda: now[0]))
    logger.addHandler(handler)
    try:
        for attempt in range(5):
            logger.warning("peer %s unreachable", f"n{attempt}")
        logger.warning("a different cause")
        logger.error("errors are never held back")
        logger.error("errors are never held back")
        now[0] += 61
        logger.warning("peer %s unreachable", "n9")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert stream.getvalue().splitlines() == [
        "peer n0 unreachable",
        "a different cause",
        "errors are never held back",
        "errors are never held back",
        "peer n9 unreachable (and 4 more like it in the last 61 s)",
    ]


def test_text_lines_start_with_a_utc_timestamp(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "text", stream)
    logging.getLogger("miyamoto.test").info("hello %s", "there")
    logging.getLogger("miyamoto.test").debug("not at info")
    (line,) = stream.getvalue().splitlines()
    assert re.fullmatch(rf"{TIMESTAMP} INFO miyamoto\.test: hello there", line), line


def test_json_lines_are_objects_with_time_level_logger_and_message(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    logging.getLogger("miyamoto.test").debug("quote \" and\nnewline")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("miyamoto.test").exception("it failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert re.fullmatch(TIMESTAMP, first.pop("time"))
    message = "quote \" and\nnewline"
    assert first == {"level": "debug", "logger": "miyamoto.test", "message": message}
    assert second["message"] == "it failed"
    assert "ValueError: boom" in second["exception"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def call(port: int, method: str, target: str, body: bytes = b"", **headers: str) -> Any:
    header_list = tuple((k.replace("_", "-"), v) for k, v in headers.items())
    (response,) = await exchange(
        port, request_bytes(method, target, body, (*header_list, ("Connection", "close")))
    )
    return response


async def wait_for_port(port: int) -> None:
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.05)
            continue
        await stream.aclose()
        return


async def read_until(process: trio.Process, lines: list[str], pattern: str) -> None:
    """Read stderr lines into `lines` until one contains `pattern`."""
    assert process.stderr is not None
    buffer = b""
    while not any(pattern in line for line in lines):
        chunk = await process.stderr.receive_some(65536)
        assert chunk, f"the daemon exited; its output: {lines}"
        buffer += chunk
        *complete, rest = buffer.split(b"\n")
        lines.extend(part.decode() for part in complete)
        buffer = rest


async def test_the_daemon_logs_json_with_access_lines_reloads_on_sighup_and_hides_secrets(
    tmp_path: Path,
) -> None:
    queues = tmp_path / "queues.toml"
    queues.write_text('[queue.emails]\nrate = "10/s"\n')
    port = free_port()
    command = [
        sys.executable, "-m", "miyamoto.io.node", "127.0.0.1", "127.0.0.1", f"--port={port}",
        "--log-format=json", "--access-log", f"--queues={queues}",
    ]  # fmt: skip
    lines: list[str] = []
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(trio.run_process, command, cwd=REPO, stderr=subprocess.PIPE, check=False)
            )
            await read_until(process, lines, "serving on")
            await wait_for_port(port)
            body = json.dumps({"url": f"http://127.0.0.1:9/hook?token={SECRET}", "countdown": 600})
            enqueued = await call(
                port,
                "POST",
                f"/emails?token={SECRET}",
                body.encode(),
                Content_Type="application/json",
                Authorization=f"Bearer {SECRET}",
            )
            assert enqueued.status == 200, enqueued.body
            rate_before = (await call(port, "GET", "/emails")).json()["rate_per_s"]

            queues.write_text('[queue.emails]\nrate = "ten"\n')  # a mistake: kept out
            process.send_signal(signal.SIGHUP)
            await read_until(process, lines, "keeping the previous queue settings")
            rate_after_bad = (await call(port, "GET", "/emails")).json()["rate_per_s"]

            queues.write_text('[queue.emails]\nrate = "2/s"\n')
            process.send_signal(signal.SIGHUP)
            await read_until(process, lines, "queue settings reloaded")
            rate_after_good = (await call(port, "GET", "/emails")).json()["rate_per_s"]

            process.send_signal(signal.SIGTERM)
            await read_until(process, lines, "SIGTERM, shutting down")
            assert await process.wait() == 0
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(re.fullmatch(TIMESTAMP, record["time"]) for record in records)
    messages = [record["message"] for record in records]
    (start,) = [m for m in messages if "serving on" in m]
    assert f"serving on http://127.0.0.1:{port}" in start
    assert "2 replicas" in start and str(queues) in start, start
    assert "POST /emails 200" in " ".join(messages)
    assert any(m.startswith(f"SIGHUP: {queues}:") for m in messages), messages
    assert (rate_before, rate_after_bad, rate_after_good) == (10, 10, 2)
    assert all(SECRET not in line for line in lines), lines


async def test_a_daemon_advertising_another_address_shows_it_to_the_cluster() -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "miyamoto.io.node", "127.0.0.1", "127.0.0.1", f"--port={port}",
        f"--advertise=localhost:{port}", "--heartbeat-interval=0.05",
        "--election-timeout-min=0.3", "--election-timeout-max=0.6", "--member-timeout=2",
    ]  # fmt: skip
    lines: list[str] = []
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(trio.run_process, command, cwd=REPO, stderr=subprocess.PIPE, check=False)
            )
            await read_until(process, lines, "serving on")
            await wait_for_port(port)
            ready = await call(port, "GET", "/_ready")
            cluster = (await call(port, "GET", "/_cluster")).json()
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    (start,) = [line for line in lines if "serving on" in line]
    assert f"node localhost:{port}" in start
    assert ready.json()["node"] == ready.json()["leader"] == f"localhost:{port}"
    assert json.dumps(cluster).count(f"localhost:{port}") >= 1
    assert f"127.0.0.1:{port}" not in json.dumps(cluster)


async def test_members_joining_and_leaving_and_the_leader_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="miyamoto")
    timing = ClusterTiming(
        heartbeat_interval_ms=30,
        election_timeout_min_ms=150,
        election_timeout_max_ms=300,
        member_timeout_ms=600,
        join_retry_min_ms=30,
        join_retry_max_ms=200,
    )

    def logged(text: str) -> bool:
        return any(text in record.getMessage() for record in caplog.records)

    async def until_logged(text: str) -> None:
        while not logged(text):
            await trio.sleep(0.02)

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            first = NodeConfig(node_id="127.0.0.1:0", timing=timing)
            port_a = await nursery.start(partial(serve_node, first, rng=random.Random(1)))
            a = f"127.0.0.1:{port_a}"
            await until_logged(f"leader is {a}")
            second = NodeConfig(node_id="127.0.0.1:0", seed_id=a, timing=timing)
            port_b = await nursery.start(partial(serve_node, second, rng=random.Random(2)))
            await until_logged(f"member joined: 127.0.0.1:{port_b} (2 members)")
            async with trio.open_nursery() as third_nursery:
                third = NodeConfig(node_id="127.0.0.1:0", seed_id=a, timing=timing)
                port_c = await third_nursery.start(
                    partial(serve_node, third, rng=random.Random(3))
                )
                c = f"127.0.0.1:{port_c}"
                await until_logged(f"member joined: {c} (3 members)")
                third_nursery.cancel_scope.cancel()  # C stops; A and B are a majority
            await until_logged(f"member left: {c} (2 members)")
            nursery.cancel_scope.cancel()
    assert logged("election won: this node leads term 1")
    assert logged("this node is a member now (1 members)")


async def test_a_crashing_handler_and_a_crashing_delivery_log_no_query_string(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="miyamoto")

    def crashing_handler(request: HttpRequest) -> HttpResponse:
        raise KeyError("a bug")

    async def crashing_delivery(start: StartDelivery) -> DeliveryResponded:
        raise KeyError("a bug")

    webhook = OutboundRequest(
        scheme="http", host="127.0.0.1", port=9, method="POST",
        target=f"/hook?token={SECRET}", headers=(), body=b"",
    )  # fmt: skip
    node = FakeNode(
        next_actions=[
            StartDelivery(delivery_id=1, request=webhook, timeout_ms=1000, excerpt_bytes_max=10)
        ]
    )
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            listeners, port = await open_api_listeners("127.0.0.1", 0)
            await nursery.start(partial(serve_api, crashing_handler, listeners))
            answer = await call(port, "GET", f"/q?token={SECRET}")
            runtime = NodeRuntime(node, deliver=crashing_delivery)
            await nursery.start(runtime.run)
            await runtime.handle_api_request(HttpRequest(method="POST", target="/q"))
            await node.wait_for(DeliveryFailed)
            nursery.cancel_scope.cancel()
    assert answer.status == 500
    messages = [record.getMessage() for record in caplog.records]
    assert "error answering GET /q" in messages
    assert "error delivering to 127.0.0.1:9" in messages
    assert SECRET not in caplog.text
