"""A SIGKILLed orchestrator process comes back with every strategy's last snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import owned_by, wait_for

SYMBOLS = ("A", "B", "C")


def spawn(env):
    return subprocess.Popen(
        [sys.executable, "-m", "strategy_manager.cli", "run", "--poll-interval", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_then_restart_restores_every_strategy_once(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "QSM_DATA_DIR": str(data), "QSM_SNAPSHOT_INTERVAL": "0.2"}
    store = open_store(Settings(data_dir=str(data)))
    for symbol in SYMBOLS:
        store.upsert_strategy(
            {
                "user_id": "u",
                "symbol": symbol,
                "strategy_key": "k",
                "engine": "demo",
                "params": {"bar_seconds": 0.01},
                "schedule": {"mode": "always"},
            }
        )
    ids = [f"u:{s}:k" for s in SYMBOLS]

    first = spawn(env)
    try:
        wait_for(
            lambda: all((s := store.latest_snapshot(i)) and s.seq >= 2 for i in ids),
            30,
            "snapshots from the first process",
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    at_kill = {i: store.latest_snapshot(i) for i in ids}

    second = spawn(env)
    try:
        t0 = time.monotonic()
        status = wait_for(
            lambda: [
                r
                for r in store.read_status()
                if r.state == "RUNNING" and owned_by(r.owner, second.pid) and r.strategy_id in ids
            ],
            20,
            "the restarted workers",
        )
        wait_for(
            lambda: (
                len(
                    [r for r in store.read_status() if r.state == "RUNNING" and owned_by(r.owner, second.pid)]
                )
                == len(ids)
            ),
            20,
            "all workers",
        )
        elapsed = time.monotonic() - t0
        assert status
        assert elapsed < 5
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=20)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, out
    for ident in ids:
        started = [line for line in out.splitlines() if " started " in line and ident in line]
        assert len(started) == 1, out  # one worker per strategy
        assert f"restored snapshot #{at_kill[ident].seq}" in started[0]
        # After SIGTERM the final snapshot continues from the restored one.
        assert store.latest_snapshot(ident).state["bar"] >= at_kill[ident].state["bar"]
