from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.ring import holders_for, placement

MEMBERS = ["10.0.0.1:8088", "10.0.0.2:8088", "10.0.0.3:8088"]


def test_first_copies_spread_evenly_over_three_members() -> None:
    firsts = Counter(holders_for(f"task-{i}", MEMBERS, 2)[0] for i in range(3000))
    assert set(firsts) == set(MEMBERS)
    assert max(firsts.values()) < 0.37 * 3000


def test_holders_are_distinct_and_capped_by_the_member_count() -> None:
    assert len(set(holders_for("x", MEMBERS, 2))) == 2
    assert holders_for("x", MEMBERS[:1], 3) == (MEMBERS[0],)


@given(st.text(max_size=40), st.permutations(MEMBERS))
def test_order_does_not_depend_on_member_order(key: str, members: list[str]) -> None:
    assert placement(key, members) == placement(key, MEMBERS)


def test_removing_a_member_moves_only_the_keys_it_led() -> None:
    keys = [f"k{i}" for i in range(500)]
    before = {k: placement(k, MEMBERS)[0] for k in keys}
    after = {k: placement(k, MEMBERS[:2])[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == MEMBERS[2] for k in moved)
