"""Owner ids and which owners count as gone."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import attrs

from strategy_manager.core.leases import dead_local_owners, this_process

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_owner_ids_are_unique_per_process_object_even_with_the_same_host_and_pid():
    one, two = this_process(NOW), this_process(NOW)
    assert one.owner != two.owner
    assert one.owner.split(":")[:2] == two.owner.split(":")[:2]


def test_only_gone_processes_of_this_boot_and_pid_namespace_count_as_dead():
    me = this_process(NOW)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = attrs.evolve(this_process(NOW), pid=gone.pid)
    alive = attrs.evolve(this_process(NOW), pid=os.getppid())
    other_namespace = attrs.evolve(dead, owner="other-ns", pid_namespace="pid:[1]")
    other_boot = attrs.evolve(dead, owner="other-boot", boot_id="another-boot")
    stopped = attrs.evolve(alive, owner="stopped", stopped=True)
    records = [dead, alive, other_namespace, other_boot, stopped, me]
    holders = [r.owner for r in records] + ["unknown:1:x"]
    assert dead_local_owners(holders, records, me) == {dead.owner, stopped.owner}


def test_a_large_claim_goes_in_chunks_with_renewals_between(tmp_path):
    """Claiming thousands on a slow store never holds up the renewal of the leases
    already held: each chunk takes longer than a renewal period here, and a renewal
    runs between chunks."""
    import threading

    from strategy_manager.core.clock import steady
    from strategy_manager.core.leases import CLAIM_CHUNK, LeaseKeeper
    from strategy_manager.core.settings import Settings
    from strategy_manager.core.store import open_store
    from tests.conftest import wait_for

    settings = Settings(data_dir=str(tmp_path), lease_seconds=3.0, lease_renew_seconds=0.2)
    store = open_store(settings)
    calls: list[tuple[str, int]] = []
    slow = threading.Event()  # never set: each claim waits out a renewal period on it

    class SlowStore:
        def __getattr__(self, name):
            return getattr(store, name)

        def claim(self, ids, *args, **kwargs):
            calls.append(("claim", len(ids)))
            began = steady()
            while steady() < began + settings.lease_renew_seconds:
                slow.wait(0.01)
            return store.claim(ids, *args, **kwargs)

        def renew(self, *args, **kwargs):
            calls.append(("renew", 0))
            return store.renew(*args, **kwargs)

    wanted = [f"u:S{i:04d}:k" for i in range(2 * CLAIM_CHUNK + 100)]
    keeper = LeaseKeeper(SlowStore(), settings, lambda change: None)
    keeper.start()
    try:
        keeper.want(wanted)
        wait_for(lambda: len(keeper.held()) == len(wanted), 60, "every lease claimed")
    finally:
        keeper.stop()
    claims = [n for kind, n in calls if kind == "claim"]
    assert claims == [CLAIM_CHUNK, CLAIM_CHUNK, 100]
    first, last = calls.index(("claim", CLAIM_CHUNK)), len(calls) - 1 - calls[::-1].index(("claim", 100))
    assert ("renew", 0) in calls[first:last]
    store.close()
