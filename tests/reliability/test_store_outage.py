"""The store goes away while strategies run.

A short outage changes nothing for the engines, and the snapshots taken meanwhile
land after it. A long one fences the engines off before their leases could expire in
the store (another orchestrator could take them then): no order after that point,
and they resume from where they stopped once the store is back, if nobody took them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime

import pytest

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from strategy_manager.core.worker import WorkerState
from tests.conftest import wait_for
from tests.reliability.faults import FlakyStore

IDS = [f"u:S{i}:k" for i in range(3)]


def _setup(settings: Settings, params: dict | None = None) -> tuple[object, FlakyStore]:
    real = open_store(settings)
    for ident in IDS:
        real.upsert_strategy(
            {
                "user_id": "u",
                "symbol": ident.split(":")[1],
                "strategy_key": "k",
                "engine": "demo",
                "params": params or {"bar_seconds": 0.002, "fast": 2, "slow": 3},
                "schedule": {"mode": "always"},
            }
        )
    return real, FlakyStore(real)


def _orders(settings: Settings, ident: str) -> list[dict]:
    path = settings.embedded_path.parent / "engines" / "demo" / ident.replace(":", "_") / "orders.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _lease_expiry(settings: Settings, ident: str) -> float:
    with sqlite3.connect(settings.embedded_path) as db:
        (text,) = db.execute(
            "SELECT expires_at FROM strategy_leases WHERE strategy_id = ?", (ident,)
        ).fetchone()
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.slow
def test_a_short_outage_changes_nothing_and_the_snapshots_taken_meanwhile_land_after(tmp_path):
    settings = Settings(
        data_dir=str(tmp_path),
        poll_interval=0.1,
        snapshot_interval=3600,
        backoff_base=0.05,
        backoff_cap=0.3,
        lease_seconds=9,
        lease_renew_seconds=1,
    )
    real, store = _setup(settings)
    orch = MultiStrategyOrchestrator(settings, store, clock=SystemClock())  # type: ignore[arg-type]
    orch.start()
    try:
        wait_for(lambda: all(orch.slots.get(i) and orch.slots[i].running for i in IDS), 10, "workers")
        orch.snapshot_all()
        wait_for(lambda: all(real.latest_snapshot(i) for i in IDS), 10, "first snapshots")
        before = {i: real.latest_snapshot(i) for i in IDS}
        store.down = True
        wait_for(lambda: store.failed >= 2, 5, "calls refused during the outage")
        bars_in_outage = {i: orch.slots[i].worker.snapshot()["bar"] for i in IDS}
        orch.snapshot_all()  # taken, but the store cannot have them now
        wait_for(lambda: len(orch.snapshots) == len(IDS), 5, "snapshots kept in memory")
        assert all(orch.slots[i].state is WorkerState.RUNNING for i in IDS)  # trading goes on
        assert all(orch.slots[i].worker.context.lease_valid() for i in IDS)
        assert all(real.latest_snapshot(i).seq == before[i].seq for i in IDS)  # nothing written meanwhile
        store.down = False
        # The snapshots taken during the outage land once it is over (no new one is due:
        # snapshot_interval is an hour), so nothing of the outage is lost.
        wait_for(
            lambda: all(real.latest_snapshot(i).seq > before[i].seq for i in IDS), 10, "the kept snapshots"
        )
        assert all(real.latest_snapshot(i).state["bar"] >= bars_in_outage[i] for i in IDS)
        assert orch._thread is not None and orch._thread.is_alive()
    finally:
        store.down = False
        orch.stop()
    for ident in IDS:  # every snapshot decodes and sequence numbers only grow
        seqs = [s.seq for s in real.snapshot_history(ident, limit=100)]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)


@pytest.mark.slow
def test_a_long_outage_fences_the_engines_before_their_leases_could_expire_then_resumes_them(tmp_path):
    settings = Settings(
        data_dir=str(tmp_path),
        poll_interval=0.1,
        snapshot_interval=3600,
        backoff_base=0.05,
        backoff_cap=0.3,
        lease_seconds=3,
        lease_renew_seconds=0.5,
        engine_options={"demo": {"order_log": True}},
    )
    _real, store = _setup(settings)
    events: list[tuple[str, str, str]] = []
    orch = MultiStrategyOrchestrator(
        settings,
        store,
        clock=SystemClock(),
        on_event=lambda k, i, d: events.append((k, i, d)),  # type: ignore[arg-type]
    )
    orch.start()
    try:
        wait_for(lambda: all(orch.slots.get(i) and orch.slots[i].running for i in IDS), 10, "workers")
        wait_for(lambda: all(len(_orders(settings, i)) >= 3 for i in IDS), 10, "simulated orders")
        first_epochs = {i: orch.slots[i].lease.epoch for i in IDS}
        store.down = True
        expiry = {i: _lease_expiry(settings, i) for i in IDS}  # as renewed last, before the cut
        wait_for(lambda: sum(k == "fenced" for k, _, _ in events) == len(IDS), 10, "the engines fenced off")
        stopped_at = {i: orch.slots[i].worker for i in IDS}
        assert all(w is None for w in stopped_at.values())  # stopped and forgotten
        # Stay away well past the leases' expiry in the store.
        wait_for(lambda: time.time() > max(expiry.values()) + 1.0, 10, "the leases to expire in the store")
        for ident in IDS:
            orders = _orders(settings, ident)
            assert orders, ident
            # No order was sent after the fence went down, and that was before the
            # lease could expire in the store, by at least the lease margin's worth.
            assert max(o["t"] for o in orders) < expiry[ident] - settings.lease_margin / 2, ident
        fenced_bars = {i: len(_orders(settings, i)) for i in IDS}
        store.down = False
        # Nobody took the leases: renewed, same epoch; the engines resume from the
        # state they were fenced in (written once the store was back).
        wait_for(lambda: all(orch.slots[i].running for i in IDS), 15, "the engines back")
        assert {i: orch.slots[i].lease.epoch for i in IDS} == first_epochs
        for ident in IDS:
            started = [d for k, i, d in events if k == "started" and i == ident]
            assert len(started) == 2 and "restored snapshot" in started[1], started
        wait_for(lambda: all(len(_orders(settings, i)) > fenced_bars[i] for i in IDS), 10, "orders again")
    finally:
        store.down = False
        orch.stop()


def test_with_keep_running_a_long_outage_does_not_stop_the_engines(tmp_path):
    settings = Settings(
        data_dir=str(tmp_path),
        poll_interval=0.1,
        snapshot_interval=3600,
        lease_seconds=1.5,
        lease_renew_seconds=0.25,
        on_lease_loss="keep_running",
    )
    _real, store = _setup(settings)
    orch = MultiStrategyOrchestrator(settings, store, clock=SystemClock())  # type: ignore[arg-type]
    orch.start()
    try:
        wait_for(lambda: all(orch.slots.get(i) and orch.slots[i].running for i in IDS), 10, "workers")
        store.down = True
        t0 = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 2 * settings.lease_seconds, 10, "two leases' time")
        assert all(orch.slots[i].running and orch.slots[i].worker.context.lease_valid() for i in IDS)
    finally:
        store.down = False
        orch.stop()


def test_an_outage_does_not_make_the_control_loop_spin(tmp_path):
    settings = Settings(data_dir=str(tmp_path), poll_interval=0.1, lease_seconds=1.5, lease_renew_seconds=0.5)
    _real, store = _setup(settings)
    orch = MultiStrategyOrchestrator(settings, store, clock=SystemClock())  # type: ignore[arg-type]
    orch.start()
    try:
        wait_for(lambda: all(orch.slots.get(i) and orch.slots[i].running for i in IDS), 10, "the workers")
        store.down = True
        time.sleep(2.0)
        calls = store.failed
    finally:
        store.down = False
        orch.stop()
    # Polls back off to every 5 poll intervals and renewals keep their own pace while
    # the store is away: a handful of calls a second, not hundreds.
    assert 0 < calls < 40, calls


def test_a_renewal_that_lands_late_replaces_only_the_engines_that_met_their_fence(tmp_path, monkeypatch):
    """A slow store holds a renewal up past the fence, and then it lands: the leases
    were never lost. An engine that checked its fence meanwhile was refused and stays
    fenced, so a new engine takes over from its state; the others trade on, untouched
    (restarting every engine would only load the slow store more)."""
    from strategy_manager.core import leases

    steady = [1000.0]  # the keeper's steady clock, moved by the test alone
    monkeypatch.setattr(leases, "steady", lambda: steady[0])
    # fence 200 s, renewals every 100 s: nothing expires unless the test moves the clock.
    settings = Settings(
        data_dir=str(tmp_path),
        poll_interval=0.1,
        lease_seconds=300,
        lease_renew_seconds=100,
        lease_margin_seconds=100,
    )
    real, _flaky = _setup(settings, {"bar_seconds": 3600})  # bars an hour apart: no engine asks its fence
    events: list[tuple[str, str, str]] = []
    orch = MultiStrategyOrchestrator(
        settings, real, clock=SystemClock(), on_event=lambda k, i, d: events.append((k, i, d))
    )
    orch.start()
    try:
        wait_for(lambda: all(orch.slots.get(i) and orch.slots[i].running for i in IDS), 10, "workers")
        wait_for(lambda: orch.keeper.renewals >= 1, 10, "a renewal")
        workers = {i: orch.slots[i].worker for i in IDS}
        met, *others = IDS
        steady[0] += 250  # the renewal is 250 s late: every fence has passed
        assert not workers[met].context.lease_valid()  # this engine tries to act meanwhile
        renewals = orch.keeper.renewals
        orch.keeper.claim_now()  # the late renewal lands
        wait_for(lambda: orch.keeper.renewals > renewals, 10, "the late renewal")
        wait_for(
            lambda: orch.slots[met].worker not in (None, workers[met]) and orch.slots[met].running,
            10,
            "a new engine for the strategy that met its fence",
        )
        assert [i for k, i, _ in events if k == "fenced"] == [met]
        assert all(orch.slots[i].worker is workers[i] and orch.slots[i].running for i in others)
        assert all(workers[i].context.lease_valid() for i in others)  # never fenced
        assert orch.slots[met].worker.context.lease_valid()
    finally:
        orch.stop()
