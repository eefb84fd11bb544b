"""Leaving the cluster for good (`POST /_cluster/leave`): before the leader removes this node,
every pending copy it holds gets its copies on the members that stay, so shrinking a cluster
keeps R copies of every task (docs/cluster.md, "Leaving a cluster").

The steps, each entered once:
- `handing_off`: the membership stands for no election any more (a leader steps down first)
  and tells the leader, who reports this node unreachable to every member, so placement puts no
  new copy here; the node refuses enqueues (503) and copies sent to it. For every pending copy
  here, the members that stay must hold min(R, reachable members that stay) acknowledged
  copies; the missing ones are added on the members the task's key prefers (as a repair adds
  them, after the copies in line), their holders told, and sent again every `repair_retry_ms`
  until acknowledged.
- `draining`: nothing is short any more. The node starts no new delivery (the other holders
  fire the copies that come due, as they do when a holder is gone) and waits for the deliveries
  in flight, whose outcomes reach the other holders as usual.
- `removing`: it tells the leader its copies are handed off; the leader removes it.
- `left`: the acknowledged member list no longer names it. It forgets its pending copies (they
  live on the others) and refuses every peer message.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Final

from .actions import Action
from .coordinator import Coordinator
from .core import NodeCore
from .errors import ClientError
from .http import HttpRequest, HttpResponse, json_response
from .repair import Repair
from .replica_messages import HoldersChanged, StoreAck, StoreCopy
from .ring import placement
from .task import Task, TaskState

HANDOFF_TASKS_IN_FLIGHT_MAX: Final = 10_000
"""Tasks whose new copies may await their acknowledgement at once; the rest wait their turn
(a hand-off of a million copies must not put a million messages in one step)."""
LEAVE_BODY_BYTES_MAX: Final = 1_024
_BODY_SHAPE: Final = 'the body must be empty or a JSON object {"node": "host:port"}'

_PENDING: Final = (TaskState.SCHEDULED, TaskState.RETRYING, TaskState.DELIVERING)


class LeaveStep(enum.Enum):
    MEMBER = "member"
    """Not leaving."""
    HANDING_OFF = "handing_off"
    DRAINING = "draining"
    REMOVING = "removing"
    LEFT = "left"


class Leave:
    def __init__(self, core: NodeCore, repair: Repair, coordinator: Coordinator) -> None:
        self.core = core
        self._repair = repair
        self._coordinator = coordinator
        self.step = LeaveStep.MEMBER
        self.retry_at_ms: int | None = None
        """When the copies not acknowledged yet are sent again, and the copies counted again."""
        self.unconfirmed: dict[tuple[str, str], set[str]] = {}
        """New copies sent by the hand-off and not acknowledged yet, by (queue, task id)."""
        self.short = 0
        """Pending copies here, at the last count, whose task lacks copies on the others."""
        self.copies_sent = 0
        self.started_ms: int | None = None
        self._scan_due = False
        self._members_seen: tuple[str, ...] = ()
        self._tasks_seen = 0
        """How many copies this node held at the last check: never more while leaving."""

    # -- what the rest of the node asks ------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.step is not LeaveStep.MEMBER

    @property
    def has_left(self) -> bool:
        return self.step is LeaveStep.LEFT

    @property
    def holds_deliveries(self) -> bool:
        """Starts no delivery: its copies are handed off, and it must not fire beside them."""
        return self.step in (LeaveStep.DRAINING, LeaveStep.REMOVING, LeaveStep.LEFT)

    def refusal(self) -> ClientError | None:
        """The answer to an enqueue while leaving or after (None: not leaving)."""
        match self.step:
            case LeaveStep.MEMBER:
                return None
            case LeaveStep.LEFT:
                return ClientError(
                    503, f"this node ({self.core.me}) has left the cluster (POST "
                    "/_cluster/leave); send requests to a member"
                )  # fmt: skip
            case LeaveStep.HANDING_OFF | LeaveStep.DRAINING | LeaveStep.REMOVING:
                return ClientError(
                    503, f"this node ({self.core.me}) is leaving the cluster and takes no new "
                    "tasks; send them to another member"
                )  # fmt: skip

    def progress_json(self) -> dict[str, Any] | None:
        """For `GET /_cluster` and the leave's answer (None while not leaving)."""
        if self.step is LeaveStep.MEMBER:
            return None
        return {
            "state": "left" if self.step is LeaveStep.LEFT else "leaving",
            "step": self.step.value,
            "copies_to_hand_off": self.short,
            "copies_awaiting_ack": sum(len(n) for n in self.unconfirmed.values()),
            "copies_sent": self.copies_sent,
            "deliveries_in_flight": len(self.core.tasks.in_flight),
            "started": None if self.started_ms is None else self.started_ms / 1000,
        }

    def deadlines_ms(self) -> list[int]:
        return [] if self.retry_at_ms is None else [self.retry_at_ms]

    # -- the request ----------------------------------------------------------------------------

    def request(self, request: HttpRequest, now_ms: int, actions: list[Action]) -> HttpResponse:
        """`POST /_cluster/leave`: starts leaving (202), or says how far it got (202, or 200
        once left). Refused, changing nothing: another node named (400), a node that is no
        member or hears no leader (503), a member whose leaving would leave fewer reachable
        members than R (409)."""
        self._check_body(request)
        if self.step is LeaveStep.LEFT:
            return self._answer(200)
        if self.step is not LeaveStep.MEMBER:
            return self._answer(202)
        core = self.core
        refusal = core.membership.leave_refusal()
        if refusal is not None or not core.is_member:
            raise ClientError(503, f"cannot leave: {refusal or 'this node is not a member'}")
        unreachable = set(core.membership.unreachable())
        staying = [m for m in core.members if m != core.me and m not in unreachable]
        replicas = core.config.replicas
        if len(staying) < min(replicas, len(core.members)) or not staying:
            raise ClientError(
                409, f"cannot leave: {len(staying)} other reachable member(s) would stay, "
                f"fewer than the {replicas} copies (replicas) every task keeps; add a member "
                "first (or wait until the unreachable ones are back or removed)"
            )  # fmt: skip
        self.step = LeaveStep.HANDING_OFF
        self.started_ms = now_ms
        self._tasks_seen = len(core.tasks)
        core.send(core.membership.start_leaving(core.mono_ms), actions)
        self._hand_off(now_ms, actions)
        return self._answer(202)

    def _check_body(self, request: HttpRequest) -> None:
        if len(request.body) > LEAVE_BODY_BYTES_MAX:
            raise ClientError(413, f"the body is over {LEAVE_BODY_BYTES_MAX} bytes, the limit")
        if not request.body.strip():
            return
        try:
            body = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            raise ClientError(400, _BODY_SHAPE) from None
        if not isinstance(body, dict) or set(body) - {"node"}:
            raise ClientError(400, _BODY_SHAPE)
        node = body.get("node", self.core.me)
        if node != self.core.me:
            shown = node[:300] if isinstance(node, str) else type(node).__name__
            raise ClientError(
                400, f"this node is {self.core.me}, not {shown}: send POST /_cluster/leave to "
                "the node that leaves"
            )  # fmt: skip

    def _answer(self, status: int) -> HttpResponse:
        progress = self.progress_json()
        assert progress is not None
        return json_response(status, {"status": progress["state"], "node": self.core.me,
                                      **progress})  # fmt: skip

    # -- around every step ------------------------------------------------------------------------

    def acknowledged(self, sender: str, ack: StoreAck) -> None:
        """`sender` answered a copy: acknowledged unless it had no room for it."""
        key = (ack.queue, ack.task_id)
        waiting = self.unconfirmed.get(key)
        if waiting is None or sender not in waiting or (not ack.stored and ack.state == "full"):
            return
        waiting.discard(sender)
        if not waiting:
            del self.unconfirmed[key]
            if not self.unconfirmed:
                self._scan_due = True  # (count again now rather than at the next retry)

    def forget(self, queue: str, task_id: str) -> None:
        """The copy here finished or was dropped: it needs no copies elsewhere any more."""
        if self.unconfirmed.pop((queue, task_id), None) is not None and not self.unconfirmed:
            self._scan_due = True

    def on_timer(self, now_ms: int, actions: list[Action]) -> None:
        if self.retry_at_ms is not None and self.retry_at_ms <= self.core.mono_ms:
            self._scan_due = True

    def after(self, now_ms: int, actions: list[Action]) -> None:
        """After every step: moves the leave on as far as it can go."""
        core = self.core
        if self.step is LeaveStep.MEMBER or self.step is LeaveStep.LEFT:
            return
        if core.membership.has_left:
            self._forget_copies()
            return
        if self.step is LeaveStep.HANDING_OFF:
            if self._scan_due or core.members != self._members_seen:
                self._hand_off(now_ms, actions)
            return
        if self.step is LeaveStep.DRAINING and not core.tasks.in_flight:
            self.step = LeaveStep.REMOVING
            core.send(core.membership.handed_off(core.mono_ms), actions)

    def check_invariants(self) -> None:
        """A leaving node takes no new copy; its copies are handed off before it asks to be
        removed; every copy awaited is of a task still pending here."""
        tasks = self.core.tasks
        if self.active:
            assert len(tasks) <= self._tasks_seen, (len(tasks), self._tasks_seen)
            self._tasks_seen = len(tasks)
        if self.step in (LeaveStep.DRAINING, LeaveStep.REMOVING):
            assert not self.unconfirmed and self.short == 0, (self.short, len(self.unconfirmed))
        if self.step is LeaveStep.LEFT:
            assert sum(tasks.count_in_state(s) for s in _PENDING) == 0
        for (queue, task_id), nodes in self.unconfirmed.items():
            task = tasks.get(queue, task_id)
            assert nodes and task is not None and not task.state.is_final, (queue, task_id)
        assert (self.retry_at_ms is not None) == (self.step is LeaveStep.HANDING_OFF)

    # -- the hand-off ---------------------------------------------------------------------------

    def _hand_off(self, now_ms: int, actions: list[Action]) -> None:
        """Counts the copies short and sends what is missing; when nothing is, drains."""
        core = self.core
        self._scan_due = False
        self._members_seen = core.members
        unreachable = set(core.membership.unreachable())
        staying = [m for m in core.members if m != core.me]
        reachable = [m for m in staying if m not in unreachable]
        wanted = min(core.config.replicas, len(reachable))
        short = 0
        for tasks in list(core.tasks.store.by_queue()):
            for task in list(tasks):
                if task.state.is_final:
                    continue
                if not self._task_handed_off(task, staying, reachable, wanted, now_ms, actions):
                    short += 1
        self.short = short
        self.unconfirmed = {k: v for k, v in self.unconfirmed.items() if v}
        if short == 0 and not self.unconfirmed and self._coordinator.acks_awaited() == 0:
            # (an enqueue coordinated here before the leave may still place copies here)
            self.step = LeaveStep.DRAINING
            self.retry_at_ms = None
            self.after(now_ms, actions)
            return
        self.retry_at_ms = core.mono_ms + core.config.repair_retry_ms  # a duration: monotonic

    def _task_handed_off(
        self,
        task: Task,
        staying: list[str],
        reachable: list[str],
        wanted: int,
        now_ms: int,
        actions: list[Action],
    ) -> bool:
        """Whether the members that stay hold enough acknowledged copies of `task`; if not,
        sends the missing copies (or again, those not acknowledged)."""
        core = self.core
        key = (task.queue, task.id)
        holders = task.holders or ((core.me, task.copy_index),)
        awaited = self.unconfirmed.get(key, set()) | self._repair.unconfirmed_copies.get(
            key, set()
        )
        kept = [n for n, _ in holders if n in reachable and n not in awaited]
        if len(kept) >= wanted:
            self.unconfirmed.pop(key, None)
            return True
        mine = self.unconfirmed.get(key)
        if mine is not None:
            mine.intersection_update(staying)  # a member that left meanwhile answers nothing
            for node in sorted(mine):
                core.tell(node, StoreCopy(ref=0, copy=self._repair.copy_of(task, now_ms)), actions)
                self.copies_sent += 1
            if mine:
                return False
        if len(self.unconfirmed) >= HANDOFF_TASKS_IN_FLIGHT_MAX:
            return False
        self._add_copies(task, holders, kept, reachable, wanted, now_ms, actions)
        return False

    def _add_copies(
        self,
        task: Task,
        holders: tuple[tuple[str, int], ...],
        kept: list[str],
        reachable: list[str],
        wanted: int,
        now_ms: int,
        actions: list[Action],
    ) -> None:
        core = self.core
        named = {n for n, _ in holders}
        preferred = placement(f"{task.queue}/{task.id}", tuple(sorted(reachable)))
        candidates = [m for m in preferred if m not in named]
        next_index = max(k for _, k in holders) + 1
        count = wanted - len(kept)
        added = [(node, next_index + i) for i, node in enumerate(candidates[:count])]
        if not added:
            return  # (nowhere to put one: counted short, and tried again at the next retry)
        new_holders = core.intern((*holders, *added))
        core.tasks.set_holders(task, new_holders, task.copy_index)
        for node, _ in holders:
            if node != core.me and node in core.members:
                message = HoldersChanged(queue=task.queue, task_id=task.id, holders=new_holders)
                core.tell(node, message, actions)
        self.unconfirmed[(task.queue, task.id)] = {n for n, _ in added}
        copy = self._repair.copy_of(task, now_ms)
        for node, _ in added:
            core.tell(node, StoreCopy(ref=0, copy=copy), actions)
            self.copies_sent += 1

    def _forget_copies(self) -> None:
        """Left: the copies here live on the members (handed off), so this one goes."""
        tasks = self.core.tasks
        pending = [t for ts in tasks.store.by_queue() for t in ts if t.state in _PENDING]
        for task in pending:
            tasks.drop(task)
        self.step = LeaveStep.LEFT
        self.unconfirmed = {}
        self.retry_at_ms = None
        self.short = 0
