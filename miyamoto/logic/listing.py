"""Pages of `GET /{queue}?state=...&limit=N&cursor=C`: one member's page, the merge of the
members' pages, and the cursor.

Every member lists the tasks it answers for (its primary copies) in one total order, (ETA,
task id) (listing_index.py), starting after the cursor. A member stops at `limit` matches or
after looking at LISTING_SCAN_MAX copies, and says up to which key its answer is
complete. The node that was asked merges the answers, keeps only what every member has covered
(the smallest of those keys), cuts to `limit` and hands the last key back as the next cursor:
so walking the pages returns each task once, in order, whichever node answers each page, as
long as no task changes its primary copy meanwhile (a member change may move one).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from .enqueue_values import CLIENT_ID
from .errors import ClientError
from .limits import Limits
from .listing_index import ListingKey, listing_key
from .local_tasks import LocalTasks
from .task import Task, TaskState

LISTING_LIMIT_DEFAULT = 100
LISTING_SCAN_MAX = 5_000
"""Copies one member looks at for one page: a page of a rare state among millions of others
ends early, with a cursor to go on, so no request walks a whole queue (5,000 take ~1 ms)."""
ETA_MS_MAX = 2**53
"""The largest ETA a cursor may carry (JSON-exact; far past any ETA a task may have)."""


def cursor_text(key: ListingKey) -> str:
    """The opaque cursor for "after `key`" (URL-safe base64, no padding)."""
    raw = f"{key[0]}.{key[1]}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def cursor_chars_max(limits: Limits) -> int:
    return 4 * ((len(str(ETA_MS_MAX)) + 1 + limits.task_id_chars_max + 2) // 3)


def parse_cursor(text: str, limits: Limits) -> ListingKey:
    """The key a cursor from `cursor_text` names; ClientError 400 for anything else."""
    maximum = cursor_chars_max(limits)
    error = ClientError(
        400,
        f"cursor must be the next_cursor of an earlier answer (up to {maximum} characters), "
        f"not {text[:80]!r}",
    )
    if not 0 < len(text) <= maximum:
        raise error
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise error from None
    eta, dot, task_id = raw.partition(".")
    valid_eta = (
        len(eta) <= len(str(ETA_MS_MAX))
        and eta.isascii()
        and eta.isdigit()
        and int(eta) <= ETA_MS_MAX
    )
    valid_id = 0 < len(task_id) <= limits.task_id_chars_max and CLIENT_ID.fullmatch(task_id)
    if not (dot and valid_eta and valid_id):
        raise error
    return int(eta), task_id


def member_page(
    tasks: LocalTasks,
    queue: str,
    state: TaskState,
    after: ListingKey | None,
    limit: int,
    scan_max: int = LISTING_SCAN_MAX,
) -> tuple[list[Task], ListingKey | None]:
    """Up to `limit` of the tasks this member answers for in `state`, after `after`, and the
    key up to which that answer is complete (None: to the end of the queue)."""
    page: list[Task] = []
    last: Task | None = None
    for scanned, task in enumerate(tasks.listing.after(queue, after)):
        if scanned == scan_max:
            assert last is not None
            return page, listing_key(last)  # looked at enough: the next page goes on
        last = task
        if task.state is state:
            page.append(task)
            if len(page) == limit:
                return page, listing_key(task)
    return page, None


def merged_page(
    pages: Iterable[tuple[list[dict[str, Any]], ListingKey | None]], limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The members' pages (task JSON in listing order, and up to which key each is complete)
    as one page of at most `limit` tasks, and the cursor of the next page (None: the end)."""
    bound: ListingKey | None = None
    items: list[tuple[ListingKey, dict[str, Any]]] = []
    for tasks, complete_to in pages:
        if complete_to is not None and (bound is None or complete_to < bound):
            bound = complete_to
        items.extend((_json_key(task), task) for task in tasks)
    items.sort(key=lambda item: item[0])
    if bound is not None:
        items = [item for item in items if item[0] <= bound]
    if len(items) > limit:
        del items[limit:]
        return [task for _, task in items], cursor_text(items[-1][0])
    return [task for _, task in items], None if bound is None else cursor_text(bound)


def _json_key(task: dict[str, Any]) -> ListingKey:
    """A listed task's key, from its JSON (the ETA in seconds, as `render.seconds` wrote it:
    ms / 1000 is exact enough to round back to the same ms)."""
    return round(task["eta"] * 1000), task["id"]


def listing_query(
    query: tuple[tuple[str, str], ...], limits: Limits
) -> tuple[str | None, int, ListingKey | None]:
    """`?state=failed&limit=N&cursor=C` of `GET /{queue}`: which tasks to list, how many at
    most, and after which key."""
    params = dict(query)
    unknown = sorted(set(params) - {"state", "limit", "cursor"})
    if unknown:
        raise ClientError(
            400, f"unknown query parameter {unknown[0]!r}; use state, limit and cursor"
        )
    state = params.get("state")
    if state is not None and state not in {s.value for s in TaskState}:
        names = ", ".join(s.value for s in TaskState)
        raise ClientError(400, f"state must be one of {names}, not {state!r}")
    text = params.get("limit", str(LISTING_LIMIT_DEFAULT))
    maximum = limits.listing_tasks_max
    if not (len(text) <= 9 and text.isascii() and text.isdigit() and 1 <= int(text) <= maximum):
        raise ClientError(
            400,
            f"limit must be a whole number from 1 to {maximum} (default "
            f"{LISTING_LIMIT_DEFAULT}), not {text[:80]!r}",
        )
    cursor = params.get("cursor")
    after = None if cursor is None else parse_cursor(cursor, limits)
    return state, int(text), after


def page_json(task_texts: Iterable[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in task_texts]
