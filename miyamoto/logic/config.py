"""How a node is configured: identity, limits, retry defaults, replication and cluster timing."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import __version__
from .destinations import DestinationPolicy
from .limits import Limits
from .membership import ClusterTiming
from .queue_config import QueueConfig, QueuesConfig
from .retry import RetryPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    node_id: str = "127.0.0.1:8088"
    """host:port this node serves on; how peers and users name it."""
    seed_id: str | None = None
    """A member to join the cluster through; None (or node_id) starts a new cluster."""
    limits: Limits = field(default_factory=Limits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """The retry policy of queues the queues file does not set (when there is no file)."""
    delivery_deadline_ms: int = 30_000
    """No complete webhook answer within this is a failed attempt (timeout); for queues the
    queues file does not set (when there is no file)."""
    queues: QueuesConfig | None = None
    """Per-queue settings (`--queues FILE`); None: every queue has `retry` and
    `delivery_deadline_ms` and no rate or concurrency limit."""
    retention_ms: int = 3_600_000
    """How long a succeeded or cancelled task stays visible, and its client id deduplicates."""
    user_agent: str = f"miyamoto/{__version__}"
    replicas: int = 2
    """R: copies of every task, on distinct members (fewer while fewer members are live)."""
    replica_delay_ms: int = 5_000
    """Copy k of a task is due at ETA + k x this."""
    claim_lease_ms: int = 10_000
    """How long a claim holds the other copies back; renewed while the delivery is in flight."""
    placement_timeout_ms: int = 5_000
    """An enqueue whose copies are not all acknowledged by then is answered with an error."""
    peer_answer_timeout_ms: int = 2_000
    """How long GET and DELETE of a task wait for the other members' answers."""
    repair_retry_ms: int = 2_000
    """How often copies sent by a repair are sent again until acknowledged."""
    timing: ClusterTiming = field(default_factory=ClusterTiming)
    """Heartbeats, election and member timeouts."""
    destinations: DestinationPolicy = field(default_factory=DestinationPolicy)
    """Which addresses webhooks may be delivered to (`--deny-destinations` and
    `--allow-destinations`); the shell adds the node's own address."""

    @property
    def queues_config(self) -> QueuesConfig:
        if self.queues is not None:
            return self.queues
        default = QueueConfig(retry=self.retry, delivery_deadline_ms=self.delivery_deadline_ms)
        return QueuesConfig(default=default)

    def __post_init__(self) -> None:
        assert 0 < self.delivery_deadline_ms <= self.limits.delivery_deadline_ms_max
        assert self.retention_ms >= 0
        assert self.replicas >= 1
        assert self.replica_delay_ms >= 0
        assert self.claim_lease_ms >= 3
        assert self.placement_timeout_ms > 0 and self.peer_answer_timeout_ms > 0
        assert self.repair_retry_ms > 0
