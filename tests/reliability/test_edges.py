"""Clock and calendar edges, and a second orchestrator taking over a dead one."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.errors import SnapshotError
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.schedule import Calendars, Policy
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import wait_for


@pytest.mark.parametrize(
    ("day", "open_utc"),
    [
        ("2026-03-06", "14:30"),  # Friday before US daylight saving time starts (EST, UTC-5)
        ("2026-03-09", "13:30"),  # Monday after it started (EDT, UTC-4)
        ("2026-10-30", "13:30"),  # Friday before it ends
        ("2026-11-02", "14:30"),  # Monday after it ended
    ],
)
def test_xnys_open_follows_daylight_saving_time(day, open_utc):
    calendars = Calendars()
    now = datetime.fromisoformat(f"{day}T00:00+00:00")
    window = next(w for w in calendars.windows(Policy("XNYS"), now) if str(w.session) == day)
    assert window.start.astimezone(UTC).strftime("%H:%M") == open_utc
    assert (window.end - window.start).total_seconds() == 6.5 * 3600


def test_at_exactly_the_open_a_strategy_runs():
    calendars = Calendars()
    policy = Policy("XSHG", pre_open_minutes=0)
    at_open = datetime.fromisoformat("2026-11-24T09:30+08:00")
    assert calendars.phase(policy, at_open).running
    assert not calendars.phase(policy, datetime.fromisoformat("2026-11-24T09:29:59+08:00")).running


def test_a_second_orchestrator_takes_over_after_the_first_ones_lease_expires(tmp_path):
    settings = Settings(
        data_dir=str(tmp_path), poll_interval=0.05, lease_seconds=2.0, lease_renew_seconds=0.25
    )
    store = open_store(settings)
    store.upsert_strategy(
        {
            "user_id": "u",
            "symbol": "A",
            "strategy_key": "k",
            "engine": "demo",
            "params": {"bar_seconds": 0.01},
            "schedule": {"mode": "always"},
        }
    )
    first = MultiStrategyOrchestrator(settings, store, clock=SystemClock(), owner="host-a:1:x")
    second = MultiStrategyOrchestrator(
        settings, open_store(settings), clock=SystemClock(), owner="host-b:1:y"
    )
    first.start()
    try:
        wait_for(lambda: first.slots.get("u:A:k") and first.slots["u:A:k"].running, 10, "the first worker")
        first_epoch = first.slots["u:A:k"].lease.epoch
        second.start()
        wait_for(
            lambda: second.slots.get("u:A:k") and second.slots["u:A:k"].state == "STANDBY", 10, "standby"
        )
        time.sleep(2.5)  # longer than a lease: the first renews, so the second stands by
        assert second.slots["u:A:k"].state == "STANDBY"
        assert second.slots["u:A:k"].worker is None
        # The first host hangs: nothing runs its control loop or renews its leases any more.
        first._stopping.set()
        first._thread.join()
        first.keeper._stopping.set()
        first.keeper._thread.join()
        t0 = time.monotonic()
        wait_for(lambda: second.slots["u:A:k"].running, 5, "the takeover")
        assert time.monotonic() - t0 < settings.lease_seconds + 1.0
        # The hung owner's engine is fenced off: its fence fell before the lease expired.
        assert not first.slots["u:A:k"].worker.context.lease_valid()
        # And its late snapshot is refused by the store: the new owner's epoch is current.
        assert second.slots["u:A:k"].lease.epoch == first_epoch + 1
        stale = first._snapshot_write(
            "u:A:k", "demo", first_epoch, {"bar": -1, "cash": 0.0, "position": 0, "trades": 0, "window": []}
        )
        with pytest.raises(SnapshotError, match="no longer current"):
            store.save_snapshots([stale])
    finally:
        second.stop()
        first._shutdown(1.0)
