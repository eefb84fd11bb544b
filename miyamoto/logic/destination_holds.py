"""`GET /_destinations` and `DELETE /_destinations/{host:port}`: the Retry-After holds a node
keeps, per queue and destination, shown and lifted. Holds are per node (each node keeps those
its own deliveries were answered with), so these answer for the node asked."""

from __future__ import annotations

from typing import Any

from .delivery import format_seconds
from .errors import ClientError
from .urls import _parse_authority


def destinations_json(holds: list[tuple[str, str, int, int]], now_ms: int) -> dict[str, Any]:
    return {
        "holds": [
            {
                "queue": queue,
                "destination": _shown(host, port),
                "until": format_seconds(until_ms),
                "remaining_ms": until_ms - now_ms,
            }
            for queue, host, port, until_ms in holds
        ]
    }


def parse_destination(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port`, as the listing shows it; ClientError 400 when not that."""
    if ":" not in text.rpartition("]")[2]:
        raise ClientError(400, f"name a destination as host:port, not {text[:60]!r}")
    try:
        return _parse_authority(text, 0)
    except ClientError as error:
        raise ClientError(400, "destination" + error.message.removeprefix("url")) from None


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
