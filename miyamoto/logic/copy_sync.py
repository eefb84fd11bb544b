"""The question a copy asks the members before it fires, and what their answers decide
(docs/replication.md, "Asking before firing").

Pure: the node sends the questions, feeds each answer to `Question.take`, and carries out the
`Verdict`. A copy asks when it comes due past the first in line, when its holders may not know
it, and when its node was out of standing (it may have been removed and the task repaired
elsewhere).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .replica_messages import Holders
from .task import Task, TaskState


class Verdict(enum.Enum):
    FINISH = "finish"
    """Some member has the task succeeded or failed (or cancelled by a cancel confirmed
    without us): take that state, do not fire."""
    WAIT_TAKEN = "wait, taken"
    """Another holder is delivering or retrying it (its claim may not have reached us): wait
    as a claim would have us wait, then ask again."""
    WAIT_AHEAD = "wait, ahead"
    """Copies before ours in the order still wait (held back like ours, or placed by enqueues
    that raced): give them their turn, then ask again."""
    JOIN_FOREIGN = "join foreign"
    """Two groups of copies, placed by enqueues of one id that saw different member lists (or
    skipped different unreachable members), neither knowing the other. Ours is not where the
    id is placed now, so the other group is the one every later enqueue finds: join it, last
    in line, rather than fire beside it."""
    FIRE = "fire"
    """Still one of its holders, nobody ahead: our copy is as good as before."""
    JOIN = "join"
    """It lives on elsewhere (repaired, or placed twice through members that disagreed) and
    its holders do not know of our copy. Join it to theirs, last in line, rather than drop it:
    if every side dropped its copy, the task would be lost. (Last in line, it asks again
    before it fires.)"""
    FIRE_AND_REPAIR = "fire and repair"
    """Nobody else has it: ours is the last copy. Deliver it and make the others again (also on
    holders that answered they have none: they lost it, or never stored it), so that the
    task's end is known where a repeat of its id will look."""
    KEEP = "keep"
    """Nothing to change (the copy was not due: a check after a return to standing)."""


@dataclass(slots=True, kw_only=True)
class Question:
    """One copy's question to the members, and what their answers said so far."""

    task: Task
    deadline_ms: int
    waiting: set[str]
    """Members not heard yet."""
    answered: bool = False
    """Some member answered (with or without a copy of the task)."""
    without_copy: set[str] = field(default_factory=set)
    """Members that answered that they have no copy of the task."""
    states: list[str] = field(default_factory=list)
    listed_by_others: bool = False
    """Some member holds the task pending and still names this node among its holders."""
    their_holders: Holders = ()
    """The holder list of a member that holds the task pending (when one does)."""
    foreign_holders: Holders = ()
    """The holder list of a member that holds the task pending and does not list us: a group
    of copies placed without ours."""
    taken: bool = False
    """A member has taken the task over: it is delivering it, or retrying it."""
    ahead: int = 0
    """Members whose copy waits and comes before ours in the order (copy index, then node):
    it should have fired first, and may be about to."""
    finals: list[str] = field(default_factory=list)
    """Final states to adopt: succeeded and failed always; cancelled only from a member whose
    holder list leaves this node out (a cancel confirmed without us, after a repair), or whose
    copy was cancelled before ours was made. Another cancelled copy that lists us proves
    nothing about ours (no cancel is confirmed without our answer: a DELETE refused with 409
    may have cancelled the waiting copies), so it is no reason to drop a copy still alive."""

    def take(self, sender: str, view: dict[str, Any] | None, me: str) -> None:
        """`sender`'s answer: its copy as `GET /{queue}/{id}` shows it, or None."""
        self.waiting.discard(sender)
        self.answered = True
        if view is None:
            self.without_copy.add(sender)
            return
        self.states.append(view["state"])
        lists_me = any(holder["node"] == me for holder in view["holders"])
        state = TaskState(view["state"])
        if lists_me:
            self.listed_by_others = True
        if state in (TaskState.DELIVERING, TaskState.RETRYING):
            self.taken = True
        elif state is TaskState.SCHEDULED:
            theirs = next((h["copy"] for h in view["holders"] if h["node"] == sender), None)
            if theirs is not None and (theirs, sender) < (self.task.copy_index, me):
                self.ahead += 1
        if not state.is_final:
            self.their_holders = tuple((h["node"], h["copy"]) for h in view["holders"])
            if not lists_me:
                self.foreign_holders = self.their_holders
        elif state is not TaskState.CANCELLED or not lists_me or self._before_ours(view):
            # (A copy cancelled before ours was made: that cancel was confirmed without our
            # copy, whoever the copy lists; a node id in it may name our process's
            # predecessor.)
            self.finals.append(state.value)

    def decided(self) -> bool:
        """Everyone answered, or one answer settles it (a final state)."""
        return not self.waiting or bool(self.finals)

    def must_ask_again(self) -> bool:
        """Nobody answered (we are cut off), or a holder whose copy comes before ours did not
        (its answer lost, or it died): that holder may have delivered the task, its finished
        notice lost too. (A holder the leader reports unreachable, or that is no member any
        more, is not asked.)"""
        task = self.task
        silent_ahead = any(n in self.waiting for n, k in task.holders if k < task.copy_index)
        return not self.answered or (silent_ahead and not self.finals)

    def verdict(self, *, due: bool, preferred: bool) -> Verdict:
        """What the copy does now. `due`: it came due and waits for this answer; `preferred`:
        its holders include every member the id's hash prefers now."""
        if self.finals:
            return Verdict.FINISH
        if self.taken:
            return Verdict.WAIT_TAKEN
        if self.ahead and due:
            return Verdict.WAIT_AHEAD
        if self.foreign_holders and not preferred:
            return Verdict.JOIN_FOREIGN
        if self.listed_by_others:
            return Verdict.FIRE if due else Verdict.KEEP
        if self.their_holders:
            return Verdict.JOIN
        return Verdict.FIRE_AND_REPAIR if due else Verdict.KEEP

    def _before_ours(self, view: dict[str, Any]) -> bool:
        """Whether a member's copy finished before ours was made (a repeat of the id made ours
        after the task had ended there)."""
        finished = view["finished"]
        return finished is not None and round(finished * 1000) < self.task.created_ms

