"""Election and membership across several nodes on the in-memory network (membership_network.py).

Every step of every scenario is also checked for safety by the network itself: at most one
leader per term, epochs that never go back, one member list per epoch.
"""

from __future__ import annotations

import itertools

import pytest

from miyamoto.logic.membership import ClusterTiming, Role

from .membership_network import FAST, Network, node_ids

DEFAULTS = ClusterTiming()


@pytest.mark.parametrize("count", [1, 3, 5])
def test_nodes_joining_through_the_founder_form_one_cluster_with_exactly_one_leader(
    count: int,
) -> None:
    net = Network(seed=count)
    ids = net.start_cluster(count)
    net.run_for(5_000)  # and it stays that way
    assert net.converged(ids)
    assert net.leaders() == [ids[0]]
    assert {net.nodes[n].view().term for n in ids} == {1}


def test_nodes_started_at_once_with_a_chain_of_seeds_all_get_in() -> None:
    net = Network(seed=7)
    ids = node_ids(4)
    net.start(ids[0], ids[0])
    for previous, node_id in itertools.pairwise(ids):
        net.start(node_id, previous)  # each joins through one that is still joining itself
    assert net.run_until(lambda: net.converged(ids), 10_000), net.describe()


def test_join_through_any_member_works() -> None:
    net = Network(seed=3)
    ids = net.start_cluster(3)
    newcomers = node_ids(5)[3:]
    net.start(newcomers[0], ids[2])  # through a follower
    assert net.run_until(lambda: net.converged([*ids, newcomers[0]]), 5_000), net.describe()
    net.start(newcomers[1], newcomers[0])  # through the newest member
    everyone = [*ids, *newcomers]
    assert net.run_until(lambda: net.converged(everyone), 5_000), net.describe()
    assert net.nodes[ids[0]].view().epoch == 5  # one epoch per member


@pytest.mark.parametrize("seed", range(8))
def test_when_the_leader_dies_a_majority_elects_a_new_one_within_a_few_seconds(
    seed: int,
) -> None:
    net = Network(seed=seed, timing=DEFAULTS)
    ids = net.start_cluster(5)
    net.run_for(seed * 37)  # die at some point between two heartbeats
    old_leader = net.leaders()[0]
    died_ms = net.now_ms
    net.crash(old_leader)
    assert net.run_until(lambda: len(net.leaders()) == 1, 10_000), net.describe()
    took_ms = net.now_ms - died_ms
    # An election timeout (1-2 s) after the last heartbeat, plus a pre-vote and a vote round.
    earliest_ms = DEFAULTS.election_timeout_min_ms - DEFAULTS.heartbeat_interval_ms
    assert earliest_ms <= took_ms <= 4_000, took_ms
    new_leader = net.leaders()[0]
    assert net.nodes[new_leader].view().term >= 2
    # Then the dead leader is removed after member_timeout, and the rest agree on it.
    rest = [n for n in ids if n != old_leader]
    assert net.run_until(lambda: net.converged(rest), 10_000), net.describe()
    assert net.now_ms - died_ms <= 4_000 + DEFAULTS.member_timeout_ms + 1_000


def test_minority_partition_elects_no_leader_and_changes_no_membership() -> None:
    net = Network(seed=11)
    ids = net.start_cluster(5)
    leader = ids[0]
    minority = [leader, ids[1]]
    majority = ids[2:]
    before = {n: net.nodes[n].view() for n in minority}
    net.partition(minority, majority)
    net.run_for(10 * FAST.member_timeout_ms)
    for node_id in minority:
        v = net.nodes[node_id].view()
        assert v.role is not Role.LEADER and v.leader is None and not v.in_majority
        assert (v.epoch, v.latest_epoch, v.member_ids) == (
            before[node_id].epoch,
            before[node_id].latest_epoch,
            tuple(sorted(ids)),
        )
        assert v.term == before[node_id].term  # pre-vote: no term inflation either
    # The majority side elected a leader and removed the two it cannot reach.
    assert net.converged(majority), net.describe()


def test_healed_partition_converges_on_one_leader_and_one_membership() -> None:
    net = Network(seed=12)
    ids = net.start_cluster(5)
    net.partition(ids[:2], ids[2:])
    net.run_for(3 * FAST.member_timeout_ms)
    assert net.converged(ids[2:])
    net.heal()
    assert net.run_until(lambda: net.converged(ids), 5_000), net.describe()


def test_short_partition_heals_without_any_membership_change() -> None:
    net = Network(seed=13)
    ids = net.start_cluster(5)
    epoch = net.nodes[ids[0]].view().epoch
    net.partition([ids[4]], ids[:4])
    net.run_for(FAST.member_timeout_ms // 2)
    net.heal()
    net.run_for(2_000)
    assert net.converged(ids)
    assert net.nodes[ids[0]].view().epoch == epoch
    assert net.leaders() == [ids[0]]  # the returning node disturbed nobody


def test_removed_member_rejoins_under_a_new_epoch() -> None:
    net = Network(seed=14)
    ids = net.start_cluster(3)
    cut_off = ids[2]
    net.partition([cut_off], ids[:2])
    assert net.run_until(lambda: net.converged(ids[:2]), 10_000), net.describe()
    removed_epoch = net.nodes[ids[0]].view().epoch
    net.heal()
    assert net.run_until(lambda: net.converged(ids), 5_000), net.describe()
    assert net.nodes[cut_off].view().epoch == removed_epoch + 1


def test_restarted_follower_rejoins_as_a_new_incarnation() -> None:
    net = Network(seed=15)
    ids = net.start_cluster(3)
    follower = ids[1]
    old_incarnation = net.nodes[follower].incarnation
    epoch = net.nodes[ids[0]].view().epoch
    net.crash(follower)
    restarted = net.start(follower, ids[0])  # at once: the old one is still listed
    assert net.run_until(lambda: net.converged(ids), 5_000), net.describe()
    (entry,) = [m for m in net.nodes[ids[0]].view().members if m.id == follower]
    assert entry.incarnation == restarted.incarnation != old_incarnation
    assert net.nodes[ids[0]].view().epoch == epoch + 2  # out, then in again


def test_restarted_leader_rejoins_after_a_new_leader_takes_over() -> None:
    net = Network(seed=16)
    ids = net.start_cluster(3)
    net.crash(ids[0])
    net.start(ids[0], ids[1])
    assert net.run_until(lambda: net.converged(ids), 10_000), net.describe()
    assert net.leaders() != [ids[0]]


def test_restarted_founder_with_itself_as_seed_rejoins_its_old_cluster() -> None:
    net = Network(seed=17)
    ids = net.start_cluster(3)
    net.run_for(500)
    net.crash(ids[0])
    net.start(ids[0], ids[0])  # same command line as the first time: founds a cluster of one
    assert net.run_until(lambda: net.converged(ids), 10_000), net.describe()
    assert net.nodes[ids[0]].view().stats.solo_clusters_abandoned == 1


@pytest.mark.parametrize("seed", range(3))
def test_cluster_forms_and_recovers_despite_lossy_links(seed: int) -> None:
    net = Network(seed=seed, loss=0.2)
    ids = net.start_cluster(5)
    net.crash(net.leaders()[0])
    rest = [n for n in ids if n not in net.nodes] or ids
    alive = [n for n in ids if n in net.nodes]
    assert rest
    assert net.run_until(lambda: net.converged(alive), 20_000), net.describe()
