"""Persist before acting: the gate holds each turn of a durable node until its changes are on
disk (commit_gate.py)."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from miyamoto.io.durable.commit_gate import CommitGate
from miyamoto.io.durable.store import Commit, FsyncMode, Store, StoreUnavailable, open_store
from miyamoto.logic.local_tasks import TaskChanges
from miyamoto.logic.membership import ClusterTiming, Membership
from miyamoto.logic.persistence import MembershipHardState
from miyamoto.logic.task import Task

NODE = "127.0.0.1:8088"
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
        self.committed: list[int | None] = []
        """The term of each commit (None: it had no membership change), in order."""
        self.fail_with: str | None = None

    def commit(self, commit: Commit) -> None:
        self.entered.set()
        assert self.open.wait(WAIT_S)
        if self.fail_with is not None:
            raise StoreUnavailable(self.fail_with)
        self.store.commit(commit)
        self.committed.append(None if commit.hard_state is None else commit.hard_state.term)


class Tasks:
    """Stands in for the node's copies: the test adds and drops them by hand."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], Task] = {}
        self.changed: set[tuple[str, str]] = set()

    def add(self, task_id: str) -> None:
        task = Task(id=task_id, queue="q", method="POST", url="http://127.0.0.1:9/",
                    headers=(), body=b"x", eta_ms=1, created_ms=1)  # fmt: skip
        self.held["q", task_id] = task
        self.changed.add(("q", task_id))

    def drop(self, task_id: str) -> None:
        del self.held["q", task_id]
        self.changed.add(("q", task_id))

    def take_changes(self) -> TaskChanges | None:
        if not self.changed:
            return None
        changes, self.changed = TaskChanges(keys=self.changed, paused={}), set()
        return changes

    def find(self, queue: str, task_id: str) -> Task | None:
        return self.held.get((queue, task_id))


class Turns:
    """Records the turns the gate carried out: (number, store error, whether it changed)."""

    def __init__(self) -> None:
        self.done: list[tuple[int, str | None, bool]] = []

    def turn(self, number: int) -> Callable[[str | None, bool], None]:
        return lambda error, changed: self.done.append((number, error, changed))

    def numbers(self) -> list[int]:
        return [number for number, _, _ in self.done]


Parts = tuple[Machine, GatedStore, Turns, CommitGate, Tasks]


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    machine = Machine()
    store = GatedStore(open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS))
    tasks = Tasks()
    gate = CommitGate(
        store,  # type: ignore[arg-type]
        machine.hard_state,
        committed=machine.state,
        take_changes=tasks.take_changes,
        find_task=tasks.find,
    )
    return machine, store, Turns(), gate, tasks


async def until(condition: object) -> None:
    assert callable(condition)
    with trio.fail_after(WAIT_S):
        while not condition():
            await trio.sleep(0.005)


async def test_turns_are_carried_out_at_once_while_nothing_changes(parts: Parts) -> None:
    _machine, store, turns, gate, _tasks = parts
    gate.after_turn(turns.turn(1))
    gate.after_turn(turns.turn(2))
    assert turns.done == [(1, None, False), (2, None, False)]
    assert store.committed == []


async def test_a_turn_after_a_change_waits_for_its_commit_and_order_is_kept(
    parts: Parts,
) -> None:
    machine, store, turns, gate, _tasks = parts
    async with trio.open_nursery() as nursery:
        store.open.clear()
        await nursery.start(gate.run)
        machine.new_term()  # e.g. the node voted in a new term ...
        gate.after_turn(turns.turn(1))  # ... and this turn sends the vote
        gate.after_turn(turns.turn(2))  # a later turn, no change of its own
        await trio.sleep(0.05)
        assert turns.done == [] and gate.turns_held == 2  # nothing leaves before the commit
        store.open.set()
        await until(lambda: turns.numbers() == [1, 2])
        assert store.committed == [2]
        assert store.store.load_hard_state() == machine.state
        nursery.cancel_scope.cancel()


async def test_changes_during_a_commit_share_the_next_one(parts: Parts) -> None:
    machine, store, turns, gate, tasks = parts
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        store.open.clear()
        machine.new_term()
        gate.after_turn(turns.turn(1))
        await until(store.entered.is_set)  # the first commit runs, waiting on the gate
        for number in (2, 3, 4):
            tasks.add(f"t{number}")
            gate.after_turn(turns.turn(number))
        store.open.set()
        await until(lambda: turns.numbers() == [1, 2, 3, 4])
        # Three turns changed copies while the first commit ran: one more commit wrote them all.
        assert store.committed == [2, None]
        assert sorted(t.id for t in store.store.load_tasks()) == ["t2", "t3", "t4"]
        nursery.cancel_scope.cancel()


async def test_a_dropped_copy_is_deleted_from_the_store(parts: Parts) -> None:
    _machine, store, turns, gate, tasks = parts
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        tasks.add("a")
        tasks.add("b")
        gate.after_turn(turns.turn(1))
        await until(lambda: turns.numbers() == [1])
        tasks.drop("a")
        gate.after_turn(turns.turn(2))
        await until(lambda: turns.numbers() == [1, 2])
        assert [t.id for t in store.store.load_tasks()] == ["b"]
        nursery.cancel_scope.cancel()


async def test_a_failed_commit_fails_its_turns_and_what_it_missed_is_written_later(
    parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    _machine, store, turns, gate, tasks = parts
    store.fail_with = "the disk holding x is full"
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run)
        tasks.add("a")
        gate.after_turn(turns.turn(1))
        await until(lambda: turns.done != [])
        # The turn is carried out as failed: the runtime answers it 507, sends no message.
        assert turns.done == [(1, "the disk holding x is full", True)]
        assert "the disk holding x is full" in caplog.text
        gate.after_turn(turns.turn(2))  # a read meanwhile: served from memory at once
        assert turns.done[-1] == (2, None, False)
        store.fail_with = None  # space freed: the retry writes the copy the failure missed
        await until(lambda: gate.last_error is None)
        assert [t.id for t in store.store.load_tasks()] == ["a"]
        nursery.cancel_scope.cancel()
