"""The oracle through the orchestrator and its store: an uninterrupted run, a stop and
restart of the orchestrator, and (slow) a SIGKILLed orchestrator process restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from bt_support import BARS, CASH, COMMISSION, SMA, STAKE, assert_same_as_oracle_json

from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from strategy_manager.testing import wait_for_snapshot


def document(key: str, csv: Any, **feed: Any) -> dict[str, Any]:
    return {
        "user_id": "u", "symbol": "SYM", "strategy_key": key, "engine": "backtrader",
        "engine_class": SMA,
        "params": {"fast": 10, "slow": 30, "backtrader": {
            "feed": {"csv": str(csv), **feed},
            "cash": CASH,
            "commission": {"commission": COMMISSION},
            "sizer": {"factory": "backtrader.sizers:FixedSize", "kwargs": {"stake": STAKE}},
        }},
        "schedule": {"mode": "always"},
    }


def test_through_the_orchestrator_with_a_restart(tmp_path, prices_csv, sma_oracle):
    settings = Settings(data_dir=str(tmp_path / "data"), poll_interval=0.1, snapshot_interval=3600)
    store = open_store(settings)
    store.upsert_strategy(document("whole", prices_csv))
    store.upsert_strategy(document("halted", prices_csv, hold_after_bars=1200))

    first = MultiStrategyOrchestrator(settings, store)
    first.start()
    try:
        # a finished replay is snapshotted by the orchestrator itself
        whole = wait_for_snapshot(store, "u:SYM:whole", lambda s: s["bars"] == BARS)
        assert_same_as_oracle_json(whole.state, sma_oracle)
        deadline = time.monotonic() + 30
        while not _holding(first, "u:SYM:halted") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.stop()  # snapshots the running worker, then stops it
    assert store.latest_snapshot("u:SYM:halted").state["bars"] == 1200

    second = MultiStrategyOrchestrator(settings, store)
    second.start()
    try:
        done = wait_for_snapshot(store, "u:SYM:halted", lambda s: s["bars"] == BARS)
    finally:
        second.stop()
    assert_same_as_oracle_json(done.state, sma_oracle)


def _holding(orchestrator: MultiStrategyOrchestrator, ident: str) -> bool:
    slot = orchestrator.slots.get(ident)
    engine = slot.worker.engine if slot is not None and slot.worker is not None else None
    return engine is not None and engine.holding.is_set()


@pytest.mark.slow
def test_a_sigkilled_orchestrator_resumes_exactly(tmp_path, prices_csv, sma_oracle):
    data = tmp_path / "data"
    (tmp_path / "config").mkdir()  # an empty config folder: nothing of the developer's is read
    env = {**os.environ, "QSM_DATA_DIR": str(data), "QSM_SNAPSHOT_INTERVAL": "0.2",
           "QSM_CONFIG_DIR": str(tmp_path / "config")}
    store = open_store(Settings(data_dir=str(data)))
    store.upsert_strategy(document("k", prices_csv, pace=1500))
    command = [sys.executable, "-m", "strategy_manager.cli", "run", "--poll-interval", "0.1"]

    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        at_kill = wait_for_snapshot(store, "u:SYM:k", lambda s: s["bars"] > 300)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    at_kill = store.latest_snapshot("u:SYM:k")
    assert 0 < at_kill.state["bars"] < BARS

    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        done = wait_for_snapshot(store, "u:SYM:k", lambda s: s["bars"] == BARS)
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=20)
    finally:
        if second.poll() is None:
            second.kill()
    assert f"restored snapshot #{at_kill.seq}" in out, out
    assert_same_as_oracle_json(done.state, sma_oracle)
