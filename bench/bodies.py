"""The enqueue requests the scenarios send: one task as a form or JSON, or a batch (JSON array)."""

from __future__ import annotations

import json
from typing import Any

QUEUE_PATH = "/bench"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
FAR_COUNTDOWN_S = 86_400
"""Tasks that only measure enqueue are due in a day, so no delivery work mixes in."""
UNROUTED_URL = "http://127.0.0.1:9/w"
"""For tasks never delivered during a run (port 9 is discard; nothing listens there)."""
MEMORY_URL = "http://127.0.0.1:9/bench/abcde"
MEMORY_PARAMS = {"x": "abcdefghijklmnopqr"}
"""`x=abcdefghijklmnopqr`: the 20-byte body of the memory scenario."""
BATCH_SIZE = 1000
"""Tasks per batch request: the batch limit of the API."""

assert len(MEMORY_URL) == 30


def receiver_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/w"


def form_task(url: str, *, countdown_s: float | None = None, eta_s: float | None = None) -> bytes:
    """One task as a form body, as the README's curl sends it."""
    fields = [f"task.url={url}"]
    if countdown_s is not None:
        fields.append(f"task.countdown={countdown_s:g}")
    if eta_s is not None:
        fields.append(f"task.eta={eta_s:.3f}")
    fields.append("x=1")
    return "&".join(fields).encode()


def json_task(
    url: str,
    *,
    countdown_s: float | None = None,
    eta_s: float | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    task: dict[str, Any] = {"url": url, "params": params if params is not None else {"x": "1"}}
    if countdown_s is not None:
        task["countdown"] = countdown_s
    if eta_s is not None:
        task["eta"] = round(eta_s, 3)
    return task


def batch(tasks: list[dict[str, Any]]) -> bytes:
    return json.dumps(tasks, separators=(",", ":")).encode()
