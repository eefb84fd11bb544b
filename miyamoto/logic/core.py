"""What every part of a node shares: its configuration, randomness, tasks, queues and
membership, the member list it works with, and how it tells a peer something.

The parts (`api`, `coordinator`, `replica_store`, `dispatcher`, `sync_records`, `repair`) each
hold this one object, never each other's tables. `Node` may swap `tasks`, `queues` or
`membership` after construction (the simulator's canaries do), so the parts read them from here
every time instead of keeping their own reference.
"""

from __future__ import annotations

import random
from typing import Protocol

from .actions import Action, SendPeerMessage
from .config import NodeConfig
from .errors import ClientError
from .holders import merged
from .local_tasks import WAITING, LocalTasks
from .membership import ClusterView
from .messages import Envelope, MemberList, Outgoing, PeerMessage
from .queues import Queues
from .replica_messages import Finished, Holders, ReplicaMessage
from .ring import placement
from .task import Task

HOLDER_LISTS_INTERNED_MAX = 10_000
"""Distinct holder lists kept shared; past it the cache starts over (a bound, not a leak)."""


class MembershipLayer(Protocol):
    """What the node uses of `Membership` (tests may stand in a fixed member list)."""

    @property
    def members(self) -> tuple[str, ...]: ...
    @property
    def epoch(self) -> int: ...
    @property
    def member_list(self) -> MemberList: ...
    def handle_message(self, envelope: Envelope, now_ms: int) -> list[Outgoing]: ...
    def handle_timer(self, now_ms: int) -> list[Outgoing]: ...
    def next_deadline_ms(self) -> int | None: ...
    def stamp(self, message: PeerMessage) -> Envelope: ...
    def admit(self, envelope: Envelope, now_ms: int) -> bool: ...
    def unreachable(self) -> tuple[str, ...]: ...
    def in_standing(self, now_ms: int) -> bool: ...
    def view(self) -> ClusterView: ...
    # Leaving the cluster for good (logic/leave.py):
    @property
    def leaving(self) -> bool: ...
    @property
    def has_left(self) -> bool: ...
    def leave_refusal(self) -> str | None: ...
    def start_leaving(self, now_ms: int) -> list[Outgoing]: ...
    def handed_off(self, now_ms: int) -> list[Outgoing]: ...


class NodeCore:
    def __init__(
        self,
        *,
        config: NodeConfig,
        rng: random.Random,
        tasks: LocalTasks,
        queues: Queues,
        membership: MembershipLayer,
    ) -> None:
        self.config = config
        self.rng = rng
        self.tasks = tasks
        self.queues = queues
        self.membership = membership
        self.me = config.node_id
        self.members: tuple[str, ...] = ()
        """The member list this node works with (sorted ids); copies are placed on these."""
        self.is_member = False
        self.standing = False
        """Whether this node is in standing, computed once per dispatch (in `Node._after`)."""
        self.mono_ms = 0
        """The monotonic time of the event being handled (set by `Node.handle`): every duration
        (leases, timeouts, retries) is measured on it, never on the wall-clock `now_ms`, which
        may be stepped (docs/cluster.md, "Clocks")."""
        self._holders_cache: dict[Holders, Holders] = {}

    def tell(self, to: str, message: ReplicaMessage, actions: list[Action]) -> None:
        envelope = self.membership.stamp(message)
        actions.append(SendPeerMessage(to=to, envelope=envelope))

    def send(self, outgoing: list[Outgoing], actions: list[Action]) -> None:
        for item in outgoing:
            actions.append(SendPeerMessage(to=item.to, envelope=item.envelope))

    def others(self, task: Task) -> list[str]:
        """The task's holders other than this node."""
        me = self.me
        return [node for node, _ in task.holders if node != me]

    def placement(self, key: str) -> list[str]:
        """The members in the order `key` prefers them, without those the leader reports
        unreachable (a copy sent there would hold the enqueue up until the placement timeout)."""
        unreachable = self.membership.unreachable()
        return [m for m in placement(key, self.members) if m not in unreachable]

    def intern(self, holders: Holders) -> Holders:
        """One shared tuple per distinct holder list: millions of tasks share a handful."""
        if len(self._holders_cache) > HOLDER_LISTS_INTERNED_MAX:
            self._holders_cache.clear()
        return self._holders_cache.setdefault(holders, holders)

    def copy_due_ms(self, eta_ms: int, created_ms: int, index: int) -> int:
        """Copy `index` waits `index` replica delays after the ETA, or after the enqueue when
        the ETA was already past then: otherwise every copy of a task whose ETA lies more
        than a replica delay in the past would fire the moment it is stored, all at once,
        before any claim could arrive."""
        start_ms = max(eta_ms, created_ms)
        if index == 0:
            return start_ms  # the same int object as the ETA: 36 bytes less per task
        return start_ms + index * self.config.replica_delay_ms

    def set_holders(self, task: Task, holders: Holders) -> None:
        """Adopts a new holder list; a copy whose index moved is due no earlier than its index
        says, and a waiting copy that learns the task already finished elsewhere waits on."""
        if task.state.is_final or holders == task.holders:
            return
        old_index = task.copy_index
        holders, index = merged(
            task.holders, holders, members=set(self.members), me=self.me, my_index=old_index
        )
        if holders == task.holders:
            return
        self.tasks.set_holders(task, self.intern(holders), index)
        if index != old_index:
            due_ms = self.copy_due_ms(task.eta_ms, task.created_ms, index)
            if task.state in WAITING and due_ms > task.due_ms:
                self.tasks.reschedule(task, due_ms, task.state)

    def announce_finished(self, task: Task, to: list[str], actions: list[Action]) -> None:
        """Tells `to` the task's final state and its last outcome."""
        for node in to:
            message = Finished(
                queue=task.queue,
                task_id=task.id,
                state=task.state.value,
                attempts=task.attempts,
                executions=task.executions,
                last_status=task.last_status,
                last_error=task.last_error,
                excerpt=task.last_response_excerpt,
            )
            self.tell(node, message, actions)

    def not_a_member(self) -> ClientError:
        return ClientError(
            503,
            f"this node is not a cluster member yet (joining through {self.config.seed_id}); "
            "send the request to another node or retry shortly",
        )
