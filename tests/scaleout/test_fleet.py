"""The driver's decisions, without Ray: when a host fails, where its strategies go,
and when the receivers are told to claim at once."""

from __future__ import annotations

from datetime import UTC, datetime

from strategy_manager.core.store import OwnerRecord
from strategy_manager.scaleout.fleet import HOST_START_SECONDS, Fleet, HostView

LEASE = 3.0
T0 = 1_000_000.0


def beat(token: str, at: float, stopped: bool = False) -> OwnerRecord:
    return OwnerRecord(
        owner=f"box:{int(at) % 97}:{token}",
        host="box",
        pid=int(at) % 97,
        heartbeat=datetime.fromtimestamp(at, UTC),
        stopped=stopped,
    )


def fleet_of(*names: str, strategies: int = 30) -> Fleet:
    fleet = Fleet(LEASE)
    for name in names:
        fleet.add(HostView(name, node=f"node-{name}", token=f"t{name}", since=T0))
    fleet.strategies(f"u:S{i:02d}:k" for i in range(strategies))
    fleet.heard([beat(f"t{n}", T0) for n in names], T0)
    fleet.step(T0)
    return fleet


def test_a_host_silent_for_a_lease_fails_and_its_strategies_go_to_the_others():
    fleet = fleet_of("a", "b", "c")
    had = fleet.assignment.of("b")
    # a and c renew; b has not been heard from since T0.
    fleet.heard([beat("ta", T0 + 2.9), beat("tc", T0 + 2.9), beat("tb", T0)], T0 + 2.9)
    pushes, events = fleet.step(T0 + 2.9)
    assert pushes == [] and events == []  # not silent for a whole lease yet
    fleet.heard([beat("ta", T0 + 3.1), beat("tc", T0 + 3.1), beat("tb", T0)], T0 + 3.1)
    pushes, events = fleet.step(T0 + 3.1)
    assert [(e.kind, e.host) for e in events] == [("host-lost", "b")]
    assert "silent for 3s; 10 strategies reassigned (5 to a, 5 to c)" in events[0].detail
    by_host = {p.name: p for p in pushes}
    assert by_host["b"].ids == frozenset()  # told, in case it wakes up
    assert had <= by_host["a"].ids | by_host["c"].ids
    assert not any(p.claim_now for p in pushes)  # its leases have expired: the claims succeed now


def test_a_driver_that_cannot_read_the_heartbeats_fails_no_host_for_it():
    fleet = fleet_of("a", "b")
    pushes, events = fleet.step(T0 + 60)  # no read since T0
    assert pushes == [] and events == []


def test_a_ray_death_notice_reassigns_at_once_and_the_receivers_claim_when_the_host_falls_silent():
    fleet = fleet_of("a", "b", "c")
    had = fleet.assignment.of("b")
    fleet.ray_lost("b", "its node is dead")
    pushes, events = fleet.step(T0 + 0.5)
    assert [e.kind for e in events] == ["ray-dead", "host-lost"]
    assert "Ray reports it dead" in events[1].detail
    assert {p.name for p in pushes} == {"a", "c"}  # b cannot be reached any more
    assert had <= pushes[0].ids | pushes[1].ids
    assert not any(p.claim_now for p in pushes)
    # b still renews (a hung raylet, a live process): its leases stay valid, the receivers wait.
    fleet.heard([beat("ta", T0 + 4), beat("tb", T0 + 4), beat("tc", T0 + 4)], T0 + 4)
    assert fleet.step(T0 + 4) == ([], [])
    assert fleet.next_due() == T0 + 4 + LEASE
    # Then it falls silent: its leases have expired, and the receivers try them at once.
    fleet.heard([beat("ta", T0 + 7.1), beat("tc", T0 + 7.1)], T0 + 7.1)
    pushes, _ = fleet.step(T0 + 7.1)
    assert {(p.name, p.claim_now) for p in pushes} == {("a", True), ("c", True)}
    assert "b" not in fleet.hosts  # forgotten: nothing more to learn from it


def test_a_frozen_host_heard_from_again_takes_new_strategies_not_its_old_ones():
    fleet = fleet_of("a", "b")
    had = fleet.assignment.of("b")
    fleet.heard([beat("ta", T0 + 5)], T0 + 5)
    fleet.step(T0 + 5)
    assert fleet.assignment.of("b") == frozenset()
    fleet.heard([beat("ta", T0 + 10), beat("tb", T0 + 10)], T0 + 10)  # SIGCONT
    _, events = fleet.step(T0 + 10)
    assert [e.kind for e in events] == ["host-back"]
    assert fleet.assignment.of("b") == frozenset() and had <= fleet.assignment.of("a")
    fleet.strategies([*sorted(fleet.assignment.where), "u:NEW:k"])
    pushes, _ = fleet.step(T0 + 10.1)
    assert [(p.name, p.ids) for p in pushes] == [("b", frozenset({"u:NEW:k"}))]


def test_a_host_that_stopped_cleanly_fails_at_once_and_nobody_waits_for_its_leases():
    fleet = fleet_of("a", "b")
    fleet.heard([beat("ta", T0 + 1), beat("tb", T0 + 1, stopped=True)], T0 + 1)
    _, events = fleet.step(T0 + 1)
    assert "stopped; 15 strategies reassigned" in events[0].detail
    assert fleet.assignment.counts() == {"a": 30}
    assert fleet.step(T0 + 30)[0] == []  # no claim_now later: its leases were released


def test_a_host_that_never_writes_a_heartbeat_fails_after_the_start_allowance():
    fleet = Fleet(LEASE)
    fleet.add(HostView("a", node="n", token="ta", since=T0))
    fleet.add(HostView("b", node="n2", token="tb", since=T0))
    fleet.strategies(["u:A:k", "u:B:k"])
    fleet.heard([beat("ta", T0 + HOST_START_SECONDS)], T0 + HOST_START_SECONDS - 1)
    assert [e.kind for e in fleet.step(T0 + HOST_START_SECONDS - 1)[1]] == ["host-up", "host-up"]
    fleet.heard([beat("ta", T0 + HOST_START_SECONDS + 1)], T0 + HOST_START_SECONDS + 1)
    _, events = fleet.step(T0 + HOST_START_SECONDS + 1)
    assert [(e.kind, e.host) for e in events] == [("host-lost", "b")]
    assert fleet.assignment.counts() == {"a": 2}


def test_pushes_carry_growing_versions():
    fleet = fleet_of("a", "b", strategies=2)
    first = fleet.hosts["a"].version
    fleet.strategies(["u:S00:k", "u:S01:k", "u:X:k", "u:Y:k"])
    pushes, _ = fleet.step(T0 + 0.1)
    assert all(p.version == first + 1 for p in pushes) and {p.name for p in pushes} == {"a", "b"}
