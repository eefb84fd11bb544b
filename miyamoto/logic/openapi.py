"""The OpenAPI 3.1 description of the HTTP API, as data (served at `GET /_openapi.json`).

Built from the same limits and defaults the node enforces, so the numbers cannot drift; a test
checks that it names every route the router knows, and schemathesis checks a live node against
it (no 5xx, no status it does not list, no body outside its schemas).

Besides each operation's own answers, any request can get what the HTTP server itself answers
(`SERVER_ERRORS`): a malformed request (400), a request too slow to arrive (408), a body or
headers over the limit (413, 431), and a node too busy or too slow to answer (503).
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .config import NodeConfig
from .enqueue_parse import FORM_CONTENT_TYPE, JSON_CONTENT_TYPE, METHODS
from .errors import duration_text, size_text
from .limits import Limits
from .queue_ops import LISTING_LIMIT_DEFAULT
from .routes import QUEUE_COMMANDS
from .task import TaskState

Schema = dict[str, Any]

_REF = "#/components/schemas/"
_QUEUE_NAME_PATTERN = "^[A-Za-z0-9-][A-Za-z0-9_-]*$"
_TASK_ID_PATTERN = "^[A-Za-z0-9_-]+$"
_DECIMAL_PATTERN = r"^\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_INTEGER_PATTERN = r"^[+-]?[0-9]+$"
_STATES = [state.value for state in TaskState]
_INT64_MAX = 2**63 - 1

SERVER_ERRORS = {
    "400": "Malformed HTTP (the server could not parse the request).",
    "408": "The whole request did not arrive within 30 s of its first byte.",
    "413": "The request body is over the limit.",
    "431": "The request line and headers are over the limit.",
    "503": "The node is busy (too many connections) or did not answer in time; retry.",
}
"""What the HTTP server may answer to any request, before or instead of the node."""


def _ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON_CONTENT_TYPE: {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(_ref("Error"), description)


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _seconds(
    description: str, *, default_ms: int | None = None, maximum: float | None = None
) -> Schema:
    """A number of seconds: a JSON number or a decimal string (as a form sends it)."""
    number: Schema = {"type": "number", "minimum": 0}
    if maximum is not None:
        number["maximum"] = maximum
    schema: Schema = {
        "description": description,
        "anyOf": [number, {"type": "string", "pattern": _DECIMAL_PATTERN, "maxLength": 40}],
    }
    if default_ms is not None:
        schema["default"] = default_ms / 1000
    return schema


def _integer(description: str, minimum: int, default: int) -> Schema:
    return {
        "description": description,
        "default": default,
        "anyOf": [
            {"type": "integer", "minimum": minimum, "maximum": _INT64_MAX},
            {"type": "string", "pattern": _INTEGER_PATTERN, "maxLength": 19},
        ],
    }


def _task_fields(limits: Limits, config: NodeConfig) -> dict[str, Schema]:
    """The fields a task shares between its JSON and form shapes (a form prefixes `task.`)."""
    retry = config.retry
    ahead_s = limits.schedule_ahead_ms_max / 1000
    deadline_s = limits.delivery_deadline_ms_max / 1000
    return {
        "url": {
            "type": "string",
            "format": "uri",
            "maxLength": limits.url_chars_max,
            "description": "Absolute http:// or https:// URL of the webhook; no user:password@. "
            "Required.",
        },
        "method": {
            "type": "string",
            "enum": sorted(METHODS),
            "default": "POST",
            "description": "The webhook request's method (any case).",
        },
        "countdown": _seconds(
            "Deliver this many seconds after the node received the request (default 0). "
            f"At most {duration_text(limits.schedule_ahead_ms_max)} ahead. Not with eta.",
            default_ms=0,
            maximum=ahead_s,
        ),
        "eta": _seconds(
            "Deliver at this Unix time in seconds (default now; the past means now). "
            f"At most {duration_text(limits.schedule_ahead_ms_max)} ahead. Not with countdown."
        ),
        "id": {
            "type": "string",
            "pattern": _TASK_ID_PATTERN,
            "minLength": 1,
            "maxLength": limits.task_id_chars_max,
            "description": "Your id for the task, unique within the queue: a repeat while the "
            "task is remembered answers `duplicate` (idempotent enqueue). Default: a random UUID.",
        },
        "retry_limit": _integer(
            "Retries after the first attempt; -1 = no limit. Narrowed to the queue's.",
            -1,
            retry.retry_limit,
        ),
        "age_limit": _seconds(
            "No retry once this long after the first attempt; 0 = no limit (default "
            f"{retry.age_limit_ms / 1000:g}). Narrowed to the queue's.",
            default_ms=retry.age_limit_ms,
        ),
        "min_backoff": _seconds(
            f"Wait before the first retry (default {retry.min_backoff_ms / 1000:g}); kept "
            "within the queue's backoff range.",
            default_ms=retry.min_backoff_ms,
        ),
        "max_backoff": _seconds(
            f"Longest wait between attempts (default {retry.max_backoff_ms / 1000:g}); kept "
            "within the queue's backoff range; not below min_backoff when both are given.",
            default_ms=retry.max_backoff_ms,
        ),
        "max_doublings": _integer(
            "How many times the wait doubles before it grows linearly.",
            0,
            retry.max_doublings,
        ),
        "deadline": _seconds(
            "Seconds one attempt may take to get a complete answer, 0.001 to "
            f"{deadline_s:g} ({duration_text(limits.delivery_deadline_ms_max)}); default "
            f"{config.delivery_deadline_ms / 1000:g}, at most the queue's.",
            default_ms=config.delivery_deadline_ms,
            maximum=deadline_s,
        ),
    }


def _as_text(schema: Schema) -> Schema:
    """A field as a form gives it: always text (its string form, where it has two)."""
    if "anyOf" not in schema:
        return schema
    (text,) = [s for s in schema["anyOf"] if s["type"] == "string"]
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    if "default" in rest:
        rest["default"] = f"{rest['default']:g}"  # as a form would write it
    return {**rest, **text}


def _schemas(limits: Limits, config: NodeConfig) -> dict[str, Schema]:
    fields = _task_fields(limits, config)
    param_value: Schema = {"type": ["string", "number", "boolean"]}
    json_task: Schema = {
        "type": "object",
        "description": "One task. `null` means not given. Unknown fields are refused.",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            **fields,
            "params": {
                "type": "object",
                "description": "Params for the webhook: in the query string of a GET, HEAD, "
                "DELETE or OPTIONS task, else the form-encoded body. A list repeats the key. "
                f"At most {limits.params_count_max}. Not with body.",
                "maxProperties": limits.params_count_max,
                "additionalProperties": {
                    "anyOf": [param_value, {"type": "array", "items": param_value}]
                },
            },
            "body": {
                "type": "string",
                "description": "The request body, sent as UTF-8 (text/plain unless headers say "
                f"otherwise); at most {size_text(limits.task_body_bytes_max)}. Not with params; "
                "not for GET or HEAD.",
            },
            "headers": {
                "type": "object",
                "description": f"Extra headers, at most {limits.task_headers_count_max}, each "
                f"at most {size_text(limits.task_header_bytes_max)} (name and value). "
                "Refused: hop-by-hop headers, Host, Content-Length, User-Agent, Expect, "
                "X-Task-*.",
                "maxProperties": limits.task_headers_count_max,
                "additionalProperties": {"type": "string"},
            },
        },
    }
    form_task: Schema = {
        "type": "object",
        "description": "One task: `task.`-prefixed fields; every other field is a param for "
        "the webhook.",
        "required": ["task.url"],
        "properties": {f"task.{name}": _as_text(schema) for name, schema in fields.items()},
        "additionalProperties": {"type": "string"},
    }
    warnings: Schema = {
        "type": "array",
        "items": {"type": "string"},
        "description": "An enqueue's warnings, when there are any: JSON read under another "
        "content type; retry settings the queue narrowed.",
    }
    return {
        "Error": {
            "type": "object",
            "description": "Every error. `error` names the field and states any limit.",
            "required": ["status", "error"],
            "properties": {
                "status": {"const": "error"},
                "error": {"type": "string"},
                "id": {
                    "type": "string",
                    "description": "The task's id, when it may have been stored (503, 507 of "
                    "an enqueue): retry with it.",
                },
                "state": {"type": "string", "description": "The task's state (409)."},
                "warnings": warnings,
            },
        },
        "JsonTask": json_task,
        "FormTask": form_task,
        "Scheduled": {
            "type": "object",
            "required": ["status", "id", "queue", "eta", "replicas"],
            "properties": {
                "status": {"const": "scheduled"},
                "id": {"type": "string"},
                "queue": {"type": "string"},
                "eta": {"type": "number", "description": "Unix seconds."},
                "replicas": {"type": "integer", "description": "Copies stored."},
                "warnings": warnings,
            },
        },
        "Duplicate": {
            "type": "object",
            "required": ["status", "id", "state"],
            "properties": {
                "status": {"const": "duplicate"},
                "id": {"type": "string"},
                "state": {"type": "string", "enum": _STATES},
                "warnings": warnings,
            },
        },
        "TaskView": {
            "type": "object",
            "required": ["id", "queue", "state", "method", "url", "eta", "created", "attempts"],
            "properties": {
                "id": {"type": "string"},
                "queue": {"type": "string"},
                "state": {"type": "string", "enum": _STATES},
                "method": {"type": "string"},
                "url": {"type": "string"},
                "eta": {"type": "number"},
                "next_attempt": _nullable({"type": "number"}),
                "created": {"type": "number"},
                "attempts": {"type": "integer"},
                "executions": {"type": "integer"},
                "first_attempt": _nullable({"type": "number"}),
                "last_attempt": _nullable({"type": "number"}),
                "last_status": _nullable({"type": "integer"}),
                "last_error": _nullable({"type": "string"}),
                "last_response": _nullable({"type": "string"}),
                "finished": _nullable({"type": "number"}),
                "holders": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"node": {"type": "string"}, "copy": {"type": "integer"}},
                    },
                },
                "retry": {
                    "type": "object",
                    "description": "The retry policy in force: the task's own settings as its"
                    " queue narrowed them (times in seconds).",
                    "properties": {
                        "retry_limit": {"type": "integer"},
                        "age_limit": {"type": "number"},
                        "min_backoff": {"type": "number"},
                        "max_backoff": {"type": "number"},
                        "max_doublings": {"type": "integer"},
                        "deadline": {"type": "number"},
                    },
                },
                "copies": {
                    "type": "array",
                    "description": "One per member that answered with a copy (GET of a task).",
                    "items": {
                        "type": "object",
                        "properties": {
                            "node": {"type": "string"},
                            "state": {"type": "string", "enum": _STATES},
                        },
                    },
                },
            },
        },
        "QueueInfo": {
            "type": "object",
            "required": [
                "queue",
                "counts",
                "oldest_eta",
                "attempts_last_minute",
                "rate_per_s",
                "paused_on",
                "members_answered",
                "members_unanswered",
            ],
            "properties": {
                "queue": {"type": "string"},
                "counts": {
                    "type": "object",
                    "description": "Tasks by state, each task once across the cluster.",
                    "required": _STATES,
                    "properties": {state: {"type": "integer"} for state in _STATES},
                },
                "oldest_eta": _nullable({"type": "number"}),
                "attempts_last_minute": {"type": "integer"},
                "rate_per_s": _nullable({"type": "number"}),
                "paused_on": {"type": "array", "items": {"type": "string"}},
                "members_answered": {"type": "integer"},
                "members_unanswered": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Members that did not answer in time: their tasks are "
                    "missing from the counts.",
                },
                "state": {"type": "string", "enum": _STATES},
                "tasks": {"type": "array", "items": _ref("TaskView")},
            },
        },
        "Cluster": {
            "type": "object",
            "required": ["node", "role", "leader", "term", "epoch", "members", "in_majority"],
            "properties": {
                "node": {"type": "string"},
                "role": {
                    "type": "string",
                    "enum": ["joining", "follower", "pre_candidate", "candidate", "leader",
                             "left"],
                },
                "leader": _nullable({"type": "string"}),
                "term": {"type": "integer"},
                "epoch": {"type": "integer"},
                "members": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "node": {"type": "string"},
                            "state": {"enum": ["alive", "unreachable", "unknown"]},
                        },
                    },
                },
                "in_majority": {"type": "boolean"},
                "copies_held": {"type": "integer"},
                "under_replicated": {"type": "integer"},
                "leave": {
                    **_LEAVE,
                    "description": "Only while the node leaves or after it left "
                    "(POST /_cluster/leave).",
                },
                "stats": {"type": "object", "additionalProperties": {"type": "integer"}},
                "peer_endpoint": {
                    "type": "object",
                    "description": "What reached POST /_peer since the process started.",
                    "properties": {
                        "batches": {"type": "integer"},
                        "messages": {"type": "integer"},
                        "batches_malformed": {"type": "integer"},
                        "authenticated": {"type": "boolean"},
                        "auth": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                },
            },
        },
    }


_HOLD: Schema = {
    "type": "object",
    "required": ["queue", "destination", "until", "remaining_ms"],
    "properties": {
        "queue": {"type": "string"},
        "destination": {"type": "string", "description": "host:port ([v6]:port for IPv6)"},
        "until": {"type": "string", "description": "When the hold ends, Unix seconds (decimal)."},
        "remaining_ms": {"type": "integer"},
    },
}
"""One destination hold in `GET /_destinations`."""


_LEAVE: Schema = {
    "type": "object",
    "required": ["state", "step", "copies_to_hand_off", "copies_awaiting_ack",
                 "deliveries_in_flight"],
    "properties": {
        "state": {"enum": ["leaving", "left"]},
        "step": {"enum": ["handing_off", "draining", "removing", "left"]},
        "copies_to_hand_off": {"type": "integer", "description":
                               "Pending copies here whose task still lacks copies on the others."},
        "copies_awaiting_ack": {"type": "integer"},
        "copies_sent": {"type": "integer"},
        "deliveries_in_flight": {"type": "integer"},
        "started": _nullable({"type": "number"}),
    },
}  # fmt: skip
"""How far `POST /_cluster/leave` got (docs/cluster.md, "Leaving a cluster")."""


def _leave_answer(description: str) -> Schema:
    answer = {**_LEAVE, "required": ["status", "node", *_LEAVE["required"]]}
    answer["properties"] = {
        "status": {"enum": ["leaving", "left"]},
        "node": {"type": "string"},
        **_LEAVE["properties"],
    }
    return _json(answer, description)


def _responses(ok: Schema, **errors: str) -> Schema:
    """`ok` (the 200) and each error status with its meaning, plus the server's own errors."""
    result: Schema = {"200": ok}
    merged = {**SERVER_ERRORS}
    for status, meaning in errors.items():
        code = status.removeprefix("e")
        merged[code] = f"{meaning} {merged[code]}" if code in merged else meaning
    for code in sorted(merged):
        result[code] = _error(merged[code])
    return result


def _path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _paths(limits: Limits) -> dict[str, Schema]:
    queue = _path_param(
        "queue",
        {
            "type": "string",
            "pattern": _QUEUE_NAME_PATTERN,
            "minLength": 1,
            "maxLength": limits.queue_name_chars_max,
        },
        f"1 to {limits.queue_name_chars_max} of [A-Za-z0-9_-], not starting with _.",
    )
    task_id = _path_param(
        "id",
        {"type": "string", "pattern": _TASK_ID_PATTERN, "maxLength": limits.task_id_chars_max},
        "The task's id.",
    )
    not_member = "This node is not a cluster member yet, or members did not answer in time."
    reserved_id = "The id is _pause, _resume or _purge: those paths take only POST."
    paths: dict[str, Schema] = {
        "/": {"get": _page("The status page (HTML, no build step).")},
        "/_ui": {"get": _page("The status page, as at /.")},
        "/_openapi.json": {
            "get": {
                "summary": "This description",
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI 3.1 description."),
                    **{code: _error(text) for code, text in SERVER_ERRORS.items()},
                },
            }
        },
        "/_health": {
            "get": {
                "summary": "Liveness",
                "responses": _responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["status", "node"],
                            "properties": {"status": {"const": "ok"}, "node": {"type": "string"}},
                        },
                        "The node serves.",
                    )
                ),
            }
        },
        "/_ready": {
            "get": {
                "summary": "Readiness (answered by the shell; HEAD too)",
                "responses": _responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["status", "node"],
                            "properties": {
                                "status": {"const": "ready"},
                                "node": {"type": "string"},
                                "leader": _nullable({"type": "string"}),
                            },
                        },
                        "The node can take an enqueue: a member, with a leader.",
                    ),
                    e503="Not ready; `error` says why.",
                ),
            }
        },
        "/_metrics": {
            "get": {
                "summary": "Prometheus metrics (answered by the shell; HEAD too)",
                "responses": _responses(
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
                "responses": _responses(_json(_ref("Cluster"), "Members, leader, term, epoch.")),
            }
        },
        "/_cluster/leave": {
            "post": {
                "summary": "Leave the cluster for good (this node), handing its copies off first",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"node": {"type": "string", "description":
                                                "This node's id; any other is refused."}},
                    }}},
                },
                "responses": {
                    **_responses(
                        _leave_answer("It has left (the leader removed it)."),
                        e400="The body names another node, or is not such an object.",
                        e409="Fewer reachable members than replicas would stay.",
                        e413="The body is over 1024 bytes.",
                        e503="Not a member, or no leader heard.",
                    ),
                    "202": _leave_answer(
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
                "responses": _responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["status", "accepted"],
                            "properties": {
                                "status": {"const": "ok"},
                                "accepted": {"type": "integer"},
                            },
                        },
                        "Every line was a valid message.",
                    ),
                    e400="A line was not a valid peer message.",
                ),
            }
        },
        "/_destinations": {
            "get": {
                "summary": "The Retry-After holds this node keeps, by queue and destination",
                "responses": _responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["holds"],
                            "properties": {"holds": {"type": "array", "items": _HOLD}},
                        },
                        "Holds still in force, sorted by queue and destination.",
                    )
                ),
            }
        },
        "/_destinations/{destination}": {
            "parameters": [
                _path_param(
                    "destination",
                    {"type": "string"},
                    "host:port ([v6]:port for IPv6), as GET /_destinations shows it.",
                )
            ],
            "delete": {
                "summary": "Lift every queue's hold on a destination (on this node)",
                "responses": _responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["status", "queues"],
                            "properties": {
                                "status": {"const": "lifted"},
                                "queues": {"type": "array", "items": {"type": "string"}},
                            },
                        },
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
                                    _ref("JsonTask"),
                                    {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": limits.batch_tasks_max,
                                        "items": _ref("JsonTask"),
                                    },
                                ]
                            }
                        },
                        FORM_CONTENT_TYPE: {"schema": _ref("FormTask")},
                    },
                },
                "responses": _responses(
                    _json(
                        {
                            "anyOf": [
                                _ref("Scheduled"),
                                _ref("Duplicate"),
                                {
                                    "type": "array",
                                    "description": "A batch: one result per element, in order.",
                                    "items": {
                                        "anyOf": [
                                            _ref("Scheduled"),
                                            _ref("Duplicate"),
                                            _ref("Error"),
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
                    e507=f"A holder is full ({limits.tasks_max} tasks) or this node has "
                    f"{limits.active_queues_max} active queues.",
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
                        "schema": {"type": "string", "enum": _STATES},
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
                        "description": "At most this many tasks listed.",
                    },
                ],
                "responses": _responses(
                    _json(_ref("QueueInfo"), "Counts, across the members that answered."),
                    e400="A bad queue name, an unknown query parameter, a bad state or limit.",
                    e503=not_member,
                ),
            },
        },
        "/{queue}/{id}": {
            "parameters": [queue, task_id],
            "get": {
                "summary": "The task: state, attempts, last status and response excerpt",
                "responses": _responses(
                    _json(_ref("TaskView"), "The most advanced copy's view."),
                    e400="A bad queue name.",
                    e404="No member has the task (or it finished over the retention ago).",
                    e405=reserved_id,
                    e503=not_member,
                ),
            },
            "delete": {
                "summary": "Cancel a waiting task, or delete a dead letter",
                "responses": _responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["status", "id"],
                            "properties": {
                                "status": {"enum": ["cancelled", "deleted"]},
                                "id": {"type": "string"},
                            },
                        },
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
                "responses": _responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["status", "id"],
                            "properties": {
                                "status": {"const": "scheduled"},
                                "id": {"type": "string"},
                            },
                        },
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
        properties: Schema = {
            "status": {"const": past},
            "queue": {"type": "string"},
            "members": {"type": "integer", "description": "Members that did it."},
        }
        if command == "purge":
            properties["copies_deleted"] = {"type": "integer"}
        paths[f"/{{queue}}/_{command}"] = {
            "parameters": [queue],
            "post": {
                "summary": f"{command.capitalize()} the queue on every member",
                "responses": _responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["status", "queue", "members"],
                            "properties": properties,
                        },
                        f"{past.capitalize()} on every member.",
                    ),
                    e400="A bad queue name.",
                    e503="Not every member answered in time (safe to repeat); or this node is "
                    "not a member yet.",
                ),
            },
        }
    return paths


def _page(summary: str) -> Schema:
    return {
        "summary": summary,
        "responses": {
            "200": {
                "description": "The page.",
                "content": {"text/html; charset=utf-8": {"schema": {"type": "string"}}},
            },
            **{code: _error(text) for code, text in SERVER_ERRORS.items()},
        },
    }


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
        "components": {"schemas": _schemas(limits, config)},
    }
