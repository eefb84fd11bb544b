"""Each checker on a hand-written history: it names the anomaly it is for, and only that."""

from __future__ import annotations

from sim.checkers import Anomaly, Bounds, Checker, ClusterView, FailureKind, convergence_problem
from sim.history import DeliveryRecord

BOUNDS = Bounds(early_slack_ms=100, late_slack_ms=20_000, duplicate_window_ms=15_000)


def _checker(*keys: str, eta_ms: int = 10_000) -> Checker:
    checker = Checker(BOUNDS)
    for key in keys:
        checker.enqueue_sent(key=key, task_id=f"t-{key}", queue="q", eta_ms=eta_ms)
        checker.enqueue_acked(key=key, node="n1", time_ms=5, replicas=2)
    return checker


def _delivery(
    key: str | None,
    time_ms: int,
    *,
    node: str = "n1",
    status: int | None = 200,
    order: tuple[int, int] = (10, 0),
    task_id: str | None = None,
) -> DeliveryRecord:
    return DeliveryRecord(
        node=node, time_ms=time_ms, order=order, key=key,
        task_id=task_id if task_id is not None else f"t-{key}", processed_status=status,
    )  # fmt: skip


def _anomalies(checker: Checker, end_ms: int = 100_000) -> list[Anomaly]:
    return [v.anomaly for v in checker.report(end_ms).violations]


def test_a_clean_history_has_no_anomaly() -> None:
    checker = _checker("a", "b")
    checker.delivery_started(_delivery("a", 10_000))
    checker.delivery_started(_delivery("b", 10_050, status=500))
    checker.delivery_started(_delivery("b", 11_000))
    report = checker.report(100_000)
    assert report.violations == [] and report.failure is None
    assert (report.tasks, report.acked, report.delivered) == (2, 2, 2)


def test_lost_is_an_acknowledged_task_never_delivered_with_a_2xx() -> None:
    checker = _checker("a")
    checker.delivery_started(_delivery("a", 10_000, status=503))
    report = checker.report(100_000)
    assert [v.anomaly for v in report.violations] == [Anomaly.LOST]
    assert report.lost == 1 and report.failure is FailureKind.CORRECTNESS


def test_a_task_lost_with_all_its_holders_is_counted_apart_not_failed() -> None:
    checker = _checker("a")
    checker.holders_lost(["t-a"], 7_000)
    report = checker.report(100_000)
    assert report.violations == [] and (report.lost, report.lost_all_holders) == (0, 1)


def test_unacknowledged_or_cancelled_tasks_are_not_owed() -> None:
    checker = Checker(BOUNDS)
    checker.enqueue_sent(key="timed-out", task_id="t-1", queue="q", eta_ms=0)
    checker.enqueue_sent(key="cancelled", task_id="t-2", queue="q", eta_ms=0)
    checker.enqueue_acked(key="cancelled", node="n1", time_ms=1, replicas=1)
    checker.cancel_sent("cancelled")
    assert checker.unresolved() == [] and _anomalies(checker) == []


def test_a_refused_cancel_leaves_the_task_owed() -> None:
    checker = _checker("a")
    checker.cancel_sent("a")
    checker.cancel_refused("a")
    assert _anomalies(checker) == [Anomaly.LOST]


def test_a_cancel_refused_after_it_overtook_the_enqueue_does_not_undo_an_earlier_one() -> None:
    # Two DELETEs in flight: the second overtakes the enqueue (404), the first cancels (200).
    checker = _checker("a")
    checker.cancel_sent("a")
    checker.cancel_sent("a")
    checker.cancel_refused("a")
    checker.cancel_acked(key="a", time_ms=6, order=(6, 0))
    assert _anomalies(checker) == []


def test_a_task_scheduled_anew_after_its_cancel_may_be_delivered_and_is_owed() -> None:
    # Every holder of the cancelled task crashed; a repeat of the id was answered "scheduled".
    def scheduled_anew() -> Checker:
        checker = _checker("a")
        checker.cancel_sent("a")
        checker.cancel_acked(key="a", time_ms=6, order=(6, 0))
        checker.enqueue_acked(key="a", node="n2", time_ms=9, replicas=2, sent_ms=7)
        return checker

    assert _anomalies(scheduled_anew()) == [Anomaly.LOST]
    # The answer to an enqueue sent before the cancel does not make a new task:
    earlier = _checker("a")
    earlier.cancel_sent("a")
    earlier.cancel_acked(key="a", time_ms=6, order=(6, 0))
    earlier.enqueue_acked(key="a", node="n1", time_ms=9, replicas=2, sent_ms=1)
    earlier.delivery_started(_delivery("a", 10_000, order=(10_000, 0)))
    assert _anomalies(earlier) == [Anomaly.CANCELLED]
    delivered = scheduled_anew()
    delivered.delivery_started(_delivery("a", 10_000, order=(10_000, 0)))
    assert _anomalies(delivered) == []


def test_a_delivery_after_a_cancel_is_allowed_once_every_node_that_knew_it_crashed() -> None:
    def cancelled(forgotten_ms: int | None) -> Checker:
        checker = _checker("a")
        checker.cancel_sent("a")
        checker.cancel_acked(key="a", time_ms=6, order=(6, 0))
        if forgotten_ms is not None:
            checker.memory_lost(["t-a"], forgotten_ms)
        checker.delivery_started(_delivery("a", 10_000, order=(10_000, 0)))
        return checker

    assert _anomalies(cancelled(None)) == [Anomaly.CANCELLED]
    assert _anomalies(cancelled(3)) == [Anomaly.CANCELLED]  # forgotten before the cancel
    assert _anomalies(cancelled(8)) == []


def test_a_task_owed_when_the_quorum_was_lost_is_counted_apart_not_failed() -> None:
    checker = _checker("a", eta_ms=10_000)
    checker.quorum_lost(40_000, "a majority crashed")
    report = checker.report(100_000)
    assert report.violations == [] and (report.lost_no_quorum, report.quorum_lost) == (1, True)


def test_unexpected_is_a_delivery_of_something_never_enqueued() -> None:
    checker = _checker("a")
    checker.delivery_started(_delivery("a", 10_000))
    checker.delivery_started(_delivery(None, 10_000, task_id="phantom"))
    checker.delivery_started(_delivery("a", 10_000, task_id="t-other"))
    assert _anomalies(checker) == [Anomaly.UNEXPECTED, Anomaly.UNEXPECTED]


def test_early_is_a_delivery_before_the_eta_beyond_the_clock_error() -> None:
    checker = _checker("a", "b")
    checker.delivery_started(_delivery("a", 10_000 - 100))  # within the clock error
    checker.delivery_started(_delivery("b", 10_000 - 101))
    assert _anomalies(checker) == [Anomaly.EARLY]


def test_cancelled_is_a_delivery_started_after_the_cancel_was_acknowledged() -> None:
    checker = _checker("a", "b")
    checker.cancel_sent("a")
    checker.cancel_acked(key="a", time_ms=9_000, order=(50, 1))
    checker.delivery_started(_delivery("a", 10_000, order=(50, 0)))  # before, in the same step
    checker.cancel_sent("b")
    checker.cancel_acked(key="b", time_ms=9_000, order=(50, 1))
    checker.delivery_started(_delivery("b", 10_000, order=(51, 0)))
    assert _anomalies(checker) == [Anomaly.CANCELLED]


def test_a_duplicate_without_a_fault_fails_and_one_with_a_fault_is_explained() -> None:
    checker = _checker("a", "b")
    for key in ("a", "b"):
        checker.delivery_started(_delivery(key, 10_000, node="n1"))
        checker.delivery_started(_delivery(key, 12_000, node="n2"))
    report = checker.report(100_000)
    assert (report.duplicated_explained, report.duplicated_unexplained) == (0, 2)

    checker = _checker("a", "b")
    checker.faults.close(checker.faults.open("crash", ["n1"], 10_001), 11_000)
    checker.faults.message_fault(30_000, ["n3"])  # another node, after: explains nothing
    checker.delivery_started(_delivery("a", 10_000, node="n1"))
    checker.delivery_started(_delivery("a", 12_000, node="n2"))
    checker.delivery_started(_delivery("b", 10_000, node="n2"))
    checker.delivery_started(_delivery("b", 12_000, node="n3"))  # n1's crash is not around b
    report = checker.report(100_000)
    assert (report.duplicated_explained, report.duplicated_unexplained) == (1, 1)
    assert [v.anomaly for v in report.violations] == [Anomaly.DUPLICATED]


def test_a_delivery_later_than_the_slack_is_reported_late_not_failed() -> None:
    checker = _checker("a")
    checker.delivery_started(_delivery("a", 10_000 + 20_001))
    report = checker.report(100_000)
    assert report.late == 1 and report.failure is None


def _view(node: str, *, term: int = 1, epoch: int = 1, leads: bool = False,
          members: tuple[str, ...] = ("n1", "n2", "n3"), incarnation: int = 1,
          leader: str | None = "n1") -> ClusterView:  # fmt: skip
    return ClusterView(node=node, incarnation=incarnation, cluster_id=9, leads=leads,
                       leader=leader, term=term, epoch=epoch, members=members)  # fmt: skip


def test_two_leaders_in_one_term_break_election_safety() -> None:
    checker = Checker(BOUNDS)
    checker.view_read(_view("n1", leads=True), 1)
    checker.view_read(_view("n1", leads=True), 2)
    checker.view_read(_view("n2", term=2, leads=True), 3)
    assert checker.violations == [] and checker.elections == 2
    checker.view_read(_view("n3", term=2, leads=True), 4)
    checker.view_read(_view("n2", term=2, leads=True, incarnation=2), 5)  # a restarted process
    assert [v.anomaly for v in checker.violations] == [Anomaly.ELECTION_SAFETY] * 2


def test_epochs_never_go_back_and_one_epoch_names_one_membership() -> None:
    checker = Checker(BOUNDS)
    checker.view_read(_view("n1", epoch=3), 1)
    checker.view_read(_view("n1", epoch=2), 2)
    checker.view_read(_view("n2", epoch=3, members=("n1", "n2")), 3)
    checker.view_read(_view("n1", epoch=1, incarnation=2), 4)  # a new process starts afresh
    assert [v.anomaly for v in checker.violations] == [Anomaly.EPOCH, Anomaly.EPOCH]


def test_convergence_wants_one_leader_one_membership_of_the_live_and_r_copies() -> None:
    live = ["n1", "n2", "n3"]
    views = [_view(n) for n in live]
    assert convergence_problem(views, live, {"t": ["n1", "n2"]}, 2) is None
    assert convergence_problem(views, live, {"t": ["n1"]}, 2) is not None
    assert convergence_problem(views, live, {"t": ["n1", "n1"]}, 2) is not None
    assert convergence_problem(views, [*live, "n4"], {}, 2) is not None
    split = [*views[:2], _view("n3", leader="n3", term=2)]
    assert convergence_problem(split, live, {}, 2) is not None
    leaderless = [_view(n, leader=None) for n in live]
    assert convergence_problem(leaderless, live, {}, 2) is not None
