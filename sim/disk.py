"""A virtual node's disk, and the commit gate in front of it (the simulator's `--disks`).

The real durable node (miyamoto/io/durable/commit_gate.py) holds each turn's actions until
what the turn changed (task copies, paused queues, the membership's hard state) is committed,
commits one at a time, and lets turns that arrive during a commit share the next one. The same
rules here, on the virtual clock: a commit takes a seeded time; when it ends, its writes are on
the disk and the turns that waited for it are carried out, in order.

What a crash does: the disk (`SimDisk`) keeps every commit that ended; the gate (`DiskGate`,
one per process) is lost with the process, and with it the commit in flight (its writes never
reach the disk) and the turns it held (their answers and messages never leave). A crash may
come right after a commit ends and before its turns are carried out: the writes are kept and
the messages lost. A disk lost (a node replaced by an empty one) is `SimDisk.wipe`.

Copies are written through the logic's own encoding (miyamoto.logic.persistence) and read back
through its decoding, as the SQLite store does, so a field the encoding forgets is lost here too.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from miyamoto.logic.local_tasks import TaskChanges
from miyamoto.logic.pending_writes import PendingWrites, TaskKey
from miyamoto.logic.persistence import MembershipHardState, TaskRow, decode_task, encode_task
from miyamoto.logic.task import Task

COMMIT_MS_MIN: Final = 1
COMMIT_MS_MAX: Final = 20
"""A commit (write + fsync) takes 1 to 20 ms of virtual time, drawn per commit."""
HELD_TURNS_MAX: Final = 100_000
"""As the real gate: more turns waiting than this is a node that cannot keep up (a bug here)."""

Turn = TypeVar("Turn")
"""What the world keeps of a turn it holds (its actions, and when and under what it was made)."""


@dataclass(slots=True, kw_only=True)
class SimDisk:
    """What one node's disk holds: only what commits that ended wrote."""

    hard_state: MembershipHardState | None = None
    tasks: dict[TaskKey, TaskRow] = field(default_factory=dict)
    paused: dict[str, bool] = field(default_factory=dict)
    commits: int = 0

    def load_tasks(self) -> list[Task]:
        return [decode_task(row) for _, row in sorted(self.tasks.items())]

    def paused_queues(self) -> list[str]:
        return sorted(name for name, paused in self.paused.items() if paused)

    def task_ids(self) -> set[str]:
        return {task_id for _, task_id in self.tasks}

    def wipe(self) -> None:
        """The disk is lost: the node that starts on it starts empty."""
        self.hard_state = None
        self.tasks.clear()
        self.paused.clear()

    def write(self, commit: Commit) -> None:
        if commit.hard_state is not None:
            self.hard_state = commit.hard_state
        self.tasks.update(commit.rows)
        for key in commit.deleted:
            self.tasks.pop(key, None)
        self.paused.update(commit.paused)
        self.commits += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """One transaction: encoded when it starts (the copies change as soon as the next turn
    runs), on the disk when it ends."""

    generation: int
    hard_state: MembershipHardState | None
    rows: dict[TaskKey, TaskRow]
    deleted: tuple[TaskKey, ...]
    paused: dict[str, bool]


class DiskGate(Generic[Turn]):
    """One process's commit gate: `after_turn` says whether a turn goes out now; `start_commit`
    and `commit_ended` run the commits (the world schedules their end on its agenda)."""

    def __init__(
        self,
        disk: SimDisk,
        *,
        hard_state: Callable[[], MembershipHardState],
        take_changes: Callable[[], TaskChanges | None],
        find_task: Callable[[str, str], Task | None],
        rng: random.Random,
    ) -> None:
        """Before it, the start's own state is on `disk` (the world commits it at boot)."""
        assert disk.hard_state is not None
        self.disk = disk
        self._hard_state = hard_state
        self._take_changes = take_changes
        self._find_task = find_task
        self._rng = rng
        self._pending = PendingWrites(disk.hard_state)
        self._held: collections.deque[tuple[int, Turn]] = collections.deque()
        """(generation that must be on disk first, the turn), oldest first."""
        self.in_flight: Commit | None = None

    @property
    def turns_held(self) -> int:
        return len(self._held)

    def after_turn(self, turn: Turn) -> bool:
        """Whether to carry out `turn` now: yes when nothing it or a turn before it changed
        waits for the disk; else it is held until `commit_ended` releases it."""
        self._pending.notice(self._hard_state(), self._take_changes())
        if not self._held and self._pending.settled:
            return True
        assert len(self._held) < HELD_TURNS_MAX, "the simulated disk cannot keep up"
        self._held.append((self._pending.generation, turn))
        return False

    def start_commit(self) -> int | None:
        """Start a commit of everything changed so far if none is running and something
        waits; how long it takes (ms), or None."""
        if self.in_flight is not None or self._pending.settled:
            return None
        unwritten = self._pending.take()
        rows: dict[TaskKey, TaskRow] = {}
        deleted = []
        for key in sorted(unwritten.keys):
            task = self._find_task(*key)
            if task is None:
                deleted.append(key)
            else:
                rows[key] = encode_task(task)
        self.in_flight = Commit(
            generation=unwritten.generation,
            hard_state=unwritten.hard_state,
            rows=rows,
            deleted=tuple(deleted),
            paused=unwritten.paused,
        )
        return self._rng.randint(COMMIT_MS_MIN, COMMIT_MS_MAX)

    def commit_ended(self) -> list[Turn]:
        """The commit in flight is on the disk now: the turns it released, oldest first."""
        commit = self.in_flight
        assert commit is not None
        self.in_flight = None
        self.disk.write(commit)
        self._pending.settle(commit.generation)
        released = []
        while self._held and self._held[0][0] <= commit.generation:
            released.append(self._held.popleft()[1])
        return released
