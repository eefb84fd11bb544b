"""The checkers: Jepsen's total-queue anomalies, named, plus the cluster's safety properties.

`Checker` records what clients and receivers saw (into a `History`) and checks, as each thing
happens, whatever can be checked at once: unexpected, early and cancelled deliveries, election
safety, epochs, a capped queue's deliveries in flight. `Checker.report()` checks the rest at
the end: lost and duplicated tasks, late ones, a rate-limited queue's starts over every span,
and counts everything for the table.

A task is a client id in a queue (`TaskRecord`): every enqueue naming that id, whatever its
payload, is the same task, acknowledged once and owed exactly one successful delivery.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from miyamoto.logic.retry import RetryPolicy

from .history import DeliveryRecord, FaultLog, Order, TaskRecord
from .limit_checks import LimitChecker, LimitStats, Process
from .retry_limits import replay


class FailureKind(enum.Enum):
    """What kind of failure a run ended with; the value is the CLI's exit code."""

    CRASH = 3
    """A node raised (a bug that a real node would crash or log on)."""
    LIVENESS = 4
    """After the heal, the cluster did not converge in time."""
    CORRECTNESS = 5
    """A safety property was broken: a task lost, duplicated without a fault, early, ..."""


class Anomaly(enum.Enum):
    LOST = "lost"
    UNEXPECTED = "unexpected"
    EARLY = "early"
    DUPLICATED = "duplicated"
    """More than one 2xx delivery of one task (one client id in one queue, whatever payloads
    were enqueued under it) with no fault around it to explain it."""
    CANCELLED = "cancelled"
    """A delivery started after its cancel was acknowledged."""
    ELECTION_SAFETY = "election_safety"
    EPOCH = "epoch"
    """An epoch went back, or one epoch named two memberships."""
    BAD_INPUT = "bad_input"
    """A node accepted a malformed request, or answered it with something other than a 4xx."""
    RATE = "rate"
    """A rate-limited queue started more attempts in some span than the cluster may
    (sim/limit_checks.py)."""
    CONCURRENCY = "concurrency"
    """A capped queue had more deliveries in flight than the cluster, or a node, may."""
    REPLICAS = "replicas"
    """A "scheduled" answer said more copies than distinct nodes stored, or more than R."""
    UNDER_REPLICATED = "under_replicated"
    """A repair period after the heal, a pending task has fewer than min(R, live) copies."""
    DUPLICATE_RATE = "duplicate_rate"
    """Duplicates explained by faults, but far more of them than the faults can account for."""
    DEAD_LETTER = "dead_letter"
    """A task retried past its retry policy, or given up on (failed) before it said so."""
    NOT_CONVERGED = "not_converged"
    NODE_CRASH = "node_crash"

    @property
    def failure(self) -> FailureKind:
        if self is Anomaly.NODE_CRASH:
            return FailureKind.CRASH
        if self is Anomaly.NOT_CONVERGED:
            return FailureKind.LIVENESS
        return FailureKind.CORRECTNESS


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    anomaly: Anomaly
    time_ms: int
    detail: str

    def __str__(self) -> str:
        return f"{self.anomaly.value} at {self.time_ms / 1000:.3f}s: {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    early_slack_ms: int
    """How much earlier than its true ETA a correct node may start a delivery: the clock error
    the run models (how far any two clocks read apart)."""
    late_slack_ms: int
    """A first successful delivery later than ETA + this is reported as late."""
    duplicate_window_ms: int
    """(R-1) x replica delay + claim lease: how long after its ETA a fault can still cause a
    task to be delivered twice."""
    repair_window_ms: int = 10_000
    """How long a fault-free cluster may take to notice a dead holder (member timeout, an
    election if it led) and store a new copy (a repair retry): a task whose last copy was
    alone longer than this before its holder crashed should have had another."""
    duplicate_rate_max: float = 0.15
    """At most this share of a run's delivered tasks may be explained duplicates (the real
    node's worst run of the CI matrix: 9.6%; calm runs: 0)."""
    duplicate_rate_min_delivered: int = 20
    """Fewer delivered tasks than this say nothing of a rate (every run of the matrix
    delivers more than 60)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterView:
    """One node's view of the cluster, as the checkers read it."""

    node: str
    incarnation: int
    """Which process of `node` (a restart is a new one, with its memory lost)."""
    cluster_id: int
    leads: bool
    """Whether this node is the leader (of `term`)."""
    leader: str | None
    """The leader it follows (itself when it leads), if any."""
    term: int
    epoch: int
    members: tuple[str, ...]


@dataclass(slots=True, kw_only=True)
class Report:
    tasks: int = 0
    acked: int = 0
    delivered: int = 0
    """Tasks delivered (processed with a 2xx) at least once."""
    lost: int = 0
    lost_all_holders: int = 0
    """Acknowledged tasks never delivered because every node holding them lost them for good."""
    lost_no_quorum: int = 0
    """Acknowledged tasks never delivered in a run where a majority of the members crashed at
    once (see `quorum_lost`): the survivors may not deliver them, as they may have been
    removed."""
    duplicated_explained: int = 0
    duplicated_unexplained: int = 0
    under_replicated: int = 0
    """Pending tasks short of min(R, live) copies a repair period after the heal."""
    dead_letters: int = 0
    """Tasks given up on (failed) as their retry policy said."""
    early: int = 0
    late: int = 0
    cancelled: int = 0
    elections: int = 0
    quorum_lost: bool = False
    """A majority of the members crashed (memory lost) at once: the cluster cannot recover on
    its own, so convergence was not required."""
    limits: LimitStats | None = None
    """How close the limited queues came to their limits (None: the run had none)."""
    violations: list[Violation] = field(default_factory=list)

    @property
    def failure(self) -> FailureKind | None:
        """The gravest failure: a crash, then correctness, then liveness."""
        kinds = {v.anomaly.failure for v in self.violations}
        for kind in (FailureKind.CRASH, FailureKind.CORRECTNESS, FailureKind.LIVENESS):
            if kind in kinds:
                return kind
        return None


class Checker:
    def __init__(
        self,
        bounds: Bounds,
        limits: LimitChecker | None = None,
        retry_policies: Mapping[str, RetryPolicy] | None = None,
    ) -> None:
        self.bounds = bounds
        self.limits = limits
        self.retry_policies = retry_policies or {}
        """Queue -> its finite retry policy (the retry_limits scenario); others retry for ever."""
        self._states: dict[str, set[str]] | None = None
        """Task id -> the states the running nodes hold it in at the end (retry_limits only)."""
        self.tasks: dict[tuple[str, str], TaskRecord] = {}
        """By (queue, client id)."""
        self._by_key: dict[str, TaskRecord] = {}
        """By workload key (payload): several keys may name one task."""
        self._by_task_id: dict[str, TaskRecord] = {}
        self.faults = FaultLog()
        self.violations: list[Violation] = []
        self._leaders: dict[tuple[int, int], tuple[str, int]] = {}
        """(cluster id, term) -> the process (node, incarnation) that led in it."""
        self._memberships: dict[tuple[int, int], tuple[str, ...]] = {}
        """(cluster id, epoch) -> the members it names."""
        self._last_view: dict[tuple[str, int], ClusterView] = {}
        """(node, incarnation) -> the last view read from it."""
        self._stamps: dict[tuple[str, int], tuple[int, int, int]] = {}
        """(node, incarnation) -> the (cluster id, term, epoch) its last message carried."""
        self._counts = {anomaly: 0 for anomaly in Anomaly}
        self.quorum_lost_ms: int | None = None
        """When a majority of the members had crashed (memory lost), if it ever happened."""
        self.enqueues_open = 0
        """Client enqueues not answered for good yet (retries included): the liveness phase
        waits for them, as each may still make a task owed."""
        self._limit_violations_seen = 0

    def violate(self, anomaly: Anomaly, time_ms: int, detail: str) -> None:
        self._counts[anomaly] += 1
        self.violations.append(Violation(anomaly=anomaly, time_ms=time_ms, detail=detail))

    # -- clients ---------------------------------------------------------------------------------

    def enqueue_sent(self, *, key: str, task_id: str, queue: str, eta_ms: int) -> None:
        """A client sent an enqueue of payload `key` with client id `task_id`: a new task, or
        (the id already sent into `queue`) the same task again, perhaps with another payload."""
        record = self._by_key.get(key)
        if record is None:
            record = self.tasks.get((queue, task_id))
            if record is None:
                assert task_id not in self._by_task_id, f"{task_id} used in two queues"
                record = TaskRecord(key=key, task_id=task_id, queue=queue, eta_ms=eta_ms)
                self.tasks[(queue, task_id)] = record
                self._by_task_id[task_id] = record
            self._by_key[key] = record
        assert (record.queue, record.task_id) == (queue, task_id), (key, queue, task_id)
        record.eta_ms = min(record.eta_ms, eta_ms)
        record.payload_etas[key] = min(record.payload_etas.get(key, eta_ms), eta_ms)
        record.enqueues_sent += 1

    def enqueue_acked(
        self,
        *,
        key: str,
        node: str,
        time_ms: int,
        replicas: int | None,
        duplicate: bool = False,
        sent_ms: int | None = None,
    ) -> None:
        """A node answered "scheduled" or (`duplicate`) "duplicate" to an enqueue sent at
        `sent_ms`: the task (not the payload) exists."""
        record = self._by_key[key]
        record.acks += 1
        record.duplicate_acks += duplicate
        record.acked_by.add(node)
        if record.acked_ms is None:
            record.acked_ms = time_ms
            record.replicas_acked = replicas
        cancelled_ms = record.cancel_acked_ms
        if not duplicate and cancelled_ms is not None and (sent_ms or 0) >= cancelled_ms:
            # "scheduled" to an enqueue sent after an acknowledged cancel: the cluster forgot
            # the cancelled task (every copy of it lost with its holders) and made a new one,
            # and said so. The cancel no longer covers the id; the new task is owed.
            record.cancel_acked_order = record.cancel_acked_ms = None
            record.cancels_not_refused = 0

    def cancel_sent(self, key: str) -> None:
        self._by_key[key].cancels_not_refused += 1

    def cancel_refused(self, key: str) -> None:
        """A node answered that it did not cancel (unknown task, or too late)."""
        self._by_key[key].cancels_not_refused -= 1

    def cancel_acked(self, *, key: str, time_ms: int, order: Order) -> None:
        record = self._by_key[key]
        if record.cancel_acked_order is None:
            record.cancel_acked_order, record.cancel_acked_ms = order, time_ms

    def holder_crashed(self, task_ids: list[str], time_ms: int) -> None:
        """A process holding a pending copy of each of these tasks crashed."""
        for task_id in task_ids:
            record = self._by_task_id.get(task_id)
            if record is not None:
                record.holder_crashes_ms.append(time_ms)

    def replicas_answered(
        self,
        *,
        node: str,
        task_id: str,
        time_ms: int,
        replicas: int,
        stored_on: set[str],
        wanted: int,
    ) -> None:
        """`node` answered "scheduled" with `replicas` copies; `stored_on` are the distinct
        nodes that really stored a copy this enqueue placed. More copies may exist than it
        says (a repair may add one before the answer), never fewer; and fewer than R must
        be said as fewer."""
        if 1 <= replicas <= min(wanted, len(stored_on)):
            return
        self.violate(
            Anomaly.REPLICAS,
            time_ms,
            f"{node} answered {task_id} scheduled with replicas={replicas}, but "
            f"{len(stored_on)} distinct nodes stored a copy ({','.join(sorted(stored_on))}; "
            f"R={wanted})",
        )

    def under_replicated(
        self, short: list[tuple[str, list[str], list[str]]], wanted: int, time_ms: int
    ) -> None:
        """A repair period after the heal, these pending tasks (id, the live nodes holding a
        copy, the holders their copies name) still lack copies."""
        for task_id, holders, named in short:
            record = self._by_task_id.get(task_id)
            said = "" if record is None else f"; answered replicas={record.replicas_acked}"
            missing = sorted(set(named) - set(holders))
            since_ms = 0 if record is None or record.acked_ms is None else record.acked_ms
            restarted = sorted(
                node
                for w in self.faults.windows
                if w.kind == "crash" and w.start_ms >= since_ms
                for node in w.nodes & set(missing)
            )
            self.violate(
                Anomaly.UNDER_REPLICATED,
                time_ms,
                f"task {task_id} has copies on {sorted(holders)}, wanted {wanted} distinct; "
                f"its copies name the holders {named}"
                + (f", of which {missing} hold none" if missing else "")
                + (f" ({sorted(set(restarted))} crashed and restarted since)" if restarted else "")
                + said,
            )

    def holders_lost(self, task_ids: list[str], time_ms: int) -> None:
        """Every copy of these tasks is gone for good (their last holders crashed)."""
        for task_id in task_ids:
            record = self._by_task_id.get(task_id)
            if record is None:
                continue  # not a workload task: unexpected if ever delivered, checked there
            if record.all_holders_lost_ms is None and not record.successes:
                record.all_holders_lost_ms = time_ms

    def memory_lost(self, task_ids: list[str], time_ms: int) -> None:
        """No running node holds or remembers these tasks any more."""
        for task_id in task_ids:
            record = self._by_task_id.get(task_id)
            if record is not None:
                record.forgotten_ms = time_ms

    def quorum_lost(self, time_ms: int, why: str) -> None:
        """A majority of the member list is gone for good (see `Report.quorum_lost`)."""
        del why
        if self.quorum_lost_ms is None:
            self.quorum_lost_ms = time_ms

    def bad_input_answered(self, *, time_ms: int, node: str, status: int, what: str) -> None:
        if not 400 <= status < 500:
            self.violate(
                Anomaly.BAD_INPUT, time_ms, f"{node} answered {status} to a malformed {what}"
            )

    # -- receivers -------------------------------------------------------------------------------

    def delivery_started(self, delivery: DeliveryRecord) -> None:
        if self.limits is not None:
            self.limits.delivery_started(
                (delivery.node, delivery.incarnation), delivery.delivery_id, delivery.queue,
                delivery.task_id, delivery.time_ms,
            )  # fmt: skip
            self._take_limit_violations(self.limits)
        record = self._by_key.get(delivery.key) if delivery.key is not None else None
        if (
            record is None
            or record.task_id != delivery.task_id
            or (delivery.queue and delivery.queue != record.queue)
        ):
            self.violate(
                Anomaly.UNEXPECTED,
                delivery.time_ms,
                f"{delivery.node} delivered task {delivery.task_id!r} (key {delivery.key!r}, "
                f"queue {delivery.queue!r}), which no client enqueued",
            )
            return
        record.deliveries.append(delivery)
        assert delivery.key is not None
        early_ms = record.payload_etas[delivery.key] - delivery.time_ms
        if early_ms > self.bounds.early_slack_ms:
            self.violate(
                Anomaly.EARLY,
                delivery.time_ms,
                f"{delivery.node} delivered {record.task_id} {early_ms} ms before its ETA "
                f"(clock error allowed: {self.bounds.early_slack_ms} ms)",
            )
        cancelled = record.cancel_acked_order
        # Every node that knew of the cancel crashed since: the id is free again, and a later
        # enqueue of it (sent before its answer came) makes a new task.
        forgotten_ms, cancel_ms = record.forgotten_ms, record.cancel_acked_ms
        forgotten = forgotten_ms is not None and cancel_ms is not None and forgotten_ms >= cancel_ms
        if cancelled is not None and delivery.order > cancelled and not forgotten:
            assert record.cancel_acked_ms is not None
            self.violate(
                Anomaly.CANCELLED,
                delivery.time_ms,
                f"{delivery.node} started delivering {record.task_id} "
                f"{delivery.time_ms - record.cancel_acked_ms} ms after its cancel was "
                "acknowledged",
            )

    def delivery_ended(self, process: Process, delivery_id: int, time_ms: int) -> None:
        """The node that started a delivery heard its outcome."""
        if self.limits is not None:
            self.limits.delivery_ended(process, delivery_id, time_ms)

    # -- the cluster -----------------------------------------------------------------------------

    def members_known(self, process: Process, members: int, time_ms: int) -> None:
        """After a step, `process` knows a member list of length `members` (0: none yet)."""
        if self.limits is not None:
            self.limits.members_known(process, members, time_ms)

    def process_ended(self, process: Process, time_ms: int) -> None:
        """`process` crashed (its memory and connections are gone)."""
        if self.limits is not None:
            self.limits.process_ended(process, time_ms)

    def leader_seen(
        self, *, cluster_id: int, term: int, node: str, incarnation: int, time_ms: int
    ) -> None:
        """`node` acts as the leader of `term`: it says so in its view, or sends heartbeats."""
        process = (node, incarnation)
        holder = self._leaders.setdefault((cluster_id, term), process)
        if holder != process:
            self.violate(
                Anomaly.ELECTION_SAFETY,
                time_ms,
                f"two leaders in term {term}: {holder[0]} (incarnation {holder[1]}) "
                f"and {node} (incarnation {incarnation})",
            )

    def stamp_seen(
        self, *, node: str, incarnation: int, cluster_id: int, term: int, epoch: int, time_ms: int
    ) -> bool:
        """A process sent a message stamped with its term and epoch: they never go back.
        Whether the stamp changed since its last message (so its view is worth reading)."""
        process = (node, incarnation)
        stamp = (cluster_id, term, epoch)
        before = self._stamps.get(process)
        if before == stamp:
            return False
        self._stamps[process] = stamp
        if before is not None and before[0] == cluster_id and (term, epoch) < before[1:]:
            self.violate(
                Anomaly.EPOCH,
                time_ms,
                f"{node} sent term {term} epoch {epoch} after term {before[1]} epoch {before[2]}",
            )
        return True

    def view_read(self, view: ClusterView, time_ms: int) -> None:
        """Check a node's view after it took a step: at most one leader per term, one member
        list per epoch, and a process's term and epoch never go back."""
        if view.leads:
            self.leader_seen(
                cluster_id=view.cluster_id, term=view.term, node=view.node,
                incarnation=view.incarnation, time_ms=time_ms,
            )  # fmt: skip
        if view.cluster_id:
            key = (view.cluster_id, view.epoch)
            members = self._memberships.setdefault(key, view.members)
            if members != view.members:
                self.violate(
                    Anomaly.EPOCH,
                    time_ms,
                    f"epoch {view.epoch} names two memberships: {members} and {view.members} "
                    f"(at {view.node})",
                )
        process = (view.node, view.incarnation)
        before = self._last_view.get(process)
        if before is not None and (view.epoch < before.epoch or view.term < before.term):
            self.violate(
                Anomaly.EPOCH,
                time_ms,
                f"{view.node} went back from term {before.term} epoch {before.epoch} "
                f"to term {view.term} epoch {view.epoch}",
            )
        self._last_view[process] = view

    @property
    def elections(self) -> int:
        """Terms in which some node was leader."""
        return len(self._leaders)

    # -- the end ---------------------------------------------------------------------------------

    def unresolved(self) -> list[TaskRecord]:
        """Acknowledged tasks still owed a delivery: not delivered, not cancelled (a cancel was
        attempted, so not delivering is allowed), not lost with all their holders, not given
        up on by their retry policy."""
        return [r for r in self.tasks.values() if _owed(r) and not self._given_up(r)]

    def _given_up(self, record: TaskRecord) -> bool:
        policy = self.retry_policies.get(record.queue)
        return policy is not None and replay(policy, record.deliveries)[0]

    def final_states(self, states: dict[str, set[str]]) -> None:
        """The states the running nodes hold each task in at the end of the run."""
        self._states = states

    def report(self, end_ms: int) -> Report:
        report = Report(
            tasks=len(self.tasks),
            elections=self.elections,
            quorum_lost=self.quorum_lost_ms is not None,
        )
        for record in self.tasks.values():
            report.acked += record.acked_ms is not None
            if record.queue in self.retry_policies:
                self._check_dead_letter(record, report, end_ms)
            successes = record.successes
            if successes:
                report.delivered += 1
                late_ms = successes[0].time_ms - record.eta_ms
                report.late += late_ms > self.bounds.late_slack_ms
            elif record.acked_ms is not None and not record.cancel_maybe:
                if self._given_up(record):
                    pass  # a dead letter, as its policy said (checked above)
                elif record.all_holders_lost_ms is not None:
                    if self.quorum_lost_ms is not None:
                        report.lost_no_quorum += 1  # no majority: maybe never repairable
                    elif self._lost_too_fast(record, end_ms):
                        report.lost_all_holders += 1
                elif self.quorum_lost_ms is not None:
                    # Not delivered when a majority crashed for good: the survivors may not
                    # deliver it (they may have been removed). A crash and a pause before
                    # that can have left the cluster without a majority for any length of time.
                    report.lost_no_quorum += 1
                else:
                    self.violate(
                        Anomaly.LOST,
                        end_ms,
                        f"{record.task_id} (key {record.key}) was acknowledged by "
                        f"{','.join(sorted(record.acked_by))} at {record.acked_ms / 1000:.3f}s "
                        f"and never delivered ({len(record.deliveries)} failed attempts)",
                    )
            if len(successes) > 1:
                self._check_duplicate(record, successes, report)
        if self.limits is not None:
            self._check_limits(self.limits, report)
        self._check_duplicate_rate(report, end_ms)
        report.under_replicated = self._counts[Anomaly.UNDER_REPLICATED]
        report.early = self._counts[Anomaly.EARLY]
        report.cancelled = self._counts[Anomaly.CANCELLED]
        report.lost = self._counts[Anomaly.LOST]
        report.violations = list(self.violations)
        return report

    def _check_limits(self, limits: LimitChecker, report: Report) -> None:
        limits.check_rate()
        self._take_limit_violations(limits)
        report.limits = limits.stats

    def _take_limit_violations(self, limits: LimitChecker) -> None:
        """What the limit checker found since last asked, as anomalies."""
        for found in limits.stats.violations[self._limit_violations_seen :]:
            anomaly = Anomaly.RATE if found.kind == "rate" else Anomaly.CONCURRENCY
            self.violate(anomaly, found.time_ms, found.detail)
        self._limit_violations_seen = len(limits.stats.violations)

    def _check_dead_letter(self, record: TaskRecord, report: Report, end_ms: int) -> None:
        """Attempts stop exactly when the queue's retry policy says, and a task it gave up on
        is shown as failed by some node (sim/retry_limits.py)."""
        policy = self.retry_policies[record.queue]
        gave_up, problem = replay(policy, record.deliveries)
        if problem is not None:
            self.violate(Anomaly.DEAD_LETTER, end_ms, f"{record.task_id}: {problem}")
        states = set() if self._states is None else self._states.get(record.task_id, set())
        if gave_up:
            report.dead_letters += 1
            if problem is None and self._states is not None and "failed" not in states:
                self.violate(
                    Anomaly.DEAD_LETTER,
                    end_ms,
                    f"{record.task_id}: its policy gave it up after {len(record.deliveries)} "
                    f"failed attempts, but no running node shows it failed ({sorted(states)})",
                )
        elif "failed" in states:
            self.violate(
                Anomaly.DEAD_LETTER,
                end_ms,
                f"{record.task_id}: a node shows it failed after {len(record.deliveries)} "
                "attempts, before its policy gave it up",
            )

    def _lost_too_fast(self, record: TaskRecord, end_ms: int) -> bool:
        """Whether the history proves that the task's holders all crashed too fast for a
        repair: its last copy was alone (since the crash of the holder before, or since the
        enqueue was answered when only one holder ever crashed) for less than the repair
        window, not counting time some pause, clog or partition may have stalled a repair.
        Otherwise its loss is the cluster's (a LOST violation names why)."""
        lost_ms = record.all_holders_lost_ms
        assert lost_ms is not None and record.acked_ms is not None
        crashes = record.holder_crashes_ms
        alone_since_ms = crashes[-2] if len(crashes) >= 2 else record.acked_ms
        alone_since_ms = min(alone_since_ms, lost_ms)
        alone_ms = lost_ms - alone_since_ms - self.faults.stalled_ms(alone_since_ms, lost_ms)
        if alone_ms < self.bounds.repair_window_ms:
            return True
        self.violate(
            Anomaly.LOST,
            end_ms,
            f"{record.task_id} (key {record.key}) was acknowledged by "
            f"{','.join(sorted(record.acked_by))} at {record.acked_ms / 1000:.3f}s (replicas="
            f"{record.replicas_acked}) and lost when its last holder crashed at "
            f"{lost_ms / 1000:.3f}s: its last copy was alone for {alone_ms} ms without a "
            f"stalling fault (since {alone_since_ms / 1000:.3f}s), more than the repair window "
            f"of {self.bounds.repair_window_ms} ms",
        )
        return False

    def _check_duplicate_rate(self, report: Report, end_ms: int) -> None:
        """Explained duplicates are allowed, but not many: far above what the faults of any
        scenario cause with the real node, the faults are excusing a bug."""
        if report.delivered < self.bounds.duplicate_rate_min_delivered:
            return
        rate = report.duplicated_explained / report.delivered
        if rate > self.bounds.duplicate_rate_max:
            self.violate(
                Anomaly.DUPLICATE_RATE,
                end_ms,
                f"{report.duplicated_explained} of {report.delivered} delivered tasks "
                f"({rate:.1%}) were delivered twice with a fault to explain it; at most "
                f"{self.bounds.duplicate_rate_max:.0%} may be",
            )

    def _check_duplicate(
        self, record: TaskRecord, successes: list[DeliveryRecord], report: Report
    ) -> None:
        """Explained only by a fault that touched the holders involved (the nodes that
        attempted it and the holders their copies knew of) or a link between them, from the
        first attempt (or the ETA, when a copy held back claimed the task then) until the copy
        of the two that fired later was due (or, past that, first started it: the question a
        copy asks before firing may be what the fault cut off)."""
        first = record.deliveries[0]
        start_ms = min(record.eta_ms, first.time_ms) - self.bounds.early_slack_ms
        first_start_ms: dict[tuple[str, int], DeliveryRecord] = {}
        for d in record.deliveries:
            first_start_ms.setdefault((d.node, d.incarnation), d)
        earlier = first_start_ms[(successes[0].node, successes[0].incarnation)]
        involved: set[str] = set()
        explained = True
        for again in successes[1:]:
            copy = first_start_ms[(again.node, again.incarnation)]
            later = max(earlier, copy, key=lambda d: d.time_ms)
            due_ms = later.copy_due_ms if later.copy_due_ms is not None else later.time_ms
            end_ms = max(due_ms, later.time_ms, start_ms)
            involved = {
                n
                for d in record.deliveries
                if d.time_ms <= end_ms or d is again
                for n in (d.node, *d.holders)
            }
            if self.faults.explain_among(involved, start_ms, end_ms) is None:
                explained = False
                break
        if explained:
            report.duplicated_explained += 1
            return
        report.duplicated_unexplained += 1
        shown = ", ".join(f"{d.node} at {d.time_ms / 1000:.3f}s" for d in successes)
        # Several payloads: the id was enqueued with each; the task is still one (a copy stored
        # by a later enqueue of the id joins the task with that enqueue's payload).
        payloads = sorted({d.key for d in successes if d.key is not None})
        which = f", payloads {' and '.join(payloads)}" if len(payloads) > 1 else ""
        self.violate(
            Anomaly.DUPLICATED,
            successes[-1].time_ms,
            f"{record.task_id} was delivered {len(successes)} times ({shown}{which}) with no "
            f"fault on its holders {','.join(sorted(involved))} or the links between them "
            "from its first attempt until the later copy was due or fired to explain it",
        )


def _owed(record: TaskRecord) -> bool:
    return (
        record.acked_ms is not None
        and not record.cancel_maybe
        and record.all_holders_lost_ms is None
        and not record.successes
    )


def convergence_problem(
    views: list[ClusterView], live: list[str], copies: dict[str, list[str]], replicas: int
) -> str | None:
    """Why the live nodes have not converged, or None when they have: one leader, one
    membership naming exactly the live nodes, and each pending task held by min(R, live)
    distinct members. `copies` maps a pending task id to the nodes holding a copy."""
    problem = membership_problem(views, live)
    if problem is not None:
        return problem
    wanted = min(replicas, len(live))
    for task_id in copies_problems(live, copies, replicas)[:1]:
        return f"task {task_id} has copies on {sorted(copies[task_id])}, wanted {wanted} distinct"
    return None


def membership_problem(views: list[ClusterView], live: list[str]) -> str | None:
    """Why the live nodes do not agree on one leader and one membership naming exactly them,
    or None when they do."""
    leaders = {(v.cluster_id, v.leader, v.term) for v in views}
    if len(leaders) != 1 or next(iter(leaders))[1] is None:
        return f"no single leader: (cluster, leader, term) {sorted(leaders, key=str)}"
    memberships = {(v.epoch, v.members) for v in views}
    if len(memberships) != 1:
        return f"{len(memberships)} different memberships"
    ((_, members),) = memberships
    if sorted(members) != sorted(live):
        return f"membership {sorted(members)} is not the live nodes {sorted(live)}"
    return None


def copies_problems(
    live: list[str], copies: dict[str, list[str]], replicas: int, *, fewer_only: bool = False
) -> list[str]:
    """The pending tasks not held by exactly min(R, live) distinct live nodes (`fewer_only`:
    by fewer). `copies` maps a pending task id to the nodes holding a copy."""
    wanted = min(replicas, len(live))
    return [
        task_id
        for task_id, holders in sorted(copies.items())
        if len(set(holders)) < wanted
        or (not fewer_only and (len(set(holders)) != len(holders) or len(holders) != wanted))
    ]
