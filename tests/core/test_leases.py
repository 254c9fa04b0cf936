"""The lease keeper: claims, renewals, heartbeats, and who counts as gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.leases import LeaseKeeper, dead_local_owners, this_process
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import OwnerRecord, open_store
from tests.conftest import wait_for


def test_claim_now_tries_a_lease_held_elsewhere_at_once_rather_than_at_the_next_retry(tmp_path):
    # Retries every lease/3 = 100 s: only claim_now can make the keeper try again in this test.
    settings = Settings(data_dir=str(tmp_path), lease_seconds=300, lease_renew_seconds=1)
    store = open_store(settings)
    now = SystemClock().now()
    assert store.claim(["u:A:k"], "other:1:x", now, 300)
    changes = []
    keeper = LeaseKeeper(store, settings, changes.append)
    keeper.start()
    try:
        keeper.want(["u:A:k"])
        wait_for(lambda: any("u:A:k" in c.elsewhere for c in changes), 10, "the first claim, refused")
        store.release(["u:A:k"], "other:1:x")
        keeper.claim_now()
        wait_for(lambda: "u:A:k" in keeper.held(), 10, "the claim made at once")
        assert keeper.held()["u:A:k"].epoch == 2
    finally:
        keeper.stop()


def test_a_lease_refused_because_its_holder_went_quiet_is_claimed_when_it_expires(tmp_path):
    # Rounds every lease/3 = 100 s, and nobody calls claim_now: only the refused lease's
    # own expiry, read from the store, can bring the keeper back within this test.
    settings = Settings(data_dir=str(tmp_path), lease_seconds=300, lease_renew_seconds=1)
    store = open_store(settings)
    assert store.claim(["u:A:k"], "other:1:x", SystemClock().now(), 1.0)  # then never renewed
    changes = []
    keeper = LeaseKeeper(store, settings, changes.append)
    keeper.start()
    try:
        keeper.want(["u:A:k"])
        wait_for(lambda: "u:A:k" in keeper.held(), 30, "the lease claimed once it expired")
    finally:
        keeper.stop()
    assert any("u:A:k" in c.elsewhere for c in changes), "the first claim should have been refused"
    assert store.read_leases(["u:A:k"])["u:A:k"].epoch == 2


def test_a_renewal_after_the_fence_passed_is_reported_late_and_a_latched_fence_is_then_recoverable(
    tmp_path, monkeypatch
):
    """The keeper held up past the fence (its thread starved, the process stopped) wakes
    and renews before it notices anything expired. The lease was never lost, but an
    engine that checked its fence meanwhile stays fenced for good: the renewal says the
    lease was late, and that engine's fence is recoverable (a new engine may take over);
    an engine that did not check meanwhile is not fenced at all."""
    from strategy_manager.core import leases
    from strategy_manager.core.context import Fence

    steady = [1000.0]  # the keeper's steady clock, moved by the test alone
    monkeypatch.setattr(leases, "steady", lambda: steady[0])
    # fence 200 s, renewals every 100 s: nothing happens unless the test moves the clock.
    settings = Settings(
        data_dir=str(tmp_path), lease_seconds=300, lease_renew_seconds=100, lease_margin_seconds=100
    )
    changes = []
    keeper = LeaseKeeper(open_store(settings), settings, changes.append)
    keeper.start()
    try:
        keeper.want(["u:A:k"])
        wait_for(lambda: "u:A:k" in keeper.held(), 10, "the lease claimed")
        wait_for(lambda: keeper.renewals == 1, 10, "the first renewal")
        epoch = keeper.held()["u:A:k"].epoch
        latches = []
        checked = Fence(lambda: keeper.valid("u:A:k", epoch), on_latch=lambda: latches.append(1))
        unchecked = Fence(lambda: keeper.valid("u:A:k", epoch))
        assert checked() and unchecked()

        steady[0] += 250  # 250 s held up: the fence has passed, and one engine sees it
        assert not checked() and latches == [1]
        assert not checked.recoverable()  # not while the lease is not renewed
        keeper.claim_now()  # the keeper wakes, and renews first
        wait_for(lambda: any("u:A:k" in c.late for c in changes), 10, "the late renewal reported")
        assert checked.recoverable()  # the lease is good again: a new engine may take over
        assert not checked() and latches == [1]  # but this engine stays fenced
        assert unchecked()  # never saw it: trades on
    finally:
        keeper.stop()
    assert not any("u:A:k" in c.expired or "u:A:k" in c.lost for c in changes), changes


def test_the_heartbeat_never_shows_a_time_older_than_the_latest_renewal(tmp_path):
    """Whoever judges a process silent by its heartbeat (heartbeat + lease: its leases
    have expired) must not judge early, even if it stops between its two writes."""
    settings = Settings(data_dir=str(tmp_path), lease_seconds=3, lease_renew_seconds=0.05)
    store = open_store(settings)
    writes = []

    class Watched:
        def __getattr__(self, name):
            return getattr(store, name)

        def write_owner(self, record):
            writes.append(("heartbeat", record.heartbeat))
            store.write_owner(record)

        def renew(self, owner, now, seconds, known):
            writes.append(("renew", now))
            return store.renew(owner, now, seconds, known)

    keeper = LeaseKeeper(Watched(), settings, lambda change: None)
    keeper.start()
    try:
        keeper.want(["u:A:k"])
        wait_for(lambda: keeper.renewals >= 5 and "u:A:k" in keeper.held(), 10, "five renewals")
    finally:
        keeper.stop()
    heartbeat = None
    for kind, at in writes:
        if kind == "heartbeat":
            heartbeat = at
        else:
            assert heartbeat is not None and heartbeat >= at, writes


def test_a_holder_that_exited_but_is_not_reaped_yet_counts_as_gone():
    """A Ray worker whose node was killed lingers as a zombie until init reaps it: it can
    do nothing, and its leases need not wait to expire."""
    me = this_process(SystemClock().now())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        wait_for(
            lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", 30, "the child exited, unreaped"
        )
        holder = OwnerRecord(
            "here:1:gone", me.host, child.pid, boot_id=me.boot_id, pid_namespace=me.pid_namespace
        )
        assert dead_local_owners(["here:1:gone"], [holder], me) == {"here:1:gone"}
    finally:
        child.wait()
    alive = OwnerRecord("here:2:me", me.host, me.pid, boot_id=me.boot_id, pid_namespace=me.pid_namespace)
    assert dead_local_owners(["here:2:me"], [alive], me) == frozenset()
