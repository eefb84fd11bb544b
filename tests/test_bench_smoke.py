"""Smoke tests of the benchmark harness: the tiniest runs, asserting shape and counts, never speed.

Each starts real processes on 127.0.0.1 and stops them; all are bounded by time.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time

import pytest

from bench.fast_receiver import parse_eta_s
from bench.httpc import receiver_stats
from bench.load import Load, drive, wrk_available
from bench.loadgen import build_request
from bench.procs import REPO_ROOT, Launcher, free_port, python_module_command
from bench.scenarios import SCENARIOS
from bench.table import Row, render_text

FORM_TASK = b"task.url=http://127.0.0.1:9/w&task.countdown=86400&x=1"


def _bare_server(launcher: Launcher) -> int:
    port = free_port()
    service = launcher.start(
        "bare-server", python_module_command("bench.bare_server", ["--port", str(port)])
    )
    service.wait_for_port(port)
    return port


def _receiver(launcher: Launcher, *extra: str) -> int:
    port = free_port()
    service = launcher.start(
        "receiver", python_module_command("bench.fast_receiver", ["--port", str(port), *extra])
    )
    service.wait_for_port(port)
    return port


def test_own_loadgen_counts_the_bare_servers_answers() -> None:
    load = Load(
        path="/bench",
        body=FORM_TASK,
        content_type="application/x-www-form-urlencoded",
        connections=4,
    )
    with Launcher() as launcher:
        port = _bare_server(launcher)
        result = drive(launcher, load, [port], generator="own", duration_s=0.3, workers=2)
    assert result.ok > 0
    assert result.responses == result.ok
    assert result.errors == ""
    assert result.window_s > 0
    assert result.gen_cpu_s > 0  # the generator's CPU is read from wait4, so it is never 0


def test_a_load_bounded_by_count_sends_exactly_that_many_on_new_connections() -> None:
    load = Load(
        path="/bench",
        body=FORM_TASK,
        content_type="application/x-www-form-urlencoded",
        connections=3,
        new_connection=True,
    )
    with Launcher() as launcher:
        port = _bare_server(launcher)
        result = drive(launcher, load, [port], generator="own", duration_s=20, requests_max=25)
    assert (result.ok, result.errors) == (25, "")


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed")
def test_wrk_counts_the_bare_servers_answers() -> None:
    load = Load(
        path="/bench",
        body=FORM_TASK,
        content_type="application/x-www-form-urlencoded",
        connections=4,
    )
    with Launcher() as launcher:
        port = _bare_server(launcher)
        result = drive(launcher, load, [port], generator="wrk", duration_s=1)
    assert result.generator == "wrk"
    assert result.ok > 0
    assert result.errors == ""


def test_bare_client_delivers_every_request_once_to_the_receiver() -> None:
    with Launcher() as launcher:
        port = _receiver(launcher)
        finished = launcher.run(
            "bare-client",
            python_module_command(
                "bench.bare_client", ["--port", str(port), "--count", "50", "--connections", "4"]
            ),
            timeout_s=20,
        )
        stats = receiver_stats(port)
    assert finished.returncode == 0, finished.stderr
    assert '"ok": 50' in finished.stdout
    assert (stats["count"], stats["unique_ids"]) == (50, 50)


def test_receiver_measures_lateness_from_x_task_eta() -> None:
    with Launcher() as launcher:
        port = _receiver(launcher, "--record-lateness")
        eta_s = time.time() - 1.0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request(
                "POST", "/w", body=b"x=1", headers={"X-Task-Id": "a", "X-Task-ETA": f"{eta_s:.3f}"}
            )
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        stats = receiver_stats(port)
    assert stats["count"] == 1
    [lateness_ms] = stats["lateness_ms"]
    assert 990 <= lateness_ms < 10_000


def test_eta_formats_the_receiver_reads() -> None:
    assert parse_eta_s(b"1700000000.25") == 1700000000.25
    assert parse_eta_s(b"1700000000250") == 1700000000.25  # milliseconds
    assert parse_eta_s(b"2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_eta_s(b"Tue, 14 Nov 2023 22:13:20 GMT") == 1700000000.0
    assert parse_eta_s(b"soon") is None


def test_table_lines_up_columns_and_prints_the_ratio() -> None:
    text = render_text(
        [
            Row(scenario="s", system="bare", result="10 req/s", ratio=1.0),
            Row(scenario="s", system="node", result="5 tasks/s", ratio=0.5, goal="≥ 0.9x: MISSED"),
        ]
    )
    header, rule, bare, node = text.splitlines()
    assert header.split()[:4] == ["scenario", "system", "result", "ratio"]
    assert header.index("ratio") == bare.index("1.00") == node.index("0.50")
    assert set(rule) <= {"-", " "}


def test_python_m_bench_quick_completes_and_prints_a_table_with_ratios() -> None:
    # The whole tour, every scenario (the cluster too), with short measuring windows: CI checks
    # that it completes and prints its table, never its numbers.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--loadgen", "own", "--duration-s", "0.5"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(SCENARIOS)} scenario(s)" in done.stdout
    assert "cluster 3 nodes R=2" in done.stdout
    assert "node, tokens+signing on" in done.stdout
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("scenario"))
    assert "ratio" in header and "CPU ratio" in header and "load CPU" in header
    bare = next(line for line in lines if "bare trio+h11 server" in line)
    assert "req/s" in bare and "1.00" in bare
    node = next(line for line in lines if "miyamoto node" in line)
    assert "tasks/s" in node or "skipped" in node


def test_own_loadgen_sends_the_extra_headers_it_is_given() -> None:
    request = build_request(
        host="127.0.0.1",
        port=80,
        path="/bench",
        body=b"x=1",
        content_type="text/plain",
        headers=["Authorization: Bearer t0k3n"],
    )
    head, _, body = request.partition(b"\r\n\r\n")
    assert b"\r\nAuthorization: Bearer t0k3n\r\n" in head + b"\r\n" and body == b"x=1"
