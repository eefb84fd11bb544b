"""Every limit the node enforces, in one place, so the errors can say them and docs can list them.

Units are last in the names (TIGER_STYLE).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    request_body_bytes_max: int = 4 * 1024 * 1024
    """An API request body (a single task or a batch)."""
    task_body_bytes_max: int = 1024 * 1024
    """The body one task carries to its webhook (App Engine's and Cloud Tasks' limit too)."""
    request_headers_bytes_max: int = 16 * 1024
    url_chars_max: int = 2048
    queue_name_chars_max: int = 100
    task_id_chars_max: int = 500
    task_headers_count_max: int = 50
    task_header_bytes_max: int = 8 * 1024
    params_count_max: int = 1000
    schedule_ahead_ms_max: int = 30 * 24 * 3600 * 1000
    """How far in the future a task may be scheduled (30 days, as Cloud Tasks)."""
    tasks_max: int = 2_000_000
    """Tasks (of every state) one node holds; an enqueue past it gets 507."""
    task_bytes_max: int = 1024 * 1024 * 1024
    """Bytes of task payload (bodies, header names and values, URLs) one node holds, beside
    `tasks_max`; a copy that would pass it is refused and its enqueue gets 507. The daemon sets
    it from the machine's memory (`--max-task-bytes`); this default is for tests and the
    simulator."""
    batch_tasks_max: int = 1000
    active_queues_max: int = 10_000
    """Queues with tasks on one node at once (names come from clients, so they are bounded)."""
    listing_tasks_max: int = 1000
    """Tasks one page of `GET /{queue}?state=...` lists (its `limit` at most)."""
    response_excerpt_bytes_max: int = 1024
    """How much of a webhook's response body is kept for `GET /{queue}/{id}`."""
    deliveries_in_flight_max: int = 512
    """Deliveries in flight at once on one node; more wait their turn."""
    connections_per_destination_max: int = 64
    delivery_deadline_ms_max: int = 30 * 60 * 1000
    queues_max: int = 1000
    """Queues a queues file may name (its [queue.NAME] tables)."""
    queue_rate_per_s_max: float = 1_000_000.0
    queue_bucket_size_max: int = 1_000_000
    queue_concurrent_max: int = 1_000_000
    """The largest `max_concurrent` a queue may have."""
