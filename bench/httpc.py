"""A small blocking HTTP client for the harness's own requests (probes, stats, preloading).

http.client, not urllib: urllib would route 127.0.0.1 through a proxy named in the environment.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from .procs import BenchError


class Client:
    """One kept-alive connection to 127.0.0.1:port; reconnects once if the server closed it."""

    def __init__(self, port: int, timeout_s: float = 30.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, path: str, body: bytes = b"", content_type: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type} if content_type else {}
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout_s
                )
            try:
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        return self.request("POST", path, body, content_type)


def get_json(port: int, path: str, timeout_s: float = 10.0) -> Any:
    with Client(port, timeout_s) as client:
        status, body = client.request("GET", path)
    if status != 200:
        raise BenchError(f"GET {path} on port {port}: HTTP {status}: {body[:200]!r}")
    return json.loads(body)


def receiver_stats(port: int) -> dict[str, Any]:
    stats: dict[str, Any] = get_json(port, "/_bench/stats")
    return stats


def reset_receiver(port: int) -> None:
    with Client(port) as client:
        client.request("POST", "/_bench/reset")


def wait_for_quiet(
    port: int, at_least: int, timeout_s: float, *, quiet_s: float = 0.5, poll_s: float = 0.05
) -> dict[str, Any]:
    """Poll the receiver until it has counted `at_least` and then nothing new for `quiet_s`.

    For loads whose exact size is unknown (a generator stopped by time may leave a few accepted
    requests uncounted). Bounded by `timeout_s`; returns the last stats.
    """
    deadline = time.monotonic() + timeout_s
    last_count = -1
    last_change = time.monotonic()
    while True:
        stats = receiver_stats(port)
        now = time.monotonic()
        if stats["count"] != last_count:
            last_count, last_change = stats["count"], now
        if (stats["count"] >= at_least and now - last_change >= quiet_s) or now > deadline:
            return stats
        time.sleep(poll_s)


def wait_for_count(
    port: int, count: int, timeout_s: float, *, key: str = "count", poll_s: float = 0.05
) -> dict[str, Any]:
    """Poll the receiver until stats[key] reaches `count` or `timeout_s` passes; the last stats.

    key="unique_ids" counts distinct X-Task-Ids, so duplicate deliveries do not end the wait.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        stats = receiver_stats(port)
        if stats[key] >= count or time.monotonic() > deadline:
            return stats
        time.sleep(poll_s)
