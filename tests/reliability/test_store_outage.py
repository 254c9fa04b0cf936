"""The store goes away while strategies run: they keep running, nothing is lost."""

from __future__ import annotations

import time

import pytest

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from strategy_manager.core.worker import WorkerState
from tests.conftest import wait_for
from tests.reliability.faults import FlakyStore

IDS = [f"u:S{i}:k" for i in range(3)]


@pytest.mark.slow
def test_workers_keep_running_through_an_outage_and_their_writes_land_after(tmp_path):
    settings = Settings(
        data_dir=str(tmp_path), poll_interval=0.1, snapshot_interval=3600, backoff_base=0.05, backoff_cap=0.3
    )
    real = open_store(settings)
    for ident in IDS:
        _, symbol, _ = ident.split(":")
        real.upsert_strategy(
            {
                "user_id": "u",
                "symbol": symbol,
                "strategy_key": "k",
                "engine": "demo",
                "params": {"bar_seconds": 0.01},
                "schedule": {"mode": "always"},
            }
        )
    store = FlakyStore(real)
    orch = MultiStrategyOrchestrator(settings, store, clock=SystemClock())  # type: ignore[arg-type]
    orch.start()
    try:
        wait_for(lambda: all(orch.slots.get(i) and orch.slots[i].running for i in IDS), 10, "workers")
        assert orch.snapshot_all() == len(IDS)
        before = {i: real.latest_snapshot(i) for i in IDS}
        store.down = True
        time.sleep(0.5)
        bars_in_outage = {i: orch.slots[i].worker.snapshot()["bar"] for i in IDS}
        orch.snapshot_all()  # taken, but the store cannot have them now
        time.sleep(1.0)
        assert store.failed > 0
        assert all(orch.slots[i].state is WorkerState.RUNNING for i in IDS)  # trading goes on
        assert all(real.latest_snapshot(i).seq == before[i].seq for i in IDS)  # nothing written meanwhile
        store.down = False
        # The snapshots taken during the outage land once it is over (no new one is due:
        # snapshot_interval is an hour), so nothing of the outage is lost.
        wait_for(
            lambda: all(real.latest_snapshot(i).seq > before[i].seq for i in IDS), 10, "the kept snapshots"
        )
        assert all(real.latest_snapshot(i).state["bar"] >= bars_in_outage[i] for i in IDS)
        wait_for(
            lambda: all(r.heartbeat and r.state == "RUNNING" for r in real.read_status()),
            10,
            "status after the outage",
        )
        assert orch._thread is not None and orch._thread.is_alive()
    finally:
        store.down = False
        orch.stop()
    for ident in IDS:  # every snapshot decodes and sequence numbers only grow
        history = real.snapshot_history(ident, limit=100)
        seqs = [s.seq for s in history]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)


def test_an_outage_does_not_make_the_control_loop_spin(tmp_path):
    settings = Settings(data_dir=str(tmp_path), poll_interval=0.1, lease_seconds=0.6)
    real = open_store(settings)
    real.upsert_strategy(
        {
            "user_id": "u",
            "symbol": "S",
            "strategy_key": "k",
            "engine": "demo",
            "params": {"bar_seconds": 0.05},
            "schedule": {"mode": "always"},
        }
    )
    store = FlakyStore(real)
    orch = MultiStrategyOrchestrator(settings, store, clock=SystemClock())  # type: ignore[arg-type]
    orch.start()
    try:
        wait_for(lambda: orch.slots.get("u:S:k") and orch.slots["u:S:k"].running, 10, "the worker")
        store.down = True
        time.sleep(2.0)
        calls = store.failed
    finally:
        store.down = False
        orch.stop()
    # Polls back off to every 5 poll intervals while the store is away: a handful of
    # calls a second, not hundreds.
    assert 0 < calls < 40, calls
