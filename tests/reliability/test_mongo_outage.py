"""The network to MongoDB goes away for less than a lease while strategies run
(pymongo over TCP to the wire server, through a relay that is cut): they keep
running, and the snapshots taken meanwhile land after."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.reliability.faults import TcpRelay
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)

IDS = [f"u:M{i}:k" for i in range(3)]


@pytest.mark.slow
def test_a_cut_network_to_mongodb_loses_nothing(mongoeco_uri, tmp_path):  # noqa: F811
    target = urlsplit(mongoeco_uri)
    relay = TcpRelay((target.hostname, target.port))
    port = relay.up()
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    settings = Settings(
        data_dir=str(tmp_path),
        mongo_uri=uri,
        mongo_db=f"outage_{tmp_path.name[-12:]}",
        mongo_timeout_ms=300,
        poll_interval=0.1,
        snapshot_interval=3600,
        backoff_base=0.05,
        backoff_cap=0.3,
        lease_seconds=9,
        lease_renew_seconds=1,
    )
    store = open_store(settings)
    for ident in IDS:
        store.upsert_strategy(
            {
                "user_id": "u",
                "symbol": ident.split(":")[1],
                "strategy_key": "k",
                "engine": "demo",
                "params": {"bar_seconds": 0.01},
                "schedule": {"mode": "always"},
            }
        )
    orch = MultiStrategyOrchestrator(settings, store, clock=SystemClock())
    orch.start()
    try:
        deadline = time.monotonic() + 15
        while not all(orch.slots.get(i) and orch.slots[i].running for i in IDS):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        orch.snapshot_all()
        while not all(store.latest_snapshot(i) for i in IDS):
            assert time.monotonic() < deadline + 10
            time.sleep(0.05)
        before = {i: store.latest_snapshot(i).seq for i in IDS}
        relay.down()
        time.sleep(1.0)
        bars = {i: orch.slots[i].worker.snapshot()["bar"] for i in IDS}
        orch.snapshot_all()  # the store is out of reach: kept
        deadline = time.monotonic() + 5
        while len(orch.snapshots) < len(IDS):
            assert time.monotonic() < deadline, "the snapshots were not kept"
            time.sleep(0.05)
        assert all(orch.slots[i].running and orch.slots[i].worker.context.lease_valid() for i in IDS)
        assert orch._thread.is_alive()
        relay.up()
        deadline = time.monotonic() + 20
        while not all((s := store.latest_snapshot(i)) and s.seq > before[i] for i in IDS):
            assert time.monotonic() < deadline, "the kept snapshots never landed"
            time.sleep(0.1)
        assert all(store.latest_snapshot(i).state["bar"] >= bars[i] for i in IDS)
    finally:
        orch.stop()
        relay.down()
