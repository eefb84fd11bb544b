"""`--leave-on-exit`: on SIGINT or SIGTERM the node leaves the cluster for good before it stops
(docs/cluster.md, "Leaving a cluster"), so shrinking a cluster by stopping a node keeps R copies
of every task and the others need not wait `member_timeout` to remove it.

The shell makes no decision here: it asks the node's own API (`POST /_cluster/leave`, the same
request an operator sends, without the token check: the process leaves on its own signal) and
asks again until the node answers that it has left, or the time is up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from ..logic.http import HttpRequest, HttpResponse

log = logging.getLogger("miyamoto.leave")

LEAVE_POLL_S: Final = 0.1
LEAVE_TIMEOUT_S_DEFAULT: Final = 60.0
"""How long a node waits to have left before it stops anyway (its copies are then repaired by
the others once the leader removes it, as after a crash)."""

ApiAsk = Callable[[HttpRequest], Awaitable[HttpResponse]]
"""The node's API, answered in this process (`NodeRuntime.handle_api_request`)."""

_LEAVE = HttpRequest(method="POST", target="/_cluster/leave")


async def leave_before_exit(ask: ApiAsk, *, timeout_s: float) -> bool:
    """Leaves the cluster; True once the node has left, False when it cannot (refused: the
    reason is logged) or the time ran out."""
    with trio.move_on_after(timeout_s):
        while True:
            response = await ask(_LEAVE)
            answer = _json(response)
            if response.status == 200:
                log.info("left the cluster: the members that stay hold every task's copies")
                return True
            if response.status != 202:
                log.warning("not leaving the cluster before exit: %s", answer.get("error", answer))
                return False
            log.debug("leaving the cluster: %s", answer)
            await trio.sleep(LEAVE_POLL_S)
    log.warning(
        "not left the cluster within %.0f s (--leave-timeout); stopping anyway: the leader "
        "removes this node after member_timeout and the others repair its copies",
        timeout_s,
    )
    return False


def _json(response: HttpResponse) -> dict[str, object]:
    try:
        value = json.loads(response.body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
