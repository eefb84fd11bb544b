"""The longest single dispatch (`Node.handle` plus the `next_deadline_ms` the shell asks after
it) with 2,000,000 tasks held (100,000 with --quick), against the same workload with 10,000.

In-process, no sockets. The node is one of two members (R=2); the other is played by the
scenario, which acknowledges the copies it is sent and answers listing questions with nothing
(it holds second copies only). The tasks are stored through the logic directly (the path a
peer's copy takes, `ReplicaStore.store_copy`), first copy here, spread over 10 queues with
ETAs over a day. Then a mixed workload, each step one dispatch: enqueues (single tasks, due now,
so deliveries start, and due in an hour) and the other member's acknowledgements, deliveries
answered, timers, listing pages (walking one queue by its cursor, a rare state among 200,000,
the counts), and at the end a member change: a third member joins, which needs no new copy but
makes repair look at every task (until repair works from an index). The cyclic garbage
collector runs with the daemon's thresholds; its pauses land in whichever dispatch triggers
them, as in the daemon, and its full collections are reported apart.

Goal: no dispatch over 5 ms. Times are wall clock and, beside, the CPU time of this thread (the
machine may be shared: the CPU time leaves out what other processes took).
"""

from __future__ import annotations

import gc
import random
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from miyamoto.io.node import GC_THRESHOLDS
from miyamoto.logic.actions import SendApiResponse, SendPeerMessage, StartDelivery
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import (
    ApiRequestReceived,
    DeliveryResponded,
    Event,
    PeerMessageReceived,
    TimerExpired,
)
from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.limits import Limits
from miyamoto.logic.messages import Envelope, Member, MemberList, Outgoing, PeerMessage
from miyamoto.logic.node import Node
from miyamoto.logic.replica_messages import (
    QueueStats,
    QueueStatsQuery,
    ReplicaMessage,
    StoreAck,
    StoreCopy,
    TaskCopy,
)

from ..context import BenchContext
from ..table import Row, goal

DISPATCH_GOAL_MS = 5.0
BASELINE_TASKS = 10_000
QUEUES = 10
STEPS = 3000
ME = "127.0.0.1:7001"
OTHER = "127.0.0.1:7002"
THIRD = "127.0.0.1:7003"
T0_MS = 1_700_000_000_000
DAY_MS = 24 * 3600 * 1000
URL = "http://127.0.0.1:9/worker"
BODY = b"x" * 20
FORM = (("content-type", "application/x-www-form-urlencoded"),)


class _Members:
    """A member list set by hand (the elected membership's heartbeats would only add noise)."""

    def __init__(self) -> None:
        self.members: tuple[str, ...] = (ME, OTHER)
        self.epoch = 1

    def join(self, member: str) -> None:
        self.members = tuple(sorted((*self.members, member)))
        self.epoch += 1

    @property
    def member_list(self) -> MemberList:
        return MemberList(
            epoch=self.epoch,
            epoch_term=1,
            members=tuple(Member(id=m, incarnation=1) for m in self.members),
        )

    def handle_message(self, envelope: Envelope, now_ms: int) -> list[Outgoing]:
        return []

    def handle_timer(self, now_ms: int) -> list[Outgoing]:
        return []

    def next_deadline_ms(self) -> int | None:
        return None

    def stamp(self, message: PeerMessage) -> Envelope:
        return Envelope(
            sender=ME, incarnation=1, cluster_id=1, term=1, epoch=self.epoch, message=message
        )

    def admit(self, envelope: Envelope, now_ms: int) -> bool:
        return True

    def in_standing(self, now_ms: int) -> bool:
        return True

    def unreachable(self) -> tuple[str, ...]:
        return ()

    def view(self) -> Any:
        raise NotImplementedError("GET /_cluster is not part of this workload")

    # This node never leaves (POST /_cluster/leave is not part of this workload).
    leaving = False
    has_left = False

    def leave_refusal(self) -> str | None:
        return None

    def start_leaving(self, now_ms: int) -> list[Outgoing]:
        return []

    def handed_off(self, now_ms: int) -> list[Outgoing]:
        return []


class _Run:
    def __init__(self, held: int, steps: int) -> None:
        self.steps = steps
        self.members = _Members()
        self.now_ms = T0_MS
        # Room for the workload's enqueues beside the tasks held (2,000,000 is the default limit).
        limits = replace(Limits(), tasks_max=held + 4 * steps + 1000)
        config = NodeConfig(node_id=ME, replicas=2, limits=limits)
        self.node = Node(config, random.Random(1), T0_MS, membership=self.members)
        self.times_ns: dict[str, list[tuple[int, int]]] = defaultdict(list)
        """kind -> (wall ns, thread CPU ns) of each dispatch."""
        self.in_flight: list[int] = []
        self.requests = 0
        self.cursor: str | None = None
        self.gc_pauses_ns: list[int] = []
        self.full_collection_ns = 0
        self._gc_started_ns = 0
        self._fill(held)

    def _fill(self, held: int) -> None:
        self.dispatch("timer", TimerExpired())  # takes the member list
        store = self.node.store
        for i in range(held):
            copy = TaskCopy(
                queue=f"q{i % QUEUES}", id=f"t{i:09d}", method="POST", url=URL, headers=(),
                body=BODY, eta_ms=T0_MS + DAY_MS + (i * 7919) % DAY_MS, created_ms=T0_MS,
                holders=((ME, 0), (OTHER, 1)),
            )  # fmt: skip
            store.store_copy(copy, T0_MS)

    def dispatch(self, kind: str, event: Event) -> list[Any]:
        wall_ns, cpu_ns = time.perf_counter_ns(), time.thread_time_ns()
        actions = self.node.handle(event, self.now_ms)
        self.node.next_deadline_ms()
        cpu_ns = time.thread_time_ns() - cpu_ns
        self.times_ns[kind].append((time.perf_counter_ns() - wall_ns, cpu_ns))
        for action in actions:
            if isinstance(action, StartDelivery):
                self.in_flight.append(action.delivery_id)
        return actions

    def request(self, kind: str, method: str, target: str, body: bytes = b"") -> Any:
        """The JSON answer, once the other member has answered what the request asked it."""
        self.requests += 1
        request = HttpRequest(method=method, target=target, headers=FORM, body=body)
        actions = self.dispatch(kind, ApiRequestReceived(request_id=self.requests, request=request))
        replies = self._replies(actions)
        for action in actions:
            if isinstance(action, SendPeerMessage) and action.to == OTHER:
                answer = _answer_of_other(action.envelope.message)
                if answer is not None:
                    envelope = Envelope(
                        sender=OTHER, incarnation=1, cluster_id=1, term=1,
                        epoch=self.members.epoch, message=answer,
                    )  # fmt: skip
                    event = PeerMessageReceived(envelope=envelope)
                    replies += self._replies(self.dispatch("peer answer", event))
        assert len(replies) == 1 and replies[0].status == 200, replies
        return replies[0].json()

    @staticmethod
    def _replies(actions: list[Any]) -> list[HttpResponse]:
        return [a.response for a in actions if isinstance(a, SendApiResponse)]

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started_ns = time.perf_counter_ns()
        elif info.get("generation") == 2:
            self.gc_pauses_ns.append(time.perf_counter_ns() - self._gc_started_ns)

    def workload(self) -> None:
        gc.callbacks.append(self._gc)
        try:
            for step in range(self.steps):
                self._step(step)
            self.members.join(THIRD)
            self.now_ms += 1
            self.dispatch("member change", TimerExpired())
        finally:
            gc.callbacks.remove(self._gc)
        # What a full collection costs with this many objects: the daemon's thresholds make
        # them rare, but the one that comes lands in a dispatch.
        started_ns = time.perf_counter_ns()
        gc.collect()
        self.full_collection_ns = time.perf_counter_ns() - started_ns

    def _step(self, step: int) -> None:
        self.now_ms += 1
        due_now = f"task.url={URL}&task.countdown=0&x=1".encode()
        self.request("enqueue", "POST", "/q0", due_now)
        later = f"task.url={URL}&task.countdown=3600&x=1".encode()
        self.request("enqueue", "POST", f"/q{step % QUEUES}", later)
        answered, self.in_flight = self.in_flight, []
        for delivery_id in answered:
            event = DeliveryResponded(delivery_id=delivery_id, status=200)
            self.dispatch("delivery answered", event)
        if step % 10 == 0:
            self.dispatch("timer", TimerExpired())
        if step % 50 == 0:
            target = "/q3?state=scheduled&limit=100"
            page = self.request("listing page", "GET", target + self._cursor_param())
            self.cursor = page["next_cursor"]
        if step % 200 == 0:
            self.request("listing page", "GET", "/q4?state=failed&limit=100")
            self.request("queue counts", "GET", "/q5")

    def _cursor_param(self) -> str:
        return "" if self.cursor is None else f"&cursor={self.cursor}"


def _answer_of_other(message: PeerMessage) -> ReplicaMessage | None:
    """What the other member answers (it holds second copies only, so it lists nothing)."""
    match message:
        case StoreCopy(ref=ref, copy=copy):
            return StoreAck(ref=ref, queue=copy.queue, task_id=copy.id, stored=True,
                            state="scheduled")  # fmt: skip
        case QueueStatsQuery(ref=ref):
            return QueueStats(ref=ref, counts=(), oldest_eta_ms=None, attempts_last_minute=0,
                              paused=False, rate_millis_per_s=None, tasks=())  # fmt: skip
        case _:
            return None  # claims and finished notices need no answer


def _ms(ns: float) -> float:
    return ns / 1e6


def _summary(run: _Run) -> tuple[float, float, float, str]:
    """(max wall ms, p99 wall ms, max CPU ms, per-kind maxima) over every dispatch but the
    member change, which is reported apart."""
    everything = [t for kind, times in run.times_ns.items() if kind != "member change"
                  for t in times]  # fmt: skip
    walls = sorted(wall for wall, _ in everything)
    p99 = walls[min(len(walls) - 1, round(0.99 * len(walls)) - 1)]
    kinds = ", ".join(
        f"{kind} {_ms(max(w for w, _ in times)):.2f}/{_ms(max(c for _, c in times)):.2f}"
        for kind, times in sorted(run.times_ns.items())
    )
    return _ms(walls[-1]), _ms(p99), _ms(max(cpu for _, cpu in everything)), kinds


def measure(held: int, steps: int = STEPS) -> tuple[_Run, float]:
    """A run holding `held` tasks, its workload done; and the seconds the fill took."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        started = time.monotonic()
        run = _Run(held, steps)
        fill_s = time.monotonic() - started
        run.workload()
        return run, fill_s
    finally:
        gc.set_threshold(*thresholds)


def dispatch_time(ctx: BenchContext) -> list[Row]:
    scenario = "longest dispatch"
    held = ctx.size(2_000_000, 100_000)
    steps = ctx.size(STEPS, STEPS // 3)
    rows = []
    results: list[tuple[int, float, float]] = []
    for count in (BASELINE_TASKS, held):
        run, fill_s = measure(count, steps)
        max_ms, p99_ms, cpu_max_ms, kinds = _summary(run)
        change_wall, change_cpu = run.times_ns["member change"][0]
        results.append((count, max_ms, p99_ms))
        gc_max = _ms(max(run.gc_pauses_ns, default=0))
        baseline = results[0][1]
        rows.append(
            Row(
                scenario=scenario,
                system=f"node, {count:,} tasks held",
                result=f"max {max_ms:.2f} / p99 {p99_ms:.3f} ms (CPU max {cpu_max_ms:.2f} ms)",
                ratio=None if count == BASELINE_TASKS else max_ms / baseline,
                goal=goal(f"max ≤ {DISPATCH_GOAL_MS:g} ms", max_ms <= DISPATCH_GOAL_MS),
                note=(
                    f"member change {_ms(change_wall):.0f} ms (CPU {_ms(change_cpu):.0f}); "
                    f"full GC pauses {len(run.gc_pauses_ns)}, max {gc_max:.0f} ms, one forced "
                    f"{_ms(run.full_collection_ns):.0f} ms; "
                    f"fill {fill_s:.0f} s; max wall/CPU ms by kind: {kinds}"
                ),
            )
        )
        del run
        gc.collect()
    return rows
