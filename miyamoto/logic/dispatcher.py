"""Deliveries: which due copies start, their claims on the other holders, and what a webhook's
answer does to the task (finished, or retried after a backoff or a destination's Retry-After).
How many may be under way, per node and per destination, is `delivery_slots`' rule.
"""

from __future__ import annotations

import itertools

from .actions import Action, StartDelivery
from .core import NodeCore
from .delivery import build_request, is_success, retry_after_ms
from .delivery_slots import DeliverySlots, Destination
from .events import DeliveryFailed, DeliveryResponded
from .local_tasks import WAITING
from .queue_config import effective_deadline_ms, effective_retry
from .queues import QueueState
from .replica_messages import Claim
from .sync_records import SyncRecords
from .task import Task, TaskState
from .urls import parse_webhook_url


class Dispatcher:
    def __init__(self, core: NodeCore, syncs: SyncRecords) -> None:
        self.core = core
        self.syncs = syncs
        self.claims_renew_at_ms: int | None = None
        limits = core.config.limits
        self.slots = DeliverySlots(
            slots=limits.deliveries_in_flight_max,
            per_destination_max=limits.connections_per_destination_max,
        )
        self.slots_wake_ms: int | None = None
        """When a queue that holds back a destination's line has its next token."""

    def check_invariants(self) -> None:
        """A copy is DELIVERING exactly when it is in flight; every slot in flight belongs to one
        task (DELIVERING, or finished or purged meanwhile: its request is still open at the
        destination) and is counted by its queue. Walks the slots only (at most
        `deliveries_in_flight_max`)."""
        tasks = self.core.tasks
        in_flight = tasks.in_flight
        assert len(in_flight) <= self.core.config.limits.deliveries_in_flight_max
        assert len({id(t) for t in in_flight.values()}) == len(in_flight), "a task flies twice"
        delivering = 0
        by_queue: dict[str, int] = {}
        for task in in_flight.values():
            by_queue[task.queue] = by_queue.get(task.queue, 0) + 1
            stored = tasks.get(task.queue, task.id) is task
            if task.state is TaskState.DELIVERING:
                assert stored, (task.queue, task.id)
                delivering += 1
            else:  # its answer is still to come: it finished elsewhere, or was purged
                assert task.state.is_final or not stored, (task.queue, task.id, task.state)
        assert delivering == tasks.count_in_state(TaskState.DELIVERING), (
            delivering,
            tasks.count_in_state(TaskState.DELIVERING),
        )
        assert by_queue == self.core.queues.in_flight_counts(), by_queue
        self.slots.check_invariants(in_flight.keys())

    def on_timer(self, now_ms: int, actions: list[Action]) -> None:
        if self.claims_renew_at_ms is not None and self.claims_renew_at_ms <= self.core.mono_ms:
            self._renew_claims(now_ms, actions)

    def start_due_deliveries(self, now_ms: int, actions: list[Action]) -> None:
        """Starts what is due and allowed, oldest first: the tasks waiting for a slot of their
        destination, the queues' waiting lines, then the tasks whose time has come.

        A due task waits, keeping its state (not an attempt), and claims its task so that the
        other copies do not fire meanwhile: in its queue's line while its queue has one (its
        order is kept) or holds it back (rate, concurrency, pause); else in its destination's
        line (delivery_slots) while its destination has its share or the node has no free
        slot. The destination is asked first, so a task waiting for one takes no token of its
        queue."""
        self._start_waiting_for_slots(now_ms, actions)
        core = self.core
        slots = self.slots
        queues = core.queues
        for name in sorted(queues.blocked):  # sorted: the same order on every run
            queue = queues.get(name, now_ms)
            while queue.ready and slots.free > 0:
                task = queue.ready[0]
                if task.state not in WAITING or task.due_ms > now_ms:
                    queue.ready.popleft()  # cancelled, finished or claimed meanwhile
                    continue
                destination = self._destination(task)
                if slots.has_line(destination, name) or slots.at_share(destination):
                    if not slots.may_wait(destination):
                        break  # every line is taken: it waits here for its destination
                    queue.ready.popleft()  # claimed when it came due; renewed while it waits
                    slots.wait(task, destination)
                    continue
                if not queue.admits(now_ms):
                    break
                queue.ready.popleft()
                if not self.syncs.must_wait_for_question(task, due=False):
                    self._start(task, queue, destination, now_ms, actions)
            if not queue.ready:
                queues.blocked.discard(name)
        while (due := core.tasks.timers.pop_due(now_ms)) is not None:
            if self.syncs.must_wait_for_question(due, due=True):
                continue
            queue = queues.get(due.queue, now_ms)
            destination = self._destination(due)
            held_back = (
                slots.free <= 0
                or slots.has_line(destination, queue.name)
                or slots.at_share(destination)
            )
            if not queue.ready and held_back and slots.may_wait(destination):
                slots.wait(due, destination)
            elif queue.ready or held_back or not queue.admits(now_ms):
                queue.ready.append(due)  # keep the queue's order: wait behind the others
                queues.blocked.add(queue.name)
            else:
                self._start(due, queue, destination, now_ms, actions)
                continue
            if len(due.holders) > 1:
                self._claim(due, core.config.claim_lease_ms, actions)
                self._arm_claim_renewal(now_ms)

    def _start_waiting_for_slots(self, now_ms: int, actions: list[Action]) -> None:
        """Starts tasks from the lines of destinations below their share, each line in turn as
        far as its queue lets it. A queue held back only by its rate wakes the node when its
        next token is due (`slots_wake_ms`); a pause or a concurrency cap ends with an event."""
        slots = self.slots
        queues = self.core.queues
        self.slots_wake_ms = None
        for destination in list(slots.lines):  # a list: lines end as their tasks start
            if slots.free <= 0:
                break
            for name in list(slots.lines.get(destination, ())):
                queue = queues.get(name, now_ms)
                while slots.may_start(destination) and slots.has_line(destination, name):
                    task = slots.head(destination, name)
                    if task.state not in WAITING or task.due_ms > now_ms:
                        slots.pop_head(destination, name)  # cancelled, finished or claimed
                        continue
                    if not queue.admits(now_ms):
                        self._note_rate_wake(queue, now_ms)
                        break
                    slots.pop_head(destination, name)
                    if not self.syncs.must_wait_for_question(task, due=False):
                        self._start(task, queue, destination, now_ms, actions)

    def _note_rate_wake(self, queue: QueueState, now_ms: int) -> None:
        if queue.paused or queue.bucket is None:
            return
        share = queue.concurrency_share
        if share is not None and queue.in_flight >= share:
            return  # a finishing delivery wakes it, not a timer
        wake_ms = queue.bucket.next_token_ms(now_ms)
        if self.slots_wake_ms is None or wake_ms < self.slots_wake_ms:
            self.slots_wake_ms = wake_ms

    def _destination(self, task: Task) -> Destination:
        url = parse_webhook_url(task.url, self.core.config.limits)  # remembered: no new parse
        return (url.host, url.port)

    def _start(
        self,
        task: Task,
        queue: QueueState,
        destination: Destination,
        now_ms: int,
        actions: list[Action],
    ) -> None:
        """Starts one delivery of `task` to `destination` (which has a free slot), or puts it
        off while the destination asked this queue to wait (Retry-After)."""
        core = self.core
        limits = core.config.limits
        request = build_request(task, user_agent=core.config.user_agent, limits=limits)
        held = (task.queue, request.host, request.port)
        hold_ms = core.queues.destination_hold_ms.get(held)
        if hold_ms is not None:
            if hold_ms > now_ms:
                core.tasks.reschedule(task, hold_ms, task.state)
                if len(task.holders) > 1:
                    self._claim(task, hold_ms - now_ms + core.config.claim_lease_ms, actions)
                return
            del core.queues.destination_hold_ms[held]
        delivery_id = core.tasks.start(task, now_ms)
        self.slots.started(delivery_id, destination)
        queue.in_flight += 1
        queue.rate.add(now_ms)
        actions.append(
            StartDelivery(
                delivery_id=delivery_id,
                request=request,
                timeout_ms=effective_deadline_ms(queue.config, task.retry),
                excerpt_bytes_max=limits.response_excerpt_bytes_max,
            )
        )
        if len(task.holders) > 1:
            self._claim(task, core.config.claim_lease_ms, actions)
            self._arm_claim_renewal(now_ms)

    def _arm_claim_renewal(self, now_ms: int) -> None:
        if self.claims_renew_at_ms is None:
            self.claims_renew_at_ms = self.core.mono_ms + self.core.config.claim_lease_ms // 3

    def _end_flight(self, delivery_id: int) -> Task | None:
        self.slots.ended(delivery_id)
        task = self.core.tasks.in_flight.pop(delivery_id, None)
        if task is not None:
            queue = self.core.queues.known(task.queue)
            if queue is not None and queue.in_flight > 0:
                queue.in_flight -= 1
        return task

    def _claim(self, task: Task, lease_ms: int, actions: list[Action]) -> None:
        claim = Claim(
            queue=task.queue,
            task_id=task.id,
            lease_ms=lease_ms,
            attempts=task.attempts,
            executions=task.executions,
            delivering=task.state is TaskState.DELIVERING,
        )
        for node in self.core.others(task):
            self.core.tell(node, claim, actions)

    def _renew_claims(self, now_ms: int, actions: list[Action]) -> None:
        """Holders keep their copies back while ours is in flight or waits its turn in a
        queue's or a destination's line: renew the lease."""
        core = self.core
        ours = itertools.chain(
            core.tasks.in_flight.values(), core.queues.waiting(), self.slots.waiting()
        )
        replicated = [t for t in ours if len(t.holders) > 1 and not t.state.is_final]
        for task in replicated:
            self._claim(task, core.config.claim_lease_ms, actions)
        renew_ms = core.config.claim_lease_ms // 3
        self.claims_renew_at_ms = core.mono_ms + renew_ms if replicated else None

    def delivery_finished(
        self, event: DeliveryResponded | DeliveryFailed, now_ms: int, actions: list[Action]
    ) -> None:
        core = self.core
        task = self._end_flight(event.delivery_id)
        if task is None or core.tasks.get(task.queue, task.id) is not task:
            return  # not ours, or purged while in flight: nothing to record
        if task.state is not TaskState.DELIVERING:
            return  # another holder finished the task while our copy was in flight
        task.attempts += 1
        policy = effective_retry(core.queues.get(task.queue, now_ms).config, task.retry)
        wait_ms: int | None = None
        success = False
        if isinstance(event, DeliveryResponded):
            task.executions += 1
            task.last_status = event.status
            task.last_error = None
            task.last_response_excerpt = event.body_excerpt
            success = is_success(event.status)
            if not success:
                wait_ms = retry_after_ms(
                    event.status, event.headers, now_ms, cap_ms=policy.max_backoff_ms
                )
        else:
            task.last_status = None
            detail = f": {event.detail}" if event.detail else ""
            task.last_error = f"{event.error.value}{detail}"
            task.last_response_excerpt = None
        if success:
            core.tasks.finish(task, TaskState.SUCCEEDED, now_ms)
            core.announce_finished(task, core.others(task), actions)
            return
        retries_done = task.attempts - 1
        assert task.first_attempt_ms is not None
        if not policy.may_retry(retries_done, task.first_attempt_ms, now_ms):
            core.tasks.finish(task, TaskState.FAILED, now_ms)
            core.announce_finished(task, core.others(task), actions)
            return
        # A Retry-After is honoured up to the queue's max_backoff (retry_after_ms caps it), and
        # holds back every task of this queue for that destination, not just this one; other
        # queues (other tenants) sending to the same host are not held.
        asked_ms = wait_ms or 0
        if asked_ms:
            destination = build_request(
                task, user_agent=core.config.user_agent, limits=core.config.limits
            )
            key = (task.queue, destination.host, destination.port)
            core.queues.hold_destination(key, now_ms + asked_ms, now_ms)
        delay_ms = max(policy.backoff_ms(retries_done), asked_ms)
        core.tasks.reschedule(task, now_ms + delay_ms, TaskState.RETRYING)
        if len(task.holders) > 1:
            self._claim(task, delay_ms + core.config.claim_lease_ms, actions)
