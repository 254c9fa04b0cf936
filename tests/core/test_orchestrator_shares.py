"""An orchestrator restricted to a share of the strategies (``assigned``): it claims
only its own, reports only its own, and hands over what is taken from it."""

from __future__ import annotations

import threading

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import wait_for


def _settings(tmp_path) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        poll_interval=0.05,
        lease_seconds=1.5,
        lease_renew_seconds=0.25,
        snapshot_interval=3600,
        stop_timeout=5,
    )


def _doc(i: int) -> dict:
    return {
        "user_id": "u",
        "symbol": f"S{i}",
        "strategy_key": "k",
        "engine": "demo",
        "params": {"bar_seconds": 0.01},
        "schedule": {"mode": "always"},
    }


class Share:
    """A mutable set of strategy ids, as a host holds its assignment."""

    def __init__(self, ids=()):
        self.ids = frozenset(ids)

    def __call__(self, sid: str) -> bool:
        return sid in self.ids


def _running(store, owner: str) -> set[str]:
    return {r.strategy_id for r in store.read_status() if r.state == "RUNNING" and r.owner == owner}


def test_two_orchestrators_with_disjoint_shares_each_run_and_report_only_their_own(tmp_path):
    settings = _settings(tmp_path)
    store = open_store(settings)
    ids = [f"u:S{i}:k" for i in range(6)]
    for i in range(6):
        store.upsert_strategy(_doc(i))
    store.upsert_strategy({"user_id": "u", "symbol": "BAD", "strategy_key": "k", "params": {}})  # no engine
    a_ids, b_ids = set(ids[::2]), {*ids[1::2], "u:BAD:k"}
    a = MultiStrategyOrchestrator(settings, store, clock=SystemClock(), owner="h:1:a", assigned=Share(a_ids))
    b = MultiStrategyOrchestrator(
        settings, open_store(settings), clock=SystemClock(), owner="h:1:b", assigned=Share(b_ids)
    )
    a.start()
    b.start()
    try:
        wait_for(
            lambda: _running(store, "h:1:a") == a_ids and _running(store, "h:1:b") == b_ids - {"u:BAD:k"},
            20,
            "each share running",
        )
        assert set(a.keeper.held()) == a_ids
        assert set(b.keeper.held()) == b_ids - {"u:BAD:k"}
        # The invalid document is reported once, by the orchestrator it is assigned to.
        bad = {r.strategy_id: r for r in store.read_status()}["u:BAD:k"]
        assert (bad.state, bad.owner) == ("BLOCKED", "h:1:b")
        assert not any(s.worker for sid, s in a.slots.items() if sid not in a_ids)
    finally:
        a.stop()
        b.stop()


def test_a_strategy_taken_away_is_snapshotted_stopped_released_and_claimed_where_it_went(tmp_path):
    settings = _settings(tmp_path)
    store = open_store(settings)
    store.upsert_strategy(_doc(0))
    store.upsert_strategy(_doc(1))
    moved = "u:S0:k"
    events: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def record(kind, ident, detail):
        with lock:
            events.append((kind, ident, detail))

    share_a, share_b = Share({moved, "u:S1:k"}), Share()
    a = MultiStrategyOrchestrator(
        settings, store, clock=SystemClock(), owner="h:1:a", assigned=share_a, on_event=record
    )
    b = MultiStrategyOrchestrator(
        settings, open_store(settings), clock=SystemClock(), owner="h:1:b", assigned=share_b
    )
    a.start()
    b.start()
    try:
        wait_for(lambda: _running(store, "h:1:a") == {moved, "u:S1:k"}, 20, "both running on a")
        epoch = a.keeper.held()[moved].epoch
        share_a.ids, share_b.ids = frozenset({"u:S1:k"}), frozenset({moved})
        a.reassigned()
        b.reassigned()
        wait_for(lambda: b.slots.get(moved) is not None and b.slots[moved].running, 20, "the move")
        with lock:
            assert ("moved", moved) in {(k, i) for k, i, _ in events}
        assert moved not in a.keeper.held() and a.slots[moved].worker is None
        # b resumed from the snapshot a wrote as it stopped, under a's lease.
        restored = b.slots[moved].restored_seq
        handed = next(s for s in store.snapshot_history(moved, limit=100) if s.seq == restored)
        assert handed.lease == ("h:1:a", epoch)
        assert b.keeper.held()[moved].epoch == epoch + 1
        assert a.slots["u:S1:k"].running  # the rest of a's share is untouched
    finally:
        a.stop()
        b.stop()
