"""The lease keeper's claims."""

from __future__ import annotations

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.leases import LeaseKeeper
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
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
