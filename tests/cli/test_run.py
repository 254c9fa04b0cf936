"""The main job and its views, through the real command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import run_cli, wait_for


def seed(*documents):
    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    for d in documents:
        store.upsert_strategy({"user_id": "u", "strategy_key": "k", "engine": "demo", "params": {}, **d})
    return store


def test_schedule_previews_warm_up_break_and_close_in_exchange_and_local_time():
    seed(
        {"symbol": "002050.SZ", "schedule": {"lunch_break": "pause", "pre_open_minutes": 10}},
        {"symbol": "BTC-USDT", "schedule": {"mode": "always"}},
    )
    out = run_cli("schedule", "u:002050.SZ:k", "--at", "2026-11-24T08:00+08:00", "--next", "4", "--json")
    assert out.returncode == 0, out.stderr
    (item,) = json.loads(out.stdout)
    assert item["calendar"] == "XSHG"
    got = [(t["kind"], t["exchange_time"], t["why"]) for t in item["transitions"]]
    assert got == [
        ("start", "2026-11-24T09:20:00+08:00", "warm-up"),
        ("pause", "2026-11-24T11:30:00+08:00", "break"),
        ("start", "2026-11-24T13:00:00+08:00", "break end"),
        ("stop", "2026-11-24T15:05:00+08:00", "close"),
    ]
    text = run_cli("schedule", "--at", "2026-11-24T08:00+08:00")
    assert "u:BTC-USDT:k  calendar XSHG, mode always" in text.stdout
    assert "runs continuously" in text.stdout
    missing = run_cli("schedule", "u:NOPE:k")
    assert (missing.returncode, missing.stderr.strip()) == (2, "error: strategy 'u:NOPE:k' not found")


def test_run_on_a_simulated_clock_then_status_from_another_process():
    seed({"symbol": "600000.SH", "params": {"bar_seconds": 60}}, {"symbol": "000001.SZ", "engine": "nope"})
    out = run_cli(
        "run",
        "--clock",
        "sim",
        "--start",
        "2026-11-24T09:20+08:00",
        "--speed",
        "3000",
        "--for",
        "20m",
        "--poll-interval",
        "0.1",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    started = [line for line in lines if "started   u:600000.SH:k  fresh" in line]
    assert started, out.stdout
    assert started[0][11:19] >= "09:25:00"  # not before the warm-up (open 09:30 - 5 minutes)
    assert any("blocked   u:000001.SZ:k  engine 'nope' is not installed" in line for line in lines)
    assert "summary: 2 strategies; 1 BLOCKED, 1 STOPPED" in out.stdout

    status = run_cli("status", "--json")
    records = {r["strategy_id"]: r for r in json.loads(status.stdout)}
    assert records["u:600000.SH:k"]["state"] == "STOPPED"
    assert records["u:000001.SZ:k"]["state"] == "BLOCKED"
    assert "engine 'nope' is not installed" in records["u:000001.SZ:k"]["last_error"]
    table = run_cli("status").stdout
    assert "u:600000.SH:k" in table and "STOPPED" in table


def test_sigterm_stops_gracefully_and_a_second_signal_forces_exit(tmp_path):
    seed(
        {
            "symbol": "HANG",
            "engine": "python",
            "engine_class": "tests.core.user_engines.HangsInStop",
            "schedule": {"mode": "always"},
        }
    )
    env = {**os.environ, "QSM_ENGINE_CLASS_ALLOW": "tests.core.user_engines", "QSM_STOP_TIMEOUT": "30"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "strategy_manager.cli", "run", "--poll-interval", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
        wait_for(lambda: any(r.state == "RUNNING" for r in store.read_status()), 30, "the hanging engine running")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()  # still waiting for the hung engine
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 3
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "SIGTERM: snapshotting and stopping every worker" in err
    assert "second signal: exiting now" in err
