"""The rules a copy follows when it asks the members before it fires (miyamoto/logic/
copy_sync.py) and when holder lists meet (miyamoto/logic/holders.py), one answer at a time."""

from __future__ import annotations

from typing import Any

from miyamoto.logic.copy_sync import Question, Verdict
from miyamoto.logic.holders import joined, merged
from miyamoto.logic.task import Task

ME, A, B, C = "me:1", "a:1", "b:1", "c:1"
CREATED_MS = 1_000


def _question(holders: tuple[tuple[str, int], ...], *, waiting: set[str]) -> Question:
    index = next(k for n, k in holders if n == ME)
    task = Task(
        id="t", queue="q", method="POST", url="http://x/", headers=(), body=b"",
        eta_ms=5_000, created_ms=CREATED_MS, holders=holders, copy_index=index,
    )  # fmt: skip
    return Question(task=task, deadline_ms=9_000, waiting=set(waiting))


def _view(state: str, holders: list[tuple[str, int]], finished_ms: int | None = None) -> Any:
    return {
        "state": state,
        "finished": None if finished_ms is None else finished_ms / 1000,
        "holders": [{"node": n, "copy": k} for n, k in holders],
    }


def test_one_succeeded_answer_decides_at_once() -> None:
    q = _question(((A, 0), (ME, 1)), waiting={A, B})
    q.take(A, _view("succeeded", [(A, 0), (ME, 1)]), ME)
    assert q.decided() and not q.must_ask_again()
    assert q.verdict(due=True, preferred=True) is Verdict.FINISH


def test_a_silent_holder_before_us_makes_us_ask_again() -> None:
    q = _question(((A, 0), (ME, 1)), waiting={A, B})
    q.take(B, None, ME)
    assert q.must_ask_again()  # A, before us, may have delivered with its notice lost
    behind = _question(((ME, 0), (A, 1)), waiting={A, B})
    behind.take(B, None, ME)
    assert not behind.must_ask_again()
    assert behind.verdict(due=True, preferred=True) is Verdict.FIRE_AND_REPAIR


def test_a_holder_delivering_or_retrying_makes_us_wait() -> None:
    for state in ("delivering", "retrying"):
        q = _question(((A, 0), (ME, 1)), waiting={A})
        q.take(A, _view(state, [(A, 0), (ME, 1)]), ME)
        assert q.verdict(due=True, preferred=True) is Verdict.WAIT_TAKEN


def test_a_waiting_copy_before_ours_goes_first() -> None:
    q = _question(((A, 0), (ME, 1)), waiting={A})
    q.take(A, _view("scheduled", [(A, 0), (ME, 1)]), ME)
    assert q.ahead == 1 and q.verdict(due=True, preferred=True) is Verdict.WAIT_AHEAD
    # The same index on both sides (two groups): the lower node id goes first.
    tie = _question(((ME, 0),), waiting={A})
    tie.take(A, _view("scheduled", [(A, 0), (ME, 1)]), ME)
    assert tie.ahead == 1  # "a:1" < "me:1"


def test_a_copy_listed_by_the_others_with_nobody_ahead_fires() -> None:
    q = _question(((ME, 0), (A, 1)), waiting={A})
    q.take(A, _view("scheduled", [(ME, 0), (A, 1)]), ME)
    assert q.verdict(due=True, preferred=True) is Verdict.FIRE
    assert q.verdict(due=False, preferred=True) is Verdict.KEEP


def test_a_copy_the_others_do_not_list_joins_them_last_in_line() -> None:
    q = _question(((ME, 0), (C, 1)), waiting={B})
    q.take(B, _view("scheduled", [(B, 1), (A, 2)]), ME)  # (b's copy 1 comes after our 0)
    assert q.verdict(due=True, preferred=True) is Verdict.JOIN
    assert q.verdict(due=True, preferred=False) is Verdict.JOIN_FOREIGN
    assert joined(q.their_holders, ME) == ((B, 1), (A, 2), (ME, 3))


def test_a_cancel_counts_unless_it_lists_us_from_our_own_enqueue() -> None:
    listing_us = _question(((A, 0), (ME, 1)), waiting={A})
    listing_us.take(A, _view("cancelled", [(A, 0), (ME, 1)], finished_ms=CREATED_MS + 5), ME)
    assert listing_us.finals == []  # no cancel is confirmed without our answer
    without_us = _question(((A, 0), (ME, 1)), waiting={B})
    without_us.take(B, _view("cancelled", [(B, 0), (C, 1)]), ME)
    assert without_us.finals == ["cancelled"]
    before_ours = _question(((A, 0), (ME, 1)), waiting={A})
    before_ours.take(A, _view("cancelled", [(A, 0), (ME, 1)], finished_ms=CREATED_MS - 5), ME)
    assert before_ours.finals == ["cancelled"]  # "me" there is our process's predecessor


def test_merged_keeps_holders_an_older_list_leaves_out_and_never_moves_us_earlier() -> None:
    ours = ((A, 0), (ME, 1), (B, 2))
    holders, index = merged(ours, ((A, 0), (ME, 1)), members={A, B, ME}, me=ME, my_index=1)
    assert (holders, index) == (((A, 0), (ME, 1), (B, 2)), 1)
    later = ((ME, 2), (A, 3))
    holders, index = merged(later, ((ME, 1), (A, 3)), members={A, ME}, me=ME, my_index=2)
    assert (holders, index) == (((ME, 2), (A, 3)), 2)
    # Another copy already has the index their list gives us: take the next free one.
    holders, index = merged(ours, ((A, 0), (ME, 2)), members={A, B, ME}, me=ME, my_index=1)
    assert index == 3 and (ME, 3) in holders and (B, 2) in holders
