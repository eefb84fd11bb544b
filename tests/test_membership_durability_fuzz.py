"""Random faults against 3-5 membership machines that keep their hard state on a disk.

The disk follows the shell's rule (persist before send, commit_gate.py): whatever state a node
had when it last sent a message is on its disk; what changed since may be lost in a crash. A
crashed node restarts from its disk. The network checks its safety rules after every step (one
leader per term across restarts, epochs that never go back, one member list per epoch), and
with disks the bar for liveness moves: any crash is allowed, a majority or the whole cluster
included, and after the faults heal every seed must converge.
"""

from __future__ import annotations

import random

import pytest

from miyamoto.logic.membership import Membership
from miyamoto.logic.messages import Outgoing
from miyamoto.logic.persistence import MembershipHardState, decode_hard_state, encode_hard_state

from .membership_network import Network


class DiskNetwork(Network):
    def __init__(self, *, seed: int) -> None:
        super().__init__(seed=seed)
        self.disks: dict[str, MembershipHardState] = {}
        self.first_seed: dict[str, str] = {}

    def start(self, node_id: str, seed_id: str) -> Membership:
        machine = super().start(node_id, seed_id)
        self.disks[node_id] = machine.hard_state()  # committed before it serves
        self.first_seed.setdefault(node_id, seed_id)
        return machine

    def send(self, sender: str, outgoing: list[Outgoing]) -> None:
        if outgoing:
            self.disks[sender] = self.nodes[sender].hard_state()
        super().send(sender, outgoing)

    def restart_from_disk(self, node_id: str) -> None:
        saved = decode_hard_state(encode_hard_state(self.disks[node_id]))
        restarts = self.restarts[node_id] = self.restarts[node_id] + 1
        self.nodes[node_id] = Membership.restored(
            saved,
            seed_id=self.first_seed[node_id],  # its first command, as an operator would
            config=self.timing,
            rng=random.Random(f"{self.seed}:{node_id}:{restarts}"),
            now_ms=self.now_ms,
        )
        self.check()


def faults_then_heal(seed: int) -> tuple[bool, DiskNetwork]:
    rng = random.Random(seed)
    net = DiskNetwork(seed=seed)
    ids = net.start_cluster(rng.choice([3, 4, 5]))
    dead: list[str] = []
    for _ in range(30):
        roll = rng.random()
        if roll < 0.2 and net.nodes:
            victim = rng.choice(sorted(net.nodes))  # any node: a majority may go down
            net.crash(victim)
            dead.append(victim)
        elif roll < 0.3 and len(net.nodes) == len(ids):
            for node_id in sorted(net.nodes):  # the whole cluster at once
                net.crash(node_id)
                dead.append(node_id)
        elif roll < 0.45 and dead:
            net.restart_from_disk(dead.pop(rng.randrange(len(dead))))
        elif roll < 0.55:
            order = rng.sample(ids, len(ids))
            split = rng.randint(1, len(ids) - 1)
            net.partition(order[:split], order[split:])
        elif roll < 0.65:
            net.heal()
        elif roll < 0.75:
            net.loss = rng.choice([0.0, 0.1, 0.3])
        net.run_for(rng.randint(10, 1_500))
    net.heal()
    net.loss = 0.0
    for node_id in dead:
        net.restart_from_disk(node_id)
    return net.run_until(lambda: net.converged(ids), 30_000), net


@pytest.mark.parametrize("seed", range(24))
def test_after_any_crashes_and_restarts_from_disk_the_cluster_converges(seed: int) -> None:
    ok, net = faults_then_heal(seed)
    assert ok, net.describe()
