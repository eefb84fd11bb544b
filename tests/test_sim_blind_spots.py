"""The checks of issue 14 on hand-written histories: reply replicas, losses with all holders,
duplicates explained only by faults on the holders involved, the duplicate-rate bound, dead
letters against the retry policy, and copies a repair period after the heal."""

from __future__ import annotations

from collections.abc import Callable

from miyamoto.logic.retry import RetryPolicy
from sim.checkers import Anomaly, Bounds, Checker, copies_problems
from sim.copies import scheduled_answer
from sim.history import DeliveryRecord, FaultLog
from sim.retry_limits import replay

BOUNDS = Bounds(
    early_slack_ms=100, late_slack_ms=20_000, duplicate_window_ms=15_000, repair_window_ms=10_000
)


def _checker(
    *keys: str, eta_ms: int = 10_000, retry_policies: dict[str, RetryPolicy] | None = None
) -> Checker:
    checker = Checker(BOUNDS, retry_policies=retry_policies)
    for key in keys:
        checker.enqueue_sent(key=key, task_id=f"t-{key}", queue="q", eta_ms=eta_ms)
        checker.enqueue_acked(key=key, node="n1", time_ms=5, replicas=2)
    return checker


def _delivery(
    key: str,
    time_ms: int,
    *,
    node: str = "n1",
    status: int | None = 200,
    due_ms: int | None = None,
    holders: tuple[str, ...] = (),
    ended_ms: int | None = None,
    incarnation: int = 0,
) -> DeliveryRecord:
    return DeliveryRecord(
        node=node, time_ms=time_ms, order=(time_ms, 0), key=key, task_id=f"t-{key}",
        processed_status=status, answered_status=status, queue="q", copy_due_ms=due_ms,
        holders=holders, ended_ms=time_ms + 10 if ended_ms is None else ended_ms,
        incarnation=incarnation,
    )  # fmt: skip


def _anomalies(checker: Checker) -> list[Anomaly]:
    return [v.anomaly for v in checker.report(100_000).violations]


# -- replicas --------------------------------------------------------------------------------------


def test_a_reply_may_not_claim_more_copies_than_distinct_nodes_stored_nor_more_than_r() -> None:
    checker = Checker(BOUNDS)

    def answered(replicas: int, *stored_on: str) -> None:
        checker.replicas_answered(
            node="n1", task_id="t", time_ms=1, replicas=replicas, stored_on=set(stored_on),
            wanted=3,
        )  # fmt: skip

    answered(2, "n1", "n2")
    answered(2, "n1", "n2", "n3")  # a repair may add a copy before the answer: more is fine
    assert checker.violations == []
    answered(3, "n1", "n2")
    answered(4, "n1", "n2", "n3", "n4")
    answered(0)
    assert [v.anomaly for v in checker.violations] == [Anomaly.REPLICAS] * 3
    assert "replicas=3, but 2 distinct nodes stored a copy" in str(checker.violations[0])


def test_a_scheduled_answer_is_read_and_anything_else_is_not() -> None:
    body = b'{"status": "scheduled", "id": "t", "queue": "q", "eta": 1.0, "replicas": 2}'
    assert scheduled_answer(body) == ("q", "t", 2)
    assert scheduled_answer(b'{"status": "duplicate", "id": "t"}') is None
    assert scheduled_answer(b'{"status": "scheduled", "id": "t", "queue": "q"}') is None
    assert scheduled_answer(b"not json") is None


# -- lost with all holders -----------------------------------------------------------------------


def test_a_loss_with_all_holders_is_excused_only_when_they_crashed_too_fast_for_a_repair() -> None:
    checker = _checker("fast", "slow", "lone")
    checker.holder_crashed(["t-fast", "t-slow"], 20_000)
    checker.holder_crashed(["t-fast"], 25_000)  # 5 s after the first: no time to repair
    checker.holders_lost(["t-fast"], 25_000)
    checker.holder_crashed(["t-slow"], 45_000)  # 25 s alone: a repair should have copied it
    checker.holders_lost(["t-slow"], 45_000)
    checker.holder_crashed(["t-lone"], 60_000)  # one copy since the answer, 60 s before
    checker.holders_lost(["t-lone"], 60_000)
    report = checker.report(100_000)
    assert report.lost_all_holders == 1
    lost = [str(v) for v in report.violations]
    assert [v.anomaly for v in report.violations] == [Anomaly.LOST, Anomaly.LOST]
    assert "t-slow" in lost[0] and "alone for 25000 ms" in lost[0]
    assert "t-lone" in lost[1]


def test_time_a_partition_or_pause_may_have_stalled_the_repair_does_not_count() -> None:
    checker = _checker("a")
    checker.faults.close(checker.faults.open("majority_minority", ["n3"], 21_000), 39_000)
    checker.holder_crashed(["t-a"], 20_000)
    checker.holder_crashed(["t-a"], 45_000)
    checker.holders_lost(["t-a"], 45_000)
    report = checker.report(100_000)
    assert report.violations == [] and report.lost_all_holders == 1


def test_stalled_time_counts_overlapping_windows_once_and_ignores_crashes() -> None:
    faults = FaultLog()
    faults.close(faults.open("pause", ["n1"], 0), 10)
    faults.close(faults.open("clog", ["n2"], 5), 20)
    faults.open("isolate_one", ["n3"], 30)  # still open
    faults.close(faults.open("crash", ["n4"], 0), 100)
    assert faults.stalled_ms(0, 40) == 20 + 10
    assert faults.stalled_ms(50, 60) == 10


def test_stalled_time_counts_when_half_the_nodes_or_more_were_crashed() -> None:
    faults = FaultLog()
    faults.node_count = 3
    faults.close(faults.open("crash", ["n1"], 100), 500)
    faults.close(faults.open("crash", ["n2"], 200), 300)  # two of three down in [200, 300]
    assert faults.stalled_ms(0, 1_000) == 100
    faults.node_count = 4
    assert faults.stalled_ms(0, 1_000) == 100  # two of four: no majority either
    faults.node_count = 5
    assert faults.stalled_ms(0, 1_000) == 0


# -- duplicates ------------------------------------------------------------------------------------


def _twice_explained(fault: Callable[[FaultLog], object]) -> bool:
    """n1's copy delivers at 10 s, n2's (due at 12 s) again at 12 s; `fault` happens."""
    checker = _checker("a")
    fault(checker.faults)
    holders = ("n1", "n2")
    checker.delivery_started(_delivery("a", 10_000, node="n1", due_ms=10_000, holders=holders))
    checker.delivery_started(_delivery("a", 12_000, node="n2", due_ms=12_000, holders=holders))
    report = checker.report(100_000)
    assert report.duplicated_explained + report.duplicated_unexplained == 1
    return report.duplicated_explained == 1


def test_a_duplicate_is_explained_only_by_a_fault_on_the_holders_involved_or_their_link() -> None:
    assert _twice_explained(lambda f: f.message_fault(10_500, ["n1", "n2"]))
    assert _twice_explained(lambda f: f.close(f.open("pause", ["n2"], 9_000), 10_100))
    # a packet lost between n1 and n3, which holds no copy: explains nothing
    assert not _twice_explained(lambda f: f.message_fault(10_500, ["n1", "n3"]))
    # a crash of n3 (no holder), or of a holder after the second copy was due and fired
    assert not _twice_explained(lambda f: f.close(f.open("crash", ["n3"], 10_500), 11_000))
    assert not _twice_explained(lambda f: f.close(f.open("crash", ["n2"], 12_500), 13_000))


def test_the_window_ends_at_the_copy_that_fired_later_even_if_it_succeeded_first() -> None:
    """n1's copy fires first and hangs; a partition cuts n1 from n2 before n2's copy is due;
    n2 delivers; then n1's retry succeeds too: explained, by the partition."""
    checker = _checker("a")
    checker.faults.close(checker.faults.open("isolate_one", ["n1"], 11_000), 30_000)
    holders = ("n1", "n2")
    checker.delivery_started(_delivery("a", 10_000, node="n1", status=None, due_ms=10_000,
                                       holders=holders, ended_ms=20_000))  # fmt: skip
    checker.delivery_started(_delivery("a", 25_000, node="n2", due_ms=12_000, holders=holders))
    checker.delivery_started(_delivery("a", 31_000, node="n1", due_ms=10_000, holders=holders))
    report = checker.report(100_000)
    assert (report.duplicated_explained, report.duplicated_unexplained) == (1, 0)


def test_explained_duplicates_far_above_what_faults_cause_fail_the_run() -> None:
    keys = [f"k{i}" for i in range(20)]
    checker = _checker(*keys)
    checker.faults.close(checker.faults.open("crash", ["n1"], 10_001), 11_000)
    for i, key in enumerate(keys):
        checker.delivery_started(_delivery(key, 10_000, node="n1"))
        if i < 4:  # 4 of 20 delivered twice: 20%, over the 15% bound
            checker.delivery_started(_delivery(key, 12_000, node="n2"))
    report = checker.report(100_000)
    assert report.duplicated_explained == 4 and report.duplicated_unexplained == 0
    assert [v.anomaly for v in report.violations] == [Anomaly.DUPLICATE_RATE]


# -- dead letters ----------------------------------------------------------------------------------

POLICY = RetryPolicy(retry_limit=2, min_backoff_ms=100, max_backoff_ms=100)


def test_replaying_the_policy_says_when_a_task_is_given_up_and_what_went_past_it() -> None:
    failed = [_delivery("a", t, status=500) for t in (1_000, 2_000, 3_000)]
    assert replay(POLICY, failed) == (True, None)
    assert replay(POLICY, failed[:2]) == (False, None)
    assert replay(POLICY, [*failed[:2], _delivery("a", 3_000)]) == (False, None)
    gave_up, problem = replay(POLICY, [*failed, _delivery("a", 4_000)])
    assert gave_up and problem is not None and "attempt 4 started" in problem
    aged = RetryPolicy(retry_limit=-1, age_limit_ms=1_500, min_backoff_ms=100)
    assert replay(aged, failed[:2]) == (False, None)  # the 2nd failed 1010 ms after the 1st
    assert replay(aged, failed)[0]  # the 3rd failed 2010 ms after: too old to retry


def test_dead_letters_appear_exactly_when_the_policy_says() -> None:
    checker = _checker("dead", "owed", "early", retry_policies={"q": POLICY})
    for t in (11_000, 12_000, 13_000):
        checker.delivery_started(_delivery("dead", t, status=500))
    checker.delivery_started(_delivery("owed", 11_000, status=500))
    checker.delivery_started(_delivery("early", 11_000, status=500))
    assert [r.task_id for r in checker.unresolved()] == ["t-owed", "t-early"]
    checker.final_states({"t-dead": {"failed"}, "t-owed": {"retrying"}, "t-early": {"failed"}})
    report = checker.report(100_000)
    assert report.dead_letters == 1
    shown = [(v.anomaly, v.detail.split(":")[0]) for v in report.violations]
    assert (Anomaly.DEAD_LETTER, "t-early") in shown  # failed before its policy gave it up
    assert not any("t-dead" in v.detail for v in report.violations)
    assert sorted(a.value for a, _ in shown) == ["dead_letter", "lost", "lost"]

    checker = _checker("dead", retry_policies={"q": POLICY})
    for t in (11_000, 12_000, 13_000):
        checker.delivery_started(_delivery("dead", t, status=500))
    checker.final_states({"t-dead": {"retrying"}})  # given up by the policy, not by the node
    assert _anomalies(checker) == [Anomaly.DEAD_LETTER]


# -- copies after the heal -------------------------------------------------------------------------


def test_after_the_heal_only_pending_tasks_short_of_copies_are_named() -> None:
    live = ["n1", "n2", "n3"]
    copies = {"short": ["n1"], "ok": ["n1", "n2"], "extra": ["n1", "n2", "n3"]}
    assert copies_problems(live, copies, 2, fewer_only=True) == ["short"]
    assert copies_problems(live, copies, 2) == ["extra", "short"]
    assert copies_problems(["n1"], {"t": ["n1"]}, 3, fewer_only=True) == []  # min(R, live)
