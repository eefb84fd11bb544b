"""The queue-limit checkers (rate and concurrency across the cluster) and tasks identified by
client id, on hand-written histories; then whole runs of the rate_limited scenario."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sim.checkers import Anomaly, Bounds, Checker
from sim.history import DeliveryRecord
from sim.limit_checks import LimitChecker
from sim.limits import CAPPED_QUEUE, RATE_QUEUE, QueueLimits, draw_limits
from sim.matrix import Job
from sim.run import HEALED_LINKS, WARMUP_MS, build, liveness_phase, run
from sim.scenarios import SCENARIOS, Shape, draw_config
from sim.trace import Trace

BOUNDS = Bounds(early_slack_ms=100, late_slack_ms=20_000, duplicate_window_ms=15_000)
NODES = ("n1", "n2", "n3")


def _checker(limits: QueueLimits, *, drift_ppm: int = 0, members: int = 3) -> Checker:
    """A checker whose three processes (incarnation 1) know `members` members from time 0."""
    checker = Checker(BOUNDS, LimitChecker(limits, drift_ppm))
    for node in NODES:
        checker.members_known((node, 1), members, 0)
    return checker


class _Deliveries:
    """Starts deliveries of a limited queue, each with its own id."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.next_id = 0

    def start(
        self, node: str, time_ms: int, queue: str = RATE_QUEUE, *, incarnation: int = 1
    ) -> int:
        self.next_id += 1
        self.checker.delivery_started(
            DeliveryRecord(
                node=node, time_ms=time_ms, order=(self.next_id, 0), task_id=f"t{self.next_id}",
                key=None, processed_status=200, queue=queue, incarnation=incarnation,
                delivery_id=self.next_id,
            )
        )  # fmt: skip
        return self.next_id


def _limit_anomalies(checker: Checker) -> list[Anomaly]:
    """The limit anomalies of the report (the deliveries above name no workload task, so they
    are also "unexpected", which is not what these tests are about)."""
    found = [v.anomaly for v in checker.report(100_000).violations]
    return [a for a in found if a in (Anomaly.RATE, Anomaly.CONCURRENCY)]


# -- rate ---------------------------------------------------------------------------------------

RATE_10_BUCKET_1 = QueueLimits(rate_per_s=10.0, bucket_size=1)


def _rate_run(times_by_node: dict[str, list[int]], checker: Checker | None = None) -> Checker:
    checker = checker or _checker(RATE_10_BUCKET_1)
    deliveries = _Deliveries(checker)
    for node, times in times_by_node.items():
        for time_ms in times:
            deliveries.start(node, time_ms)
    return checker


def test_rate_allows_rate_times_span_plus_the_cluster_burst_and_not_one_start_more() -> None:
    """Rate 10/s, bucket 1, 3 members: each holds max(1, 1 // 3) = 1 token, so 3 may start at
    once, then 10 a second across the cluster (one every 300 ms on each node)."""
    steady = {node: [1_000, *range(1_000 + 100 * (i + 1), 4_000, 300)] for i, node in
              enumerate(NODES)}  # fmt: skip
    assert _limit_anomalies(_rate_run(steady)) == []
    assert _limit_anomalies(_rate_run({"n1": [1_000], "n2": [1_000], "n3": [1_000]})) == []
    four_at_once = {"n1": [1_000, 1_000], "n2": [1_000], "n3": [1_000]}
    assert _limit_anomalies(_rate_run(four_at_once)) == [Anomaly.RATE]
    one_more = {**steady, "n1": sorted([*steady["n1"], 2_050])}
    assert _limit_anomalies(_rate_run(one_more)) == [Anomaly.RATE]


def test_a_rate_violation_names_the_span_the_starts_and_the_allowance() -> None:
    checker = _rate_run({"n1": [1_000, 1_000], "n2": [1_000], "n3": [1_000]})
    (violation,) = [v for v in checker.report(100_000).violations if v.anomaly is Anomaly.RATE]
    assert "started 4 attempts in 0 ms" in violation.detail
    assert "allowed 3.02: buckets held 3 + fresh buckets 0" in violation.detail
    stats = checker.report(100_000).limits
    assert stats is not None and stats.rate_starts == 4


def test_a_member_list_change_allows_the_new_shares_fresh_buckets_and_no_more() -> None:
    """Rate 10/s, bucket 10. Three members hold 3 tokens each. n3 crashes; n1 and n2 learn
    the list of two and may each get a fresh bucket of 10 // 2 = 5: with the 3 each held
    before, 16 may start at that moment (more than the documented 2 x 5 = 10 of a steady
    two-node cluster: this is the overlap while the list changes)."""
    limits = QueueLimits(rate_per_s=10.0, bucket_size=10)

    def starts_after_the_change(count: int) -> list[Anomaly]:
        checker = _checker(limits)
        deliveries = _Deliveries(checker)
        for node in NODES:
            for _ in range(3):
                deliveries.start(node, 1_000)
        checker.process_ended(("n3", 1), 4_000)
        checker.members_known(("n1", 1), 2, 5_000)
        checker.members_known(("n2", 1), 2, 5_000)
        for index in range(count):
            deliveries.start(("n1", "n2")[index % 2], 5_000)
        return _limit_anomalies(checker)

    assert starts_after_the_change(16) == []
    assert starts_after_the_change(17) == [Anomaly.RATE]


def test_while_processes_disagree_on_the_member_list_each_earns_its_own_share() -> None:
    """A restarted n1 knows 3 members (10/3 a second) while n2 and n3 still know 2 (10/2 a
    second each): 13.3 a second in all until they learn of it, where agreeing members would
    earn 10."""
    limits = QueueLimits(rate_per_s=10.0, bucket_size=1)

    def anomalies(*, one_more: bool) -> list[Anomaly]:
        checker = _checker(limits, members=2)
        checker.process_ended(("n1", 1), 0)
        checker.members_known(("n1", 2), 3, 0)
        deliveries = _Deliveries(checker)
        # 15 starts in 952 ms: buckets 1 + 1 + 1, plus 13.33/s x 0.954 s = 15.72 allowed
        # (members agreeing on 3 would allow 3 + 9.54 = 12.54).
        for index in range(15):
            node, incarnation = (("n1", 2), ("n2", 1), ("n3", 1))[index % 3]
            deliveries.start(node, 10_000 + 68 * index, incarnation=incarnation)
        if one_more:
            deliveries.start("n3", 10_001)
        return _limit_anomalies(checker)

    assert anomalies(one_more=False) == []
    assert anomalies(one_more=True) == [Anomaly.RATE]


def test_a_process_that_knows_no_member_list_holds_no_share_of_the_rate() -> None:
    checker = _checker(RATE_10_BUCKET_1)
    checker.process_ended(("n1", 1), 500)
    checker.members_known(("n1", 2), 0, 500)  # restarted, not yet told who the members are
    _Deliveries(checker).start("n1", 1_000, incarnation=2)
    # The other two still hold a token each: the cluster-wide check passes on its own...
    assert _limit_anomalies(checker) == []
    checker = _checker(RATE_10_BUCKET_1, members=0)
    _Deliveries(checker).start("n1", 1_000)
    # ...but with nobody holding a share nothing may start.
    assert _limit_anomalies(checker) == [Anomaly.RATE]


def test_a_clock_that_runs_fast_earns_tokens_faster_by_its_drift() -> None:
    """1000/s, bucket 1, one member, 10 s: 1 + 1000 x 10.002 = 10003 allowed; a clock 500 ppm
    fast earns 5 more."""
    limits = QueueLimits(rate_per_s=1_000.0, bucket_size=1)
    times = [i * 10_000 // 10_005 for i in range(10_006)]  # 10006 starts in [0, 10000]
    for drift_ppm, found in ((0, [Anomaly.RATE]), (500, [])):
        checker = Checker(BOUNDS, LimitChecker(limits, drift_ppm))
        checker.members_known(("n1", 1), 1, 0)
        deliveries = _Deliveries(checker)
        for time_ms in times:
            deliveries.start("n1", time_ms)
        assert _limit_anomalies(checker) == found, drift_ppm


# -- concurrency ----------------------------------------------------------------------------------

CAP_2 = QueueLimits(max_concurrent=2)


def _anomalies_now(checker: Checker) -> list[Anomaly]:
    return [v.anomaly for v in checker.violations if v.anomaly is Anomaly.CONCURRENCY]


def test_each_node_may_have_its_share_of_the_cap_in_flight_until_it_hears_the_outcome() -> None:
    """Cap 2 over 3 members: max(1, 2 // 3) = 1 each, 3 in the cluster."""
    checker = _checker(CAP_2)
    deliveries = _Deliveries(checker)
    first = deliveries.start("n1", 1_000, CAPPED_QUEUE)
    deliveries.start("n2", 1_000, CAPPED_QUEUE)
    deliveries.start("n3", 1_000, CAPPED_QUEUE)
    deliveries.start("n1", 1_000, RATE_QUEUE)  # another queue: not counted
    assert _anomalies_now(checker) == []
    checker.delivery_ended(("n1", 1), first, 1_050)
    deliveries.start("n1", 1_050, CAPPED_QUEUE)
    assert _anomalies_now(checker) == []
    deliveries.start("n1", 1_060, CAPPED_QUEUE)  # its first is still in flight
    # the node is over its share, and the cluster over 3
    assert _anomalies_now(checker) == [Anomaly.CONCURRENCY, Anomaly.CONCURRENCY]
    stats = checker.report(100_000).limits
    assert stats is not None and (stats.capped_in_flight_max, stats.capped_allowed_at_max) == (4, 3)


def test_a_crash_ends_the_deliveries_of_the_process_that_started_them() -> None:
    checker = _checker(CAP_2)
    deliveries = _Deliveries(checker)
    deliveries.start("n1", 1_000, CAPPED_QUEUE)
    checker.process_ended(("n1", 1), 1_010)
    checker.members_known(("n1", 2), 3, 1_020)
    deliveries.start("n1", 1_030, CAPPED_QUEUE, incarnation=2)
    assert _anomalies_now(checker) == []


def test_a_share_held_before_a_join_still_covers_the_deliveries_started_under_it() -> None:
    """Cap 4, two members: 2 each. n1 starts 2, then learns of a third member (share 1): its 2
    still count against the share it started them under, the cluster allows 2 + 2 + 1."""
    checker = _checker(QueueLimits(max_concurrent=4), members=2)
    deliveries = _Deliveries(checker)
    deliveries.start("n1", 1_000, CAPPED_QUEUE)
    deliveries.start("n1", 1_000, CAPPED_QUEUE)
    for node in NODES:
        checker.members_known((node, 1), 3, 1_100)
    deliveries.start("n2", 1_200, CAPPED_QUEUE)
    deliveries.start("n3", 1_200, CAPPED_QUEUE)
    assert _anomalies_now(checker) == []
    deliveries.start("n1", 1_300, CAPPED_QUEUE)  # 3 in flight on n1, whose share is now 1
    assert Anomaly.CONCURRENCY in _anomalies_now(checker)


# -- duplicates by client id ----------------------------------------------------------------------


def _by_id_checker() -> Checker:
    """Task t-1 enqueued with payload k1, then the same id with another payload k1x (later
    ETA), both acknowledged: one "scheduled", the other "duplicate"."""
    checker = Checker(BOUNDS)
    checker.enqueue_sent(key="k1", task_id="t-1", queue="q", eta_ms=10_000)
    checker.enqueue_acked(key="k1", node="n1", time_ms=5, replicas=2)
    checker.enqueue_sent(key="k1x", task_id="t-1", queue="q", eta_ms=20_000)
    checker.enqueue_acked(key="k1x", node="n2", time_ms=6, replicas=None)
    return checker


def _delivery(key: str, time_ms: int, node: str) -> DeliveryRecord:
    return DeliveryRecord(
        node=node, time_ms=time_ms, order=(time_ms, 0), task_id="t-1", key=key,
        processed_status=200, queue="q",
    )  # fmt: skip


def test_two_payloads_of_one_id_are_one_task_acknowledged_once_and_owed_once() -> None:
    checker = _by_id_checker()
    report = checker.report(100_000)
    assert (report.tasks, report.acked) == (1, 1)
    assert [v.anomaly for v in report.violations] == [Anomaly.LOST]  # neither payload came

    for key in ("k1", "k1x"):  # either payload, once, is the task delivered once
        checker = _by_id_checker()
        checker.delivery_started(_delivery(key, 21_000, "n1"))
        report = checker.report(100_000)
        assert report.violations == [] and report.delivered == 1, key


def test_both_payloads_of_one_id_delivered_is_the_task_delivered_twice() -> None:
    checker = _by_id_checker()
    checker.delivery_started(_delivery("k1", 10_000, "n1"))
    checker.delivery_started(_delivery("k1x", 20_000, "n2"))
    (violation,) = checker.report(100_000).violations
    assert violation.anomaly is Anomaly.DUPLICATED
    assert "delivered 2 times" in violation.detail and "payloads k1 and k1x" in violation.detail


def test_a_repeated_enqueue_answered_duplicate_is_one_acknowledged_task() -> None:
    checker = Checker(BOUNDS)
    for node in ("n1", "n2"):  # "scheduled" by n1, then "duplicate" by n2
        checker.enqueue_sent(key="k1", task_id="t-1", queue="q", eta_ms=10_000)
        checker.enqueue_acked(key="k1", node=node, time_ms=5, replicas=None, duplicate=node == "n2")
    checker.delivery_started(_delivery("k1", 10_000, "n1"))
    report = checker.report(100_000)
    assert (report.tasks, report.acked, report.delivered) == (1, 1, 1)
    assert report.violations == []


def test_a_payload_is_early_against_the_eta_it_was_enqueued_with() -> None:
    checker = _by_id_checker()
    checker.delivery_started(_delivery("k1x", 15_000, "n1"))  # k1x asked for 20 s
    assert [v.anomaly for v in checker.violations] == [Anomaly.EARLY]


def test_a_delivery_naming_another_queue_than_its_task_is_unexpected() -> None:
    checker = _by_id_checker()
    checker.delivery_started(replace(_delivery("k1", 10_000, "n1"), queue="other"))
    assert [v.anomaly for v in checker.violations] == [Anomaly.UNEXPECTED]


# -- the seed's draw --------------------------------------------------------------------------


def test_the_seed_draws_the_limits_on_their_own_stream_and_prints_them() -> None:
    drawn = [draw_config(seed, "swarm", Shape()) for seed in range(1, 41)]
    assert {c.limits.rate_per_s is not None for c in drawn} == {True, False}
    assert {c.limits.max_concurrent is not None for c in drawn} == {True, False}
    assert {c.limits.id_reuse for c in drawn} == {True, False}
    config = drawn[0]
    assert f" {config.limits.describe()}" in config.describe()
    # Fixing the limits changes nothing else the seed draws.
    fixed = draw_config(1, "swarm", Shape(limits="none", id_reuse=False))
    assert fixed.limits == QueueLimits(bucket_size=fixed.limits.bucket_size)
    assert replace(fixed, limits=config.limits) == config
    assert draw_config(1, "swarm", Shape(limits="both")).limits.max_concurrent is not None
    always = draw_limits(1, "rate_limited", always=True)
    assert always.rate_per_s and always.max_concurrent and always.burst_tasks and always.id_reuse


def test_the_limits_flags_appear_in_the_reproduce_command() -> None:
    job = Job(seed=3, scenario="calm", shape=Shape(limits="rate", id_reuse=True))
    assert job.command() == "python -m sim --seed 3 --scenario calm --limits rate --id-reuse yes"


# -- whole runs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_rate_limited_scenario_puts_both_limits_to_the_test(seed: int) -> None:
    """The real node keeps both limits, and they bind: the tightest span comes within two
    starts of its allowance (since buckets keep their tokens across member changes, a node
    rarely has its whole share of the burst at hand), and the cap holds tasks back until a
    slot frees."""
    assert "rate_limited" in SCENARIOS
    config = draw_config(seed, "rate_limited", Shape())
    report = run(config).report
    found = {v.anomaly for v in report.violations}
    assert not found & {Anomaly.RATE, Anomaly.CONCURRENCY}, [str(v) for v in report.violations]
    stats = report.limits
    assert stats is not None and stats.rate_worst is not None
    assert stats.rate_worst.excess > -2, stats.rate_worst
    assert stats.capped_held_back > 0
    # The bursts came on top of the workload, and reused ids stayed one task each.
    assert report.tasks == config.tasks + config.late_tasks + 2 * config.limits.burst_tasks
    assert report.acked <= report.tasks


def test_an_id_enqueued_with_another_payload_is_answered_duplicate_and_delivered_once() -> None:
    """In a calm run with reused ids: racing enqueues and second payloads of an id are
    acknowledged ("duplicate") and counted as the one task they are."""
    config = draw_config(1, "calm", Shape(limits="none", id_reuse=True, tasks=120))
    world, checker, workload = build(config, Trace())
    world.run_until(config.start_ms + WARMUP_MS)
    workload.schedule()
    world.run_until(world.now_ms + config.safety_ms)
    world.heal(HEALED_LINKS)
    liveness_phase(world, checker, config)
    world.run_until(world.now_ms + checker.bounds.duplicate_window_ms)
    report = checker.report(world.now_ms)
    assert report.violations == [], [str(v) for v in report.violations]
    reused = [r for r in checker.tasks.values() if len(r.payload_etas) > 1]
    assert reused and all(r.acked_ms is not None for r in reused)
    # Each id was created once: of its acknowledged enqueues, all but one said "duplicate".
    assert len([r for r in checker.tasks.values() if r.acks > 1]) > 10
    assert all(r.acks - r.duplicate_acks <= 1 for r in checker.tasks.values())
    assert report.tasks == config.tasks + config.late_tasks and report.acked == len(
        [r for r in checker.tasks.values() if r.acks]
    )
    assert sum(len(r.successes) for r in checker.tasks.values()) == report.delivered
