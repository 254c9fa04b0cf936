"""The driver's table: spread evenly or by weight, stable, and a failed host's
strategies spread over the others."""

from __future__ import annotations

import pytest

from strategy_manager.scaleout.assignment import Assignment


def ids(n: int) -> list[str]:
    return [f"u:S{i:03d}:k" for i in range(n)]


def test_equal_hosts_get_equal_shares_and_a_weight_2_host_twice_as_many():
    even = Assignment()
    for host in "abc":
        even.admit(host)
    even.sync(ids(30))
    assert even.counts() == {"a": 10, "b": 10, "c": 10}

    weighted = Assignment()
    weighted.admit("a", 1)
    weighted.admit("b", 2)
    weighted.sync(ids(30))
    assert weighted.counts() == {"a": 10, "b": 20}


def test_a_failed_hosts_strategies_go_to_the_others_evenly_and_nothing_else_moves():
    table = Assignment()
    for host in "abc":
        table.admit(host)
    table.sync(ids(30))
    table.take_changed()
    before = dict(table.where)
    moved = table.evacuate("b")
    assert sorted(moved) == sorted(s for s, h in before.items() if h == "b")
    assert table.counts() == {"a": 15, "c": 15}
    assert all(table.where[s] == h for s, h in before.items() if h != "b")  # the others stay put
    assert table.take_changed() == {"a", "b", "c"}  # b is told it has nothing now
    assert table.of("b") == frozenset()


def test_new_strategies_fill_the_emptiest_host_and_a_joining_host_takes_new_ones_only():
    table = Assignment()
    table.admit("a")
    table.sync(ids(10))
    table.admit("b")  # a healthy host's strategies are not moved to it
    assert table.counts() == {"a": 10, "b": 0}
    table.sync(ids(16))
    assert table.counts() == {"a": 10, "b": 6}


def test_removed_strategies_are_dropped_and_their_host_told():
    table = Assignment()
    table.admit("a")
    table.admit("b")
    table.sync(ids(4))
    table.take_changed()
    gone = ids(4)[0]
    host = table.where[gone]
    table.sync(ids(4)[1:])
    assert gone not in table.where and gone not in table.of(host)
    assert table.take_changed() == {host}


def test_with_no_host_strategies_wait_and_are_placed_when_one_is_admitted():
    table = Assignment()
    table.sync(ids(3))
    assert table.waiting == set(ids(3)) and table.where == {}
    table.admit("a")
    assert table.of("a") == frozenset(ids(3)) and not table.waiting
    table.evacuate("a")
    assert table.waiting == set(ids(3))


def test_restore_puts_back_a_running_assignment_without_moving_what_is_placed():
    table = Assignment()
    table.admit("a")
    table.admit("b")
    table.restore("a", ids(3))
    table.restore("b", [ids(3)[0], "u:X:k"])  # ids(3)[0] is a's already
    assert table.of("a") == frozenset(ids(3))
    assert table.of("b") == frozenset({"u:X:k"})
    assert "b" in table.take_changed()  # b must be told it lost ids(3)[0]


def test_a_weight_must_be_positive():
    with pytest.raises(ValueError, match="weight must be positive"):
        Assignment().admit("a", 0)
