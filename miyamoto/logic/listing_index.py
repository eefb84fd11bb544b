"""The primary copies of each queue in listing order, so a page of `GET /{queue}?state=` starts
at its cursor in O(log n) instead of sorting the whole queue.

The order is (ETA, task id): fixed for a task's life (neither changes), the same on every
member, and total within a queue (ids are unique there), so pages merged from several members
interleave correctly and a cursor means the same thing everywhere.

Each queue's copies are kept in sorted blocks of at most BLOCK_TASKS_MAX (a "sorted list of
lists"): an insert or a removal is two binary searches and a shift within one block, not a
shift of millions of entries. The blocks hold the tasks themselves (8 bytes an entry); keys are
computed when compared.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from operator import attrgetter

from .task import Task

ListingKey = tuple[int, str]
"""(ETA ms, task id): a task's place in its queue's listing."""

BLOCK_TASKS_MAX = 512
"""Entries a block holds before it is split in two (a shift within a block moves at most this
many pointers; the list of blocks has one entry per ~BLOCK_TASKS_MAX/2 or more tasks)."""

listing_key: attrgetter[ListingKey] = attrgetter("eta_ms", "id")


class _SortedTasks:
    """One queue's tasks in listing order."""

    __slots__ = ("_blocks", "_lasts", "count")

    def __init__(self) -> None:
        self._blocks: list[list[Task]] = []
        self._lasts: list[ListingKey] = []
        """The key of each block's last task (ascending): which block a key belongs in."""
        self.count = 0

    def add(self, task: Task) -> None:
        key = listing_key(task)
        blocks, lasts = self._blocks, self._lasts
        self.count += 1
        if not blocks:
            blocks.append([task])
            lasts.append(key)
            return
        if key > lasts[-1]:  # the latest ETA so far (new tasks mostly are): no search
            i = len(blocks) - 1
            block = blocks[i]
            block.append(task)
        else:
            i = bisect_left(lasts, key)
            block = blocks[i]
            block.insert(bisect_left(block, key, key=listing_key), task)
        if len(block) > BLOCK_TASKS_MAX:
            half = len(block) // 2
            blocks[i : i + 1] = [block[:half], block[half:]]
            lasts[i : i + 1] = [listing_key(block[half - 1]), listing_key(block[-1])]
        else:
            lasts[i] = listing_key(block[-1])

    def remove(self, task: Task) -> None:
        key = listing_key(task)
        blocks, lasts = self._blocks, self._lasts
        i = bisect_left(lasts, key)
        block = blocks[i]
        j = bisect_left(block, key, key=listing_key)
        assert block[j] is task, (task.queue, task.id)
        del block[j]
        self.count -= 1
        if block:
            lasts[i] = listing_key(block[-1])
        else:
            del blocks[i]
            del lasts[i]

    def after(self, key: ListingKey | None) -> Iterator[Task]:
        """The tasks whose key is greater than `key` (all for None), in order."""
        blocks = self._blocks
        if key is None:
            i, j = 0, 0
        else:
            i = bisect_right(self._lasts, key)
            if i == len(blocks):
                return
            j = bisect_right(blocks[i], key, key=listing_key)
        yield from blocks[i][j:]
        for block in blocks[i + 1 :]:
            yield from block


class ListingIndex:
    def __init__(self) -> None:
        self._queues: dict[str, _SortedTasks] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, task: Task) -> None:
        tasks = self._queues.get(task.queue)
        if tasks is None:
            tasks = self._queues[task.queue] = _SortedTasks()
        tasks.add(task)
        self._count += 1

    def remove(self, task: Task) -> None:
        tasks = self._queues[task.queue]
        tasks.remove(task)
        self._count -= 1
        if not tasks.count:  # forget queues that hold nothing, or names would pile up
            del self._queues[task.queue]

    def after(self, queue: str, key: ListingKey | None) -> Iterator[Task]:
        """`queue`'s indexed tasks after `key` in listing order. The caller must not change
        the index while it iterates."""
        tasks = self._queues.get(queue)
        return iter(()) if tasks is None else tasks.after(key)
