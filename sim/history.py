"""What happened in a run, as the checkers need it: tasks, deliveries and faults, in true time.

`Order` is the position of a node action in the run: (node step number, index of the action in
that step). Comparing orders instead of milliseconds tells which of two things a node did first
even within one millisecond (a cancel acknowledged, then a delivery started).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

Order = tuple[int, int]


@dataclass(slots=True, kw_only=True)
class DeliveryRecord:
    node: str
    time_ms: int
    order: Order
    task_id: str
    key: str | None
    """The workload key the request carried (its `w` param); None if it carried none."""
    processed_status: int | None
    """The receiver's answer when it processed the request; None if it never did."""
    queue: str = ""
    """The queue the request says (X-Task-Queue); "" when it says none."""
    incarnation: int = 0
    """Which process of `node` started it."""
    delivery_id: int = 0
    answered_status: int | None = None
    """The status the node heard (None: a timeout or a refused connection)."""
    ended_ms: int | None = None
    """When the node that started it hears its outcome (true time); None if not known."""
    copy_due_ms: int | None = None
    """When the copy that made this delivery was due (true time: ETA + its index x the
    replica delay, from the enqueue when the ETA was past then); None if not known."""
    holders: tuple[str, ...] = ()
    """The holders the delivering copy knew of when it started."""

    @property
    def succeeded(self) -> bool:
        return self.processed_status is not None and 200 <= self.processed_status < 300


@dataclass(slots=True, kw_only=True)
class TaskRecord:
    """One task of the workload, from the client's side and the receivers' side: one client id
    in one queue, however many enqueues named it and with whatever payloads (workload keys)."""

    key: str
    """The first payload enqueued under this id."""
    task_id: str
    queue: str
    eta_ms: int
    """The earliest ETA any enqueue attempt asked for, in true time."""
    payload_etas: dict[str, int] = field(default_factory=dict)
    """Workload key of each payload enqueued under this id -> the earliest ETA asked with it."""
    enqueues_sent: int = 0
    acks: int = 0
    """Enqueues answered "scheduled" or "duplicate" (the task is acknowledged once however
    many)."""
    duplicate_acks: int = 0
    """Of those, the ones answered "duplicate"."""
    acked_ms: int | None = None
    """When a node first acknowledged it ("scheduled", or "duplicate" of a live task)."""
    acked_by: set[str] = field(default_factory=set)
    replicas_acked: int | None = None
    cancels_not_refused: int = 0
    """Cancels sent and not answered 404 or 409 (acknowledged, answered 503, or unanswered)."""
    cancel_acked_order: Order | None = None
    cancel_acked_ms: int | None = None
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    all_holders_lost_ms: int | None = None
    """When the last node holding a copy of it lost it for good, before any delivery."""
    holder_crashes_ms: list[int] = field(default_factory=list)
    """When a process holding a pending copy of it crashed (memory lost), in time order."""
    forgotten_ms: int | None = None
    """When the last node that held or remembered it crashed (a cancelled task's memory with
    it: a later enqueue of the id makes a new task)."""

    @property
    def cancel_maybe(self) -> bool:
        """Some cancel may have taken effect, so not delivering the task is allowed. Each
        DELETE counts on its own: a 404 to one that overtook the enqueue says nothing of one
        sent before it."""
        return self.cancels_not_refused > 0

    @property
    def successes(self) -> list[DeliveryRecord]:
        return [d for d in self.deliveries if d.succeeded]


@dataclass(slots=True, kw_only=True)
class FaultWindow:
    kind: str
    nodes: frozenset[str]
    start_ms: int
    end_ms: int | None = None
    """None while it lasts (or forever: a permanent crash)."""
    detail: str = ""


MESSAGE_FAULTS_EXPLAINING = frozenset({"lost", "cut", "held", "slow"})
"""Packet fates that can explain a duplicate delivery (a duplicated packet cannot)."""

CRASH_KINDS = frozenset({"crash", "permanent crash"})
"""Fault windows that are crashes; every other kind (pause, clog, partition) leaves a node's
memory but can stall what it would do, a repair included."""


class FaultLog:
    def __init__(self) -> None:
        self.windows: list[FaultWindow] = []
        self._message_faults: dict[str, list[int]] = {}
        """Per node, the times of packet faults on its links (either end), in time order."""
        self.node_count = 0
        """How many nodes the world has (0: unknown), for `stalled_ms`."""
        self._link_faults: dict[tuple[str, str], list[int]] = {}
        """Per link (its two ends, sorted), the times of packet faults on it, in time order."""

    def open(self, kind: str, nodes: Iterable[str], start_ms: int, detail: str = "") -> FaultWindow:
        window = FaultWindow(kind=kind, nodes=frozenset(nodes), start_ms=start_ms, detail=detail)
        self.windows.append(window)
        return window

    @staticmethod
    def close(window: FaultWindow, end_ms: int) -> None:
        if window.end_ms is None:
            window.end_ms = end_ms

    def message_fault(self, time_ms: int, nodes: Iterable[str]) -> None:
        ends = sorted(set(nodes))
        for node in ends:
            self._message_faults.setdefault(node, []).append(time_ms)
        if len(ends) == 2:
            self._link_faults.setdefault((ends[0], ends[1]), []).append(time_ms)

    @property
    def any(self) -> bool:
        return bool(self.windows or self._message_faults)

    def explain(self, nodes: set[str], start_ms: int, end_ms: int) -> str | None:
        """A fault touching one of `nodes` at some time in [start_ms, end_ms], described; None
        when there was none."""
        for window in self.windows:
            if (
                window.nodes & nodes
                and window.start_ms <= end_ms
                and (window.end_ms is None or window.end_ms >= start_ms)
            ):
                return f"{window.kind} of {','.join(sorted(window.nodes & nodes))}"
        for node in sorted(nodes):
            times = self._message_faults.get(node, [])
            i = bisect.bisect_left(times, start_ms)
            if i < len(times) and times[i] <= end_ms:
                return f"a packet of {node} lost or delayed at {times[i]}"
        return None

    def explain_among(self, nodes: set[str], start_ms: int, end_ms: int) -> str | None:
        """A fault in [start_ms, end_ms] that touched one of `nodes` (a crash, pause or clog of
        one, a partition cutting one off) or a link between two of them (a packet lost or
        delayed), described; None when there was none. Narrower than `explain`: a packet
        fault between one of `nodes` and some other node explains nothing here."""
        for window in self.windows:
            if (
                window.nodes & nodes
                and window.start_ms <= end_ms
                and (window.end_ms is None or window.end_ms >= start_ms)
            ):
                return f"{window.kind} of {','.join(sorted(window.nodes & nodes))}"
        for (a, b), times in sorted(self._link_faults.items()):
            if a in nodes and b in nodes:
                i = bisect.bisect_left(times, start_ms)
                if i < len(times) and times[i] <= end_ms:
                    return f"a packet between {a} and {b} lost or delayed at {times[i]}"
        return None

    def stalled_ms(self, start_ms: int, end_ms: int) -> int:
        """How much of [start_ms, end_ms] some pause, clog or partition lasted (anywhere), or
        half the nodes or more were crashed (no majority to change the member list): time in
        which a repair may not have been possible. A crash alone does not count."""
        clipped = [
            (max(w.start_ms, start_ms), min(end_ms if w.end_ms is None else w.end_ms, end_ms), w)
            for w in self.windows
        ]
        spans = [(b, e) for b, e, w in clipped if w.kind not in CRASH_KINDS]
        crash_edges = sorted(
            edge
            for b, e, w in clipped
            if w.kind in CRASH_KINDS and e > b
            for edge in ((b, 1), (e, -1))
        )
        down, since_ms = 0, start_ms
        for at_ms, step in crash_edges:
            if step < 0 and 2 * down >= self.node_count > 0:
                spans.append((since_ms, at_ms))
            down += step
            since_ms = at_ms
        spans.sort()
        total, reached = 0, start_ms
        for begin, end in spans:
            begin = max(begin, reached)
            if end > begin:
                total += end - begin
                reached = end
        return total
