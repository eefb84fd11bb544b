"""The OpenAPI 3.1 description of the HTTP API, as data (served at `GET /_openapi.json`).

Built from the same limits and defaults the node enforces, so the numbers cannot drift; a test
checks that it names every route the router knows, and schemathesis checks a live node against
it (no 5xx, no status it does not list, no body outside its schemas). The paths are here; the
component schemas in openapi_schemas.py; the helpers both use in openapi_parts.py.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .config import NodeConfig
from .enqueue_parse import FORM_CONTENT_TYPE, JSON_CONTENT_TYPE
from .errors import size_text
from .limits import Limits
from .openapi_parts import (
    INTEGER,
    QUEUE_NAME_PATTERN,
    SERVER_ERRORS,
    STATES,
    STRING,
    TASK_ID_PATTERN,
    Schema,
    array_of,
    described,
    error,
    json_body,
    nullable,
    obj,
    page,
    path_param,
    ref,
    reply,
    responses,
)
from .openapi_schemas import HOLD, component_schemas, leave_answer
from .queue_ops import LISTING_LIMIT_DEFAULT
from .routes import QUEUE_COMMANDS

__all__ = ["SERVER_ERRORS", "openapi_description"]


def _paths(limits: Limits) -> dict[str, Schema]:
    queue = path_param(
        "queue",
        {
            "type": "string",
            "pattern": QUEUE_NAME_PATTERN,
            "minLength": 1,
            "maxLength": limits.queue_name_chars_max,
        },
        f"1 to {limits.queue_name_chars_max} of [A-Za-z0-9_-], not starting with _.",
    )
    task_id = path_param(
        "id",
        {"type": "string", "pattern": TASK_ID_PATTERN, "maxLength": limits.task_id_chars_max},
        "The task's id.",
    )
    not_member = "This node is not a cluster member yet, or members did not answer in time."
    reserved_id = "The id is _pause, _resume or _purge: those paths take only POST."
    paths: dict[str, Schema] = {
        "/": {"get": page("The status page (HTML, no build step).")},
        "/_ui": {"get": page("The status page, as at /.")},
        "/_openapi.json": {
            "get": {
                "summary": "This description",
                "responses": {
                    "200": json_body({"type": "object"}, "The OpenAPI 3.1 description."),
                    **{code: error(text) for code, text in SERVER_ERRORS.items()},
                },
            }
        },
        "/_health": {
            "get": {
                "summary": "Liveness",
                "responses": responses(json_body(reply("ok", node=STRING), "The node serves.")),
            }
        },
        "/_ready": {
            "get": {
                "summary": "Readiness (answered by the shell; HEAD too)",
                "responses": responses(
                    json_body(
                        obj(
                            {"status": {"const": "ready"}, "node": STRING},
                            {"leader": nullable(STRING)},
                        ),
                        "The node can take an enqueue: a member, with a leader, its store (with "
                        "a data directory) taking writes.",
                    ),
                    e503="Not ready; `error` says why.",
                ),
            }
        },
        "/_metrics": {
            "get": {
                "summary": "Prometheus metrics (answered by the shell; HEAD too)",
                "responses": responses(
                    {
                        "description": "The Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    e404="Metrics are off on this node (--no-metrics).",
                ),
            }
        },
        "/_cluster": {
            "get": {
                "summary": "This node's view of the cluster",
                "responses": responses(json_body(ref("Cluster"), "Members, leader, term, epoch.")),
            }
        },
        "/_cluster/leave": {
            "post": {
                "summary": "Leave the cluster for good (this node), handing its copies off first",
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON_CONTENT_TYPE: {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "node": described(
                                        STRING, "This node's id; any other is refused."
                                    )
                                },
                            }
                        }
                    },
                },
                "responses": {
                    **responses(
                        leave_answer("It has left (the leader removed it)."),
                        e400="The body names another node, or is not such an object.",
                        e409="Fewer reachable members than replicas would stay.",
                        e413="The body is over 1024 bytes.",
                        e503="Not a member, or no leader heard.",
                    ),
                    "202": leave_answer(
                        "Leaving: copies being handed off, deliveries drained, or waiting for "
                        "the leader to remove it. Ask again (or GET /_cluster) for progress."
                    ),
                },
            }
        },
        "/_peer": {
            "post": {
                "summary": "Peer messages (node to node; not for clients)",
                "requestBody": {
                    "required": True,
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                    "description": "Encoded envelopes, one per line.",
                },
                "responses": responses(
                    json_body(
                        reply("ok", accepted=INTEGER),
                        "Every line was a valid message.",
                    ),
                    e400="A line was not a valid peer message.",
                ),
            }
        },
        "/_queues": {
            "get": {
                "summary": "Every queue the cluster knows, with its counts",
                "responses": responses(
                    json_body(ref("QueueList"), "The queues, across the members that answered."),
                    e503=not_member,
                ),
            }
        },
        "/_destinations": {
            "get": {
                "summary": "The Retry-After holds this node keeps, by queue and destination",
                "responses": responses(
                    json_body(
                        obj({"holds": array_of(HOLD)}),
                        "Holds still in force, sorted by queue and destination.",
                    )
                ),
            }
        },
        "/_destinations/{destination}": {
            "parameters": [
                path_param(
                    "destination",
                    {"type": "string"},
                    "host:port ([v6]:port for IPv6), as GET /_destinations shows it.",
                )
            ],
            "delete": {
                "summary": "Lift every queue's hold on a destination (on this node)",
                "responses": responses(
                    json_body(
                        reply("lifted", queues=array_of(STRING)),
                        "The queues whose hold was lifted.",
                    ),
                    e400="Not host:port.",
                    e404="No queue holds deliveries to it.",
                ),
            },
        },
        "/{queue}": {
            "parameters": [queue],
            "post": {
                "summary": "Enqueue one task (JSON object or form) or a batch (JSON array)",
                "requestBody": {
                    "required": True,
                    "description": "No Content-Type is read as a form. A body starting with { "
                    "or [ is read as JSON whatever the Content-Type says.",
                    "content": {
                        JSON_CONTENT_TYPE: {
                            "schema": {
                                "anyOf": [
                                    ref("JsonTask"),
                                    {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": limits.batch_tasks_max,
                                        "items": ref("JsonTask"),
                                    },
                                ]
                            }
                        },
                        FORM_CONTENT_TYPE: {"schema": ref("FormTask")},
                    },
                },
                "responses": responses(
                    json_body(
                        {
                            "anyOf": [
                                ref("Scheduled"),
                                ref("Duplicate"),
                                {
                                    "type": "array",
                                    "description": "A batch: one result per element, in order.",
                                    "items": {
                                        "anyOf": [
                                            ref("Scheduled"),
                                            ref("Duplicate"),
                                            ref("Error"),
                                        ]
                                    },
                                },
                            ]
                        },
                        "Stored (scheduled), already known (duplicate), or a batch's results.",
                    ),
                    e400="A missing or bad field, malformed JSON or form, a bad queue name.",
                    e413=f"A task body over {size_text(limits.task_body_bytes_max)}, over "
                    f"{limits.params_count_max} params or a batch over "
                    f"{limits.batch_tasks_max} tasks.",
                    e415="A content type other than JSON or a form (and a body that is not "
                    "JSON), or a charset other than UTF-8.",
                    e431=f"Over {limits.task_headers_count_max} task headers or one over "
                    f"{size_text(limits.task_header_bytes_max)}.",
                    e503="Not every copy was stored in time (maybe enqueued: retry with the "
                    "id); or this node is not a member yet.",
                    e507=f"A holder is full ({limits.tasks_max} tasks or "
                    f"{limits.task_bytes_max} bytes of task bodies, headers and URLs) or this "
                    f"node has {limits.active_queues_max} active queues.",
                ),
            },
            "get": {
                "summary": "The queue's counts, oldest ETA, attempts per minute, rate; "
                "?state= lists tasks",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": STATES},
                        "description": "List the tasks in this state (failed: dead letters).",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": limits.listing_tasks_max,
                            "default": LISTING_LIMIT_DEFAULT,
                        },
                        "description": "At most this many tasks listed in one page.",
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "The `next_cursor` of the page before: list the tasks "
                        "after it (in ETA, then id, order).",
                    },
                ],
                "responses": responses(
                    json_body(ref("QueueInfo"), "Counts, across the members that answered."),
                    e400="A bad queue name, an unknown query parameter, a bad state, limit "
                    "or cursor.",
                    e503=not_member,
                ),
            },
        },
        "/{queue}/{id}": {
            "parameters": [queue, task_id],
            "get": {
                "summary": "The task: state, attempts, last status and response excerpt",
                "responses": responses(
                    json_body(ref("TaskView"), "The most advanced copy's view."),
                    e400="A bad queue name.",
                    e404="No member has the task (or it finished over the retention ago).",
                    e405=reserved_id,
                    e503=not_member,
                ),
            },
            "delete": {
                "summary": "Cancel a waiting task, or delete a dead letter",
                "responses": responses(
                    json_body(
                        obj({"status": {"enum": ["cancelled", "deleted"]}, "id": STRING}),
                        "Cancelled on every holder, or a failed task deleted.",
                    ),
                    e400="A bad queue name.",
                    e404="No member has the task.",
                    e405=reserved_id,
                    e409="The task succeeded already or is being delivered (`state` says).",
                    e503="A holder or member did not confirm in time: retry the DELETE. Or "
                    "this node is not a member yet.",
                ),
            },
        },
        "/{queue}/{id}/rerun": {
            "parameters": [queue, task_id],
            "post": {
                "summary": "Run a failed task (a dead letter) again, with a fresh retry budget",
                "responses": responses(
                    json_body(
                        reply("scheduled", id=STRING),
                        "Scheduled again, now.",
                    ),
                    e400="A bad queue name.",
                    e404="No member has the task.",
                    e409="The task is not failed (`state` says what it is).",
                    e503=not_member,
                ),
            },
        },
    }
    for command in QUEUE_COMMANDS:
        past = {"pause": "paused", "resume": "resumed", "purge": "purged"}[command]
        optional = {"copies_deleted": INTEGER} if command == "purge" else {}
        answer = obj(
            {
                "status": {"const": past},
                "queue": STRING,
                "members": {"type": "integer", "description": "Members that did it."},
            },
            optional,
        )
        paths[f"/{{queue}}/_{command}"] = {
            "parameters": [queue],
            "post": {
                "summary": f"{command.capitalize()} the queue on every member",
                "responses": responses(
                    json_body(answer, f"{past.capitalize()} on every member."),
                    e400="A bad queue name.",
                    e503="Not every member answered in time (safe to repeat); or this node is "
                    "not a member yet.",
                ),
            },
        }
    return paths


def openapi_description(
    limits: Limits | None = None, config: NodeConfig | None = None
) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for a node with these limits and defaults."""
    limits = limits or Limits()
    config = config or NodeConfig(limits=limits)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Miyamoto",
            "version": __version__,
            "description": "A clusterable HTTP task queue: enqueue with one POST, delivered as "
            'a webhook. Every error is a JSON body {"status": "error", "error": "..."}.',
        },
        "paths": _paths(limits),
        "components": {"schemas": component_schemas(limits, config)},
    }
