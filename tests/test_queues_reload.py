"""A reloaded queues file (SIGHUP) takes effect at once on queues the node already runs: the
shell feeds the node a `QueuesReconfigured` event, as it feeds every other input."""

from __future__ import annotations

from miyamoto.logic.actions import StartDelivery
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import QueuesReconfigured
from miyamoto.logic.queue_config import QueueConfig, QueuesConfig

from .node_driver import NodeDriver

URL = "http://receiver:9000/work"


def queues(**settings: QueueConfig) -> QueuesConfig:
    return QueuesConfig(default=QueueConfig(), queues=tuple(sorted(settings.items())))


def reload(d: NodeDriver, config: QueuesConfig) -> list[StartDelivery]:
    """Feeds the reload; the deliveries it started at once."""
    before = len(d.deliveries)
    assert d._run(d.node.handle(QueuesReconfigured(config=config), d.now_ms)) == []
    return d.deliveries[before:]


def in_flight_after(d: NodeDriver, tasks: int) -> int:
    for _ in range(tasks):
        d.enqueue_form(task_url=URL)
    return len(d.advance(10))


def test_a_raised_concurrency_cap_lets_more_deliveries_start_without_a_restart() -> None:
    d = NodeDriver(NodeConfig(queues=queues(q=QueueConfig(max_concurrent=1))))
    assert in_flight_after(d, 5) == 1
    assert len(reload(d, queues(q=QueueConfig(max_concurrent=3)))) == 2  # 3 in flight now


def test_a_removed_rate_limit_lets_the_waiting_line_go_at_once() -> None:
    d = NodeDriver(NodeConfig(queues=queues(q=QueueConfig(rate_per_s=1, bucket_size=1))))
    assert in_flight_after(d, 5) == 1
    assert len(reload(d, queues())) == 4
    known = d.node.queues.known("q")
    assert known is not None and known.bucket is None and known.rate_share is None


def test_queues_made_after_a_reload_get_the_new_settings() -> None:
    d = NodeDriver(NodeConfig())
    reload(d, queues(fresh=QueueConfig(max_concurrent=2)))
    for _ in range(4):
        d.enqueue_form(task_url=URL, queue="fresh")
    assert len(d.advance(10)) == 2
