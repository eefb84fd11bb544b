"""Which API operation an HTTP request asks for. Pure: method and target in, a Route out."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ClientError


class Operation(enum.Enum):
    HEALTH = "health"
    CLUSTER = "cluster"
    PEER = "peer"
    ENQUEUE = "enqueue"
    QUEUE_INFO = "queue_info"
    TASK_INFO = "task_info"
    TASK_CANCEL = "task_cancel"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    operation: Operation
    queue: str = ""
    task_id: str = ""
    query: tuple[tuple[str, str], ...] = ()


_NODE_PATHS: dict[str, tuple[str, Operation]] = {
    "_health": ("GET", Operation.HEALTH),
    "_cluster": ("GET", Operation.CLUSTER),
    "_peer": ("POST", Operation.PEER),
}
"""The node's own paths (they start with `_`, which queue names may not)."""

_ALLOWED: dict[int, tuple[tuple[str, Operation], ...]] = {
    1: (("POST", Operation.ENQUEUE), ("GET", Operation.QUEUE_INFO)),
    2: (("GET", Operation.TASK_INFO), ("DELETE", Operation.TASK_CANCEL)),
}
"""Path depth (queue, or queue/id) -> the methods allowed there and what they do."""


def route(method: str, target: str) -> Route:
    """The operation for `method` on `target`; ClientError 404/405 when there is none."""
    parts = urlsplit(target)
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if segments and segments[-1] == "" and len(segments) > 1:
        segments.pop()  # a trailing slash names the same resource
    if segments and segments[0].startswith("_"):
        node_path = _NODE_PATHS.get("/".join(segments))
        if node_path is None:
            raise ClientError(404, f"no such node path: {parts.path}")
        allowed_method, operation = node_path
        if method != allowed_method:
            raise ClientError(405, f"{method} is not allowed on {parts.path}; use {allowed_method}")
        return Route(operation=operation)
    allowed = _ALLOWED.get(len(segments))
    if allowed is None or segments[0] == "":
        raise ClientError(404, "no such path: use /{queue} or /{queue}/{task id}")
    for allowed_method, operation in allowed:
        if method == allowed_method:
            task_id = segments[1] if len(segments) == 2 else ""
            return Route(operation=operation, queue=segments[0], task_id=task_id, query=query)
    names = ", ".join(m for m, _ in allowed)
    raise ClientError(405, f"{method} is not allowed on {parts.path}; use {names}")
