"""What a durable node changed and has not committed yet: the bookkeeping of a commit gate.

Two gates hold a turn's actions until its changes are on disk: the daemon's
(`io/durable/commit_gate.py`, SQLite in a worker thread) and the simulator's (`sim/disk.py`, a
virtual disk on the agenda). They differ in how they write; what must be written, and which
turns may go once a commit is done, is this one piece of code.

Every turn that changed something starts a new generation. A commit takes everything changed
up to its start (`take`) and, once done, settles that generation: the turns held for it, or for
an older one, may go. A failed commit's changes are put back, newer changes made meanwhile win.
"""

from __future__ import annotations

from dataclasses import dataclass

from .local_tasks import TaskChanges
from .persistence import MembershipHardState

TaskKey = tuple[str, str]
"""(queue, task id)"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unwritten:
    """What one commit writes: changed up to `generation` and not on disk yet."""

    generation: int
    hard_state: MembershipHardState | None
    """The membership's hard state when it changed since the last commit, else None."""
    keys: set[TaskKey]
    """Copies changed or dropped (the gate looks up which)."""
    paused: dict[str, bool]


class PendingWrites:
    def __init__(self, committed: MembershipHardState) -> None:
        """`committed`: the hard state on disk already (written before the node serves)."""
        self._seen = committed
        self._hard_state_dirty = False
        self._keys: set[TaskKey] = set()
        self._paused: dict[str, bool] = {}
        self.generation = 0
        """Counts turns that changed something."""
        self.settled_generation = 0
        """The last generation whose commit is done (or failed)."""

    @property
    def settled(self) -> bool:
        """Whether every generation's commit is done: a turn that changed nothing may go."""
        return self.settled_generation == self.generation

    @property
    def dirty(self) -> bool:
        """Whether changes wait to be written (noticed since the last `take`, or put back)."""
        return bool(self._hard_state_dirty or self._keys or self._paused)

    def notice(self, hard_state: MembershipHardState, changes: TaskChanges | None) -> bool:
        """After a turn: remember what it changed; whether it changed anything (a new
        generation then)."""
        changed = False
        if hard_state is not self._seen and hard_state != self._seen:
            self._seen = hard_state
            self._hard_state_dirty = changed = True
        if changes is not None:
            self._keys |= changes.keys
            self._paused.update(changes.paused)
            changed = True
        if changed:
            self.generation += 1
        return changed

    def take(self) -> Unwritten:
        """Everything changed up to now, for one commit; nothing is dirty after it."""
        unwritten = Unwritten(
            generation=self.generation,
            hard_state=self._seen if self._hard_state_dirty else None,
            keys=self._keys,
            paused=self._paused,
        )
        self._keys, self._paused, self._hard_state_dirty = set(), {}, False
        return unwritten

    def put_back(self, unwritten: Unwritten) -> None:
        """A commit of `unwritten` failed: the next one writes it (changes made since stay
        newer)."""
        self._keys |= unwritten.keys
        for name, value in unwritten.paused.items():
            self._paused.setdefault(name, value)
        self._hard_state_dirty = self._hard_state_dirty or unwritten.hard_state is not None

    def settle(self, generation: int) -> None:
        """The commit that `take` gave for `generation` is done (or failed)."""
        self.settled_generation = generation
