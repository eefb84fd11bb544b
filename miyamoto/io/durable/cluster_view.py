"""What `GET /_cluster` says about the node's store (`"durability"`): where its data directory is,
how it syncs, when the last commit finished and how long recent commits took, fsync included.

The numbers live in the shell (the store times its own commits), so the shell adds them to the
node's answer as it adds the `/_peer` counters (cluster_counters.py)."""

from __future__ import annotations

from .commit_gate import CommitGate
from .store import Store


def durability_section(store: Store | None, gate: CommitGate | None) -> dict[str, object]:
    """The `"durability"` object: `{"data_dir": null}` for a node that keeps nothing on disk."""
    if store is None:
        return {"data_dir": None}
    stats = store.stats
    latencies_us = sorted(stats.recent_latencies_us)
    latency: dict[str, object] | None = None
    if latencies_us:
        latency = {
            "commits": len(latencies_us),
            "p50_ms": _ms(latencies_us[(len(latencies_us) - 1) // 2]),
            "max_ms": _ms(latencies_us[-1]),
        }
    return {
        "data_dir": str(store.path.parent),
        "fsync": store.fsync.value,
        "commits": stats.commits,
        "last_commit_ms": stats.last_commit_ms,
        "commit_latency": latency,
        "last_error": None if gate is None else gate.last_error,
    }


def _ms(microseconds: int) -> float:
    return round(microseconds / 1000, 3)
