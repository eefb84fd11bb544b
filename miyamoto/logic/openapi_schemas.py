"""The OpenAPI description's component schemas: a task (JSON and form), replies, views."""

from __future__ import annotations

from .config import NodeConfig
from .enqueue_parse import METHODS
from .errors import duration_text, size_text
from .limits import Limits
from .openapi_parts import (
    INTEGER,
    NUMBER,
    STATES,
    STRING,
    TASK_ID_PATTERN,
    Schema,
    array_of,
    described,
    json_body,
    nullable,
    obj,
    ref,
)

_DECIMAL_PATTERN = r"^\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_INTEGER_PATTERN = r"^[+-]?[0-9]+$"
_INT64_MAX = 2**63 - 1


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
            "pattern": TASK_ID_PATTERN,
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


def component_schemas(limits: Limits, config: NodeConfig) -> dict[str, Schema]:
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
    state: Schema = {"type": "string", "enum": STATES}
    counts = described(
        obj({state_name: INTEGER for state_name in STATES}),
        "Tasks by state, each task once across the cluster.",
    )
    return {
        "Error": described(
            obj(
                {"status": {"const": "error"}, "error": STRING},
                {
                    "id": described(
                        STRING,
                        "The task's id, when it may have been stored (503, 507 of an "
                        "enqueue): retry with it.",
                    ),
                    "state": described(STRING, "The task's state (409)."),
                    "warnings": warnings,
                },
            ),
            "Every error. `error` names the field and states any limit.",
        ),
        "JsonTask": json_task,
        "FormTask": form_task,
        "Scheduled": obj(
            {
                "status": {"const": "scheduled"},
                "id": STRING,
                "queue": STRING,
                "eta": described(NUMBER, "Unix seconds."),
                "replicas": described(INTEGER, "Copies stored."),
            },
            {"warnings": warnings},
        ),
        "Duplicate": obj(
            {"status": {"const": "duplicate"}, "id": STRING, "state": state},
            {"warnings": warnings},
        ),
        "TaskView": obj(
            {
                "id": STRING,
                "queue": STRING,
                "state": state,
                "method": STRING,
                "url": STRING,
                "eta": NUMBER,
                "created": NUMBER,
                "attempts": INTEGER,
            },
            {
                "next_attempt": nullable(NUMBER),
                "executions": INTEGER,
                "first_attempt": nullable(NUMBER),
                "last_attempt": nullable(NUMBER),
                "last_status": nullable(INTEGER),
                "last_error": nullable(STRING),
                "last_response": nullable(STRING),
                "finished": nullable(NUMBER),
                "holders": array_of(obj({}, {"node": STRING, "copy": INTEGER})),
                "retry": described(
                    obj(
                        {},
                        {
                            "retry_limit": INTEGER,
                            "age_limit": NUMBER,
                            "min_backoff": NUMBER,
                            "max_backoff": NUMBER,
                            "max_doublings": INTEGER,
                            "deadline": NUMBER,
                        },
                    ),
                    "The retry policy in force: the task's own settings as its queue narrowed "
                    "them (times in seconds).",
                ),
                "copies": described(
                    array_of(obj({}, {"node": STRING, "state": state})),
                    "One per member that answered with a copy (GET of a task).",
                ),
            },
        ),
        "QueueInfo": obj(
            {
                "queue": STRING,
                "counts": counts,
                "oldest_eta": nullable(NUMBER),
                "attempts_last_minute": INTEGER,
                "rate_per_s": nullable(NUMBER),
                "paused_on": array_of(STRING),
                "members_answered": INTEGER,
                "members_unanswered": described(
                    array_of(STRING),
                    "Members that did not answer in time: their tasks are missing from the counts.",
                ),
            },
            {
                "state": state,
                "tasks": array_of(ref("TaskView")),
                "next_cursor": described(
                    nullable(STRING),
                    "With ?state=: pass it as `cursor` for the next page; null after the last "
                    "page. A page may hold fewer than `limit` tasks and still have a next one.",
                ),
            },
        ),
        "QueueList": obj(
            {
                "queues": described(
                    array_of(
                        obj(
                            {
                                "queue": STRING,
                                "counts": counts,
                                "oldest_eta": nullable(NUMBER),
                                "attempts_last_minute": INTEGER,
                                "rate_per_s": nullable(NUMBER),
                                "paused_on": array_of(STRING),
                            }
                        )
                    ),
                    f"Sorted by name; at most {limits.active_queues_max} (the active queue "
                    "limit). A queue is known when a member holds a copy of one of its tasks, "
                    "used it lately, has it paused, or names it in its queues file.",
                ),
                "truncated": described(
                    {"type": "boolean"},
                    f"More queues are known than the {limits.active_queues_max} listed.",
                ),
                "members_answered": INTEGER,
                "members_unanswered": described(
                    array_of(STRING),
                    "Members that did not answer in time: their queues and tasks are missing.",
                ),
            }
        ),
        "Cluster": obj(
            {
                "node": STRING,
                "role": {
                    "type": "string",
                    "enum": ["joining", "follower", "pre_candidate", "candidate", "leader", "left"],
                },
                "leader": nullable(STRING),
                "term": INTEGER,
                "epoch": INTEGER,
                "members": array_of(
                    obj(
                        {}, {"node": STRING, "state": {"enum": ["alive", "unreachable", "unknown"]}}
                    )
                ),
                "in_majority": {"type": "boolean"},
            },
            {
                "copies_held": INTEGER,
                "under_replicated": INTEGER,
                "leave": described(
                    LEAVE, "Only while the node leaves or after it left (POST /_cluster/leave)."
                ),
                "stats": {"type": "object", "additionalProperties": INTEGER},
                "peer_endpoint": described(
                    obj(
                        {},
                        {
                            "batches": INTEGER,
                            "messages": INTEGER,
                            "batches_malformed": INTEGER,
                            "authenticated": {"type": "boolean"},
                            "auth": {"type": "object", "additionalProperties": INTEGER},
                        },
                    ),
                    "What reached POST /_peer since the process started.",
                ),
            },
        ),
    }


LEAVE: Schema = obj(
    {
        "state": {"enum": ["leaving", "left"]},
        "step": {"enum": ["handing_off", "draining", "removing", "left"]},
        "copies_to_hand_off": described(
            INTEGER, "Pending copies here whose task still lacks copies on the others."
        ),
        "copies_awaiting_ack": INTEGER,
        "deliveries_in_flight": INTEGER,
    },
    {"copies_sent": INTEGER, "started": nullable(NUMBER)},
)
"""How far `POST /_cluster/leave` got (docs/cluster.md, "Leaving a cluster")."""


def leave_answer(description: str) -> Schema:
    """The answer of `POST /_cluster/leave`: its progress, with the node and a status."""
    answer = obj({"status": {"enum": ["leaving", "left"]}, "node": STRING})
    answer["required"] = [*answer["required"], *LEAVE["required"]]
    answer["properties"] = {**answer["properties"], **LEAVE["properties"]}
    return json_body(answer, description)


HOLD: Schema = obj(
    {
        "queue": STRING,
        "destination": described(STRING, "host:port ([v6]:port for IPv6)"),
        "until": described(STRING, "When the hold ends, Unix seconds (decimal)."),
        "remaining_ms": INTEGER,
    }
)
"""One destination hold in `GET /_destinations`."""
