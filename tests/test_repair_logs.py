"""Repairs are logged at info when they start and when every copy they sent is acknowledged,
with their counts (NodeWatch reads the node's repair state; it changes nothing)."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest

from miyamoto.io.node_watch import NodeWatch
from miyamoto.logic.events import ApiRequestReceived, TimerExpired
from miyamoto.logic.http import HttpRequest

from .cluster_driver import Cluster
from .test_replication import CONFIG, URL

A, B, C, D = "a:1", "b:1", "c:1", "d:1"


def test_a_repair_is_logged_when_it_starts_and_when_its_copies_are_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="miyamoto.node")
    cluster = Cluster([A, B, C, D], replace(CONFIG, replicas=2))
    ids = []
    for _ in range(30):
        reply = cluster.call(A, "POST", "/q", {"url": URL, "countdown": 100})
        ids.append(reply.json()["id"])
    moved = sum(1 for task_id in ids if D in cluster.holders("q", task_id))
    assert moved > 0
    watches = {name: NodeWatch(cluster.nodes[name]) for name in (A, B, C)}

    # Any event will do; not a timer, whose cluster check this in-memory membership lacks.
    look = ApiRequestReceived(request_id=0, request=HttpRequest(method="GET", target="/_health"))

    def observe() -> None:
        for watch in watches.values():
            watch.observe(look, [], cluster.now_ms)

    cluster.down.add(D)
    for name in (A, B, C):  # D leaves; the repair's copies travel, unacknowledged yet
        cluster.membership[name].set_members((A, B, C))
        cluster.feed(name, TimerExpired())
    observe()
    started = [r.getMessage() for r in caplog.records if "repair started" in r.getMessage()]
    counts = [re.search(r"(\d+) copies of (\d+) tasks", line) for line in started]
    assert sum(int(m.group(2)) for m in counts if m) == moved, started
    assert sum(int(m.group(1)) for m in counts if m) == moved  # one copy each: R is 2
    assert not any("repair done" in r.getMessage() for r in caplog.records)

    cluster.settle()  # the acknowledgements arrive
    observe()
    done = [r.getMessage() for r in caplog.records if "repair done" in r.getMessage()]
    assert len(done) == len(started)
    assert all("0 tasks still short of copies" in line for line in done), done
    observe()  # nothing new: each repair is logged once
    assert len([r for r in caplog.records if "repair" in r.getMessage()]) == 2 * len(started)
