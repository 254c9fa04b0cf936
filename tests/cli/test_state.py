from __future__ import annotations

import os
from datetime import UTC, datetime

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import SnapshotWrite, StatusRecord, open_store
from tests.conftest import run_cli

ID = "u:600000.SH:k"


def test_rollback_copies_an_old_snapshot_as_the_newest_and_keeps_history():
    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    store.upsert_strategy({"user_id": "u", "symbol": "600000.SH", "strategy_key": "k", "engine": "demo"})
    now = datetime(2026, 11, 24, tzinfo=UTC)
    seqs = [store.save_snapshots([SnapshotWrite(ID, "demo", {"bar": bar}, now)])[0] for bar in (1, 2, 3)]

    out = run_cli("state", "rollback", ID, "--seq", str(seqs[0]))
    assert out.returncode == 0, out.stderr
    latest = store.latest_snapshot(ID)
    assert latest.state == {"bar": 1}
    assert latest.seq > seqs[-1]
    assert [s.state["bar"] for s in store.snapshot_history(ID, limit=10)] == [1, 3, 2, 1]

    missing = run_cli("state", "rollback", ID, "--seq", "999")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: strategy {ID}: no snapshot with seq 999 is kept"


def test_rollback_refuses_while_the_strategy_runs():
    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    store.upsert_strategy({"user_id": "u", "symbol": "600000.SH", "strategy_key": "k", "engine": "demo"})
    (seq,) = store.save_snapshots([SnapshotWrite(ID, "demo", {"bar": 1}, datetime.now(UTC))])
    store.write_status([StatusRecord(ID, "RUNNING")])
    out = run_cli("state", "rollback", ID, "--seq", str(seq))
    assert out.returncode == 2
    assert "is RUNNING; disable it first" in out.stderr
