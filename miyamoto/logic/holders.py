"""Holder lists: which node holds copy k of a task (copy k is due k replica delays after the
ETA). Pure rules for merging the lists that travel between holders."""

from __future__ import annotations

from .replica_messages import Holders


def merged(
    ours: Holders, theirs: Holders, *, members: set[str], me: str, my_index: int
) -> tuple[Holders, int]:
    """The list to adopt when a holder sends `theirs` while we hold `ours` (our copy at
    `my_index`), and our copy's index in it."""
    # Their list may be older than ours (a repair made from a stale member list, or a
    # reconcile of an enqueue's answers that took seconds): never drop a holder we still count
    # as a member, or its copy would no longer hear our claims and finished notices.
    named = {n for n, _ in theirs}
    holders = theirs + tuple((n, k) for n, k in ours if n not in named and n in members)
    index = next((k for n, k in holders if n == me), my_index)
    taken = {k for n, k in (*ours, *holders) if n != me}
    if index != my_index and index in taken:
        # Two repairs made from different lists numbered two copies alike; the same index is
        # the same due time, and two copies due together both fire before either claim
        # arrives. Take the next free index instead.
        index = max(taken | {index}) + 1
    # Our copy never moves earlier, so our index must not either: the next repair numbers new
    # copies after the highest index it sees, and a copy given our slot would fire with ours.
    index = max(index, my_index)
    return tuple((n, index if n == me else k) for n, k in holders), index


def joined(others: Holders, me: str) -> Holders:
    """`others`' holder list with our copy added after them."""
    index = max(k for _, k in others) + 1
    return (*(h for h in others if h[0] != me), (me, index))
