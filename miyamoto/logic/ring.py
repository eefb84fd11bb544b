"""Where a task's copies live: rendezvous (highest-random-weight) hashing over the members.

Every node computes the same order for a key from the same member list, with no coordination.
Each member is equally likely to be first for a random key, so first copies spread evenly, and
when a member leaves only the keys it held move. The hash is blake2b, not `hash()`, so the order
does not change with PYTHONHASHSEED or between processes.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b


def _weight(key: bytes, member: str) -> int:
    return int.from_bytes(blake2b(key + b"\0" + member.encode(), digest_size=8).digest(), "big")


def placement(key: str, members: Iterable[str]) -> list[str]:
    """All members in the order they are preferred for `key` (copy 0 first)."""
    encoded = key.encode()
    return sorted(members, key=lambda member: (-_weight(encoded, member), member))


def holders_for(key: str, members: Iterable[str], replicas: int) -> tuple[str, ...]:
    """The first `replicas` members for `key` (fewer when there are fewer members)."""
    assert replicas >= 1, replicas
    return tuple(placement(key, members)[:replicas])
