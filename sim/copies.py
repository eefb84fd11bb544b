"""Which nodes really stored a copy an enqueue placed: what a "scheduled" answer's `replicas`
is checked against.

A copy is told apart by its task (queue, id) and its `created_ms`, the coordinator's clock when
it took the enqueue: a later enqueue of the same id that places copies of its own makes them
with another `created_ms`. Running nodes are read when the answer goes out; the copies of a
node that crashed before are kept here at its crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from miyamoto.logic.node import Node

from . import observe

CopyKey = tuple[str, str, int]
"""(queue, task id, created_ms)."""


class CopyLedger:
    def __init__(self) -> None:
        self._crashed: dict[CopyKey, set[str]] = {}
        """Copies held by processes that crashed since: which nodes held each."""

    def process_ended(self, node_id: str, node: Node) -> None:
        """`node` crashes: remember every copy it held."""
        for key in observe.copies_held(node):
            self._crashed.setdefault(key, set()).add(node_id)

    def stored_on(
        self, running: Mapping[str, Node], queue: str, task_id: str, created_ms: int
    ) -> set[str]:
        """The distinct nodes that stored the copy made at `created_ms` (by any incarnation)."""
        nodes = set(self._crashed.get((queue, task_id, created_ms), ()))
        for node_id, node in running.items():
            if observe.copy_created_ms(node, queue, task_id) == created_ms:
                nodes.add(node_id)
        return nodes


def scheduled_answer(body: bytes) -> tuple[str, str, int] | None:
    """(queue, task id, replicas) of a "scheduled" enqueue answer; None for any other body."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("status") != "scheduled":
        return None
    queue, task_id, replicas = document.get("queue"), document.get("id"), document.get("replicas")
    if not isinstance(queue, str) or not isinstance(task_id, str) or type(replicas) is not int:
        return None
    return queue, task_id, replicas
