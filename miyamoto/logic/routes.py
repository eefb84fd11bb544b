"""Which API operation an HTTP request asks for. Pure: method and target in, a Route out."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ClientError, shown


class Operation(enum.Enum):
    HEALTH = "health"
    CLUSTER = "cluster"
    ENQUEUE = "enqueue"
    QUEUE_INFO = "queue_info"
    TASK_INFO = "task_info"
    TASK_CANCEL = "task_cancel"
    TASK_RERUN = "task_rerun"
    QUEUE_COMMAND = "queue_command"
    DESTINATIONS = "destinations"
    DESTINATION_LIFT = "destination_lift"
    QUEUES = "queues"
    CLUSTER_LEAVE = "cluster_leave"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    operation: Operation
    queue: str = ""
    task_id: str = ""
    command: str = ""
    """For QUEUE_COMMAND: pause, resume or purge."""
    query: tuple[tuple[str, str], ...] = ()
    destination: str = ""
    """For DESTINATION_LIFT: the host:port whose holds to lift, as given."""


_NODE_PATHS: dict[str, tuple[str, Operation]] = {
    "_health": ("GET", Operation.HEALTH),
    "_cluster": ("GET", Operation.CLUSTER),
    "_destinations": ("GET", Operation.DESTINATIONS),
    "_queues": ("GET", Operation.QUEUES),
    "_cluster/leave": ("POST", Operation.CLUSTER_LEAVE),
}
"""The node's own paths (they start with `_`, which queue names may not)."""

QUEUE_COMMANDS = ("pause", "resume", "purge")
"""`POST /{queue}/_pause` and so on: `_` cannot start a task id a client would choose by accident,
and POST is not otherwise allowed on `/{queue}/{id}`."""


def route(method: str, target: str) -> Route:
    """The operation for `method` on `target`; ClientError 404/405 when there is none."""
    parts = urlsplit(target)
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if segments and segments[-1] == "" and len(segments) > 1:
        segments.pop()  # a trailing slash names the same resource
    if segments and segments[0] == "_destinations" and len(segments) == 2:
        if method != "DELETE":
            raise ClientError(405, f"{method} is not allowed on {parts.path}; use DELETE")
        return Route(operation=Operation.DESTINATION_LIFT, destination=segments[1])
    if segments and segments[0].startswith("_"):
        node_path = _NODE_PATHS.get("/".join(segments))
        if node_path is None:
            raise ClientError(404, f"no such node path: {parts.path}")
        allowed_method, operation = node_path
        if method != allowed_method:
            raise ClientError(405, f"{method} is not allowed on {parts.path}; use {allowed_method}")
        return Route(operation=operation)
    if not segments or segments[0] == "":
        raise ClientError(404, "no such path: use /{queue} or /{queue}/{task id}")
    queue = segments[0]
    shape = len(segments)
    allowed: dict[str, Operation] = {}
    command = ""
    if shape == 1:
        allowed = {"POST": Operation.ENQUEUE, "GET": Operation.QUEUE_INFO}
    elif shape == 2 and segments[1].startswith("_") and segments[1][1:] in QUEUE_COMMANDS:
        allowed = {"POST": Operation.QUEUE_COMMAND}
        command = segments[1][1:]
    elif shape == 2 and segments[1].startswith("_") and method == "POST":
        # A mistyped command (`_pauze`): POST is not otherwise allowed on `/{queue}/{id}`, so
        # say what was meant rather than 405 on a "task".
        known = ", ".join(f"_{name}" for name in QUEUE_COMMANDS)
        raise ClientError(404, f"unknown queue command {shown(segments[1])}; use {known}")
    elif shape == 2:
        allowed = {"GET": Operation.TASK_INFO, "DELETE": Operation.TASK_CANCEL}
    elif shape == 3 and segments[2] == "rerun":
        allowed = {"POST": Operation.TASK_RERUN}
    else:
        raise ClientError(404, "no such path: use /{queue} or /{queue}/{task id}")
    chosen = allowed.get(method)
    if chosen is None:
        names = ", ".join(allowed)
        raise ClientError(405, f"{method} is not allowed on {parts.path}; use {names}")
    task_id = segments[1] if shape in (2, 3) and not command else ""
    return Route(
        operation=chosen, queue=queue, task_id=task_id, command=command, query=query
    )


QUEUE_ROUTES: tuple[tuple[str, str, Operation], ...] = (
    ("POST", "/{queue}", Operation.ENQUEUE),
    ("GET", "/{queue}", Operation.QUEUE_INFO),
    ("GET", "/{queue}/{id}", Operation.TASK_INFO),
    ("DELETE", "/{queue}/{id}", Operation.TASK_CANCEL),
    ("POST", "/{queue}/{id}/rerun", Operation.TASK_RERUN),
    *(("POST", f"/{{queue}}/_{name}", Operation.QUEUE_COMMAND) for name in QUEUE_COMMANDS),
)
"""The queue paths `route` knows, as (method, path template, operation): what the API docs and
the OpenAPI description must each list (a test checks both against this and `route`)."""

SHELL_PATHS: dict[str, str] = {
    "/": "the status page",
    "/_ui": "the status page",
    "/_openapi.json": "the OpenAPI description of this API",
}
"""Paths the daemon's shell serves itself (GET and HEAD) without asking the node: they need no
node state (miyamoto/io/static_routes.py)."""


PEER_BATCH_PATH = "/_peer"
"""`POST /_peer`: peers' message batches, which the shell checks, decodes and feeds to the node
(miyamoto/io/peer_endpoint.py); the node's API never sees them."""


def api_routes() -> list[tuple[str, str]]:
    """Every (method, path template) the node and its shell answer, sorted."""
    node = [(method, f"/{path}") for path, (method, _) in _NODE_PATHS.items()]
    queue = [(method, path) for method, path, _ in QUEUE_ROUTES]
    shell = [("GET", path) for path in SHELL_PATHS]
    lift = ("DELETE", "/_destinations/{destination}")
    return sorted({*node, *queue, *shell, ("POST", PEER_BATCH_PATH), lift})
