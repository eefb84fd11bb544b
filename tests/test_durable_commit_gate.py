"""Persist before send: the gate between a durable node and its peers (commit_gate.py)."""

from __future__ import annotations

import dataclasses
import random
import threading
from pathlib import Path

import pytest
import trio

from miyamoto.io.durable.commit_gate import CommitGate
from miyamoto.io.durable.store import FsyncMode, Store, StoreUnavailable, open_store
from miyamoto.logic.membership import ClusterTiming, Membership
from miyamoto.logic.messages import Envelope, HeartbeatAck
from miyamoto.logic.persistence import MembershipHardState

NODE = "127.0.0.1:8088"
PEER = "127.0.0.1:8089"
WAIT_S = 10


class Machine:
    """Stands in for the membership: a hard state the test changes by hand."""

    def __init__(self) -> None:
        membership = Membership(
            self_id=NODE, seed_id=NODE, config=ClusterTiming(), rng=random.Random(1), now_ms=0
        )
        self.state = membership.hard_state()

    def hard_state(self) -> MembershipHardState:
        return self.state

    def new_term(self) -> None:
        self.state = dataclasses.replace(self.state, term=self.state.term + 1, voted_for=None)


class GatedStore:
    """A real store whose commits wait for the test to open the gate (and can fail)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.committed: list[int] = []
        """The term of each commit, in order."""
        self.fail_with: str | None = None

    def commit_hard_state(self, state: MembershipHardState) -> None:
        self.entered.set()
        assert self.open.wait(WAIT_S)
        if self.fail_with is not None:
            raise StoreUnavailable(self.fail_with)
        self.store.commit_hard_state(state)
        self.committed.append(state.term)


def message(number: int) -> Envelope:
    return Envelope(
        sender=NODE,
        incarnation=1,
        cluster_id=1,
        term=1,
        epoch=number,
        message=HeartbeatAck(epoch_term=1, epoch=number),
    )


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Machine, GatedStore, list[int], CommitGate]:
    machine = Machine()
    store = GatedStore(open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS))
    sent: list[int] = []
    gate = CommitGate(
        store,  # type: ignore[arg-type]
        machine.hard_state,
        lambda to, envelope: sent.append(envelope.epoch),
        committed=machine.state,
    )
    return machine, store, sent, gate


async def until(condition: object) -> None:
    assert callable(condition)
    with trio.fail_after(WAIT_S):
        while not condition():
            await trio.sleep(0.005)


async def test_messages_leave_at_once_while_the_state_does_not_change(parts: tuple) -> None:
    _machine, store, sent, gate = parts
    gate.send(PEER, message(1))
    gate.send(PEER, message(2))
    assert sent == [1, 2]
    assert store.committed == []


async def test_a_message_after_a_change_waits_for_its_commit_and_order_is_kept(
    parts: tuple,
) -> None:
    machine, store, sent, gate = parts
    async with trio.open_nursery() as nursery:
        store.open.clear()
        await nursery.start(gate.run)
        machine.new_term()  # e.g. the node voted in a new term ...
        gate.send(PEER, message(1))  # ... and this is the vote
        gate.send(PEER, message(2))  # a later message, no change of its own
        await trio.sleep(0.05)
        assert sent == [] and gate.messages_held == 2  # nothing leaves before the commit
        store.open.set()
        await until(lambda: sent == [1, 2])
        assert store.committed == [2]
        assert store.store.load_hard_state() == machine.state
        nursery.cancel_scope.cancel()


async def test_changes_during_a_commit_share_the_next_one(parts: tuple) -> None:
    machine, store, sent, gate = parts
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        store.open.clear()
        machine.new_term()
        gate.send(PEER, message(1))
        await until(store.entered.is_set)  # the first commit runs, waiting on the gate
        for number in (2, 3, 4):
            machine.new_term()
            gate.send(PEER, message(number))
        store.open.set()
        await until(lambda: sent == [1, 2, 3, 4])
        # Three changes arrived while the first commit ran: one more commit wrote them all.
        assert store.committed == [2, 5]
        nursery.cancel_scope.cancel()


async def test_a_failed_commit_holds_the_messages_until_a_commit_succeeds(
    parts: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    machine, store, sent, gate = parts
    store.fail_with = "the disk holding x is full"
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        machine.new_term()
        gate.send(PEER, message(1))
        await until(lambda: gate.last_error is not None)
        assert sent == [] and gate.messages_held == 1
        assert "the disk holding x is full" in caplog.text
        store.fail_with = None  # space freed: the retry commits and the vote leaves
        await until(lambda: sent == [1])
        assert gate.last_error is None
        nursery.cancel_scope.cancel()


async def test_a_change_without_messages_is_committed_soon_anyway(parts: tuple) -> None:
    machine, store, _sent, gate = parts
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        machine.new_term()
        await until(lambda: store.committed == [2])
        nursery.cancel_scope.cancel()
