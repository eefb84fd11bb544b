"""Building blocks of the OpenAPI description: schema helpers and the errors any request can get.

Besides each operation's own answers, any request can get what the HTTP server itself answers
(`SERVER_ERRORS`): a malformed request (400), a request too slow to arrive (408), a body or
headers over the limit (413, 431), and a node too busy or too slow to answer (503).
"""

from __future__ import annotations

from typing import Any

from .enqueue_parse import JSON_CONTENT_TYPE
from .task import TaskState

Schema = dict[str, Any]

QUEUE_NAME_PATTERN = "^[A-Za-z0-9-][A-Za-z0-9_-]*$"
TASK_ID_PATTERN = "^[A-Za-z0-9_-]+$"
STATES = [state.value for state in TaskState]
STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}

SERVER_ERRORS = {
    "400": "Malformed HTTP (the server could not parse the request).",
    "408": "The whole request did not arrive within 30 s of its first byte.",
    "413": "The request body is over the limit.",
    "431": "The request line and headers are over the limit.",
    "503": "The node is busy (too many connections) or did not answer in time; retry.",
}
"""What the HTTP server may answer to any request, before or instead of the node."""

_REF = "#/components/schemas/"


def ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON_CONTENT_TYPE: {"schema": schema}}}


def error(description: str) -> Schema:
    return json_body(ref("Error"), description)


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def array_of(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """An object with these required fields (in this order) and these optional ones.

    The one helper every object schema here is built from, so they all look alike.
    """
    schema: Schema = {"type": "object"}
    if required:
        schema["required"] = list(required)
    schema["properties"] = {**required, **(optional or {})}
    return schema


def described(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description}


def reply(status: str, /, **fields: Schema) -> Schema:
    """A JSON reply `{"status": status, ...fields}`, every field required."""
    return obj({"status": {"const": status}, **fields})


def responses(ok: Schema, **errors: str) -> Schema:
    """`ok` (the 200) and each error status with its meaning, plus the server's own errors."""
    result: Schema = {"200": ok}
    merged = {**SERVER_ERRORS}
    for status, meaning in errors.items():
        code = status.removeprefix("e")
        merged[code] = f"{meaning} {merged[code]}" if code in merged else meaning
    for code in sorted(merged):
        result[code] = error(merged[code])
    return result


def path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def page(summary: str) -> Schema:
    return {
        "summary": summary,
        "responses": {
            "200": {
                "description": "The page.",
                "content": {"text/html; charset=utf-8": {"schema": STRING}},
            },
            **{code: error(text) for code, text in SERVER_ERRORS.items()},
        },
    }
