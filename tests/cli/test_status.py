"""A status that tells the truth: STALE when the owner is gone, `status --check` for
monitoring, runtime states in `strategies list`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from strategy_manager.cli import cli
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import OwnerRecord, StatusRecord, open_store
from tests.conftest import wait_for


def store():
    return open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def owner(name: str, beat: datetime, stopped: bool = False) -> OwnerRecord:
    return OwnerRecord(owner=name, host="host", pid=1, heartbeat=beat, stopped=stopped)


@pytest.fixture
def fleet():
    now = datetime.now(UTC)
    s = store()
    for key in ("live", "gone", "failed", "blocked", "cleanly"):
        s.upsert_strategy({"user_id": "u", "symbol": "S", "strategy_key": key, "engine": "demo"})
    s.write_owner(owner("alive:1:a", now))
    s.write_owner(owner("dead:2:b", now - timedelta(minutes=5)))
    s.write_owner(owner("done:3:c", now - timedelta(days=1), stopped=True))
    s.write_status(
        [
            StatusRecord("u:S:live", "RUNNING", engine="demo", owner="alive:1:a"),
            StatusRecord("u:S:gone", "RUNNING", engine="demo", owner="dead:2:b"),
            StatusRecord("u:S:failed", "FAILED", engine="demo", owner="done:3:c", last_error="login refused"),
            StatusRecord("u:S:blocked", "BLOCKED", engine="demo", owner="dead:2:b", last_error="no engine"),
            StatusRecord("u:S:cleanly", "STOPPED", engine="demo", owner="done:3:c"),
        ]
    )
    return s


def test_a_strategy_whose_owner_stopped_renewing_is_stale_and_the_rest_as_reported(fleet):
    rows = {r["strategy_id"]: r for r in json.loads(invoke("status", "--json").stdout)}
    assert rows["u:S:live"]["state"] == "RUNNING"
    assert rows["u:S:gone"]["state"] == "STALE" and rows["u:S:gone"]["reported_state"] == "RUNNING"
    assert rows["u:S:failed"]["state"] == "FAILED"  # its owner stopped cleanly: its last word stands
    assert rows["u:S:blocked"]["state"] == "BLOCKED"  # needs no live owner to be true
    assert rows["u:S:cleanly"]["state"] == "STOPPED"
    text = invoke("status").stdout
    assert "STALE (was RUNNING)" in text and "its orchestrator (dead:2:b) stopped renewing" in text
    shown = json.loads(invoke("state", "show", "u:S:gone", "--json").stdout)
    assert shown["status"]["state"] == "STALE"
    assert "status: STALE (was RUNNING), owner dead:2:b" in invoke("state", "show", "u:S:gone").stdout


def test_status_check_exits_1_while_anything_is_failed_blocked_or_stale(fleet):
    result = invoke("status", "--check")
    assert result.exit_code == 1 and "3 strategies need attention" in result.stderr
    fleet.write_status(
        [
            StatusRecord(i, "RUNNING", engine="demo", owner="alive:1:a")
            for i in ("u:S:gone", "u:S:failed", "u:S:blocked")
        ]
    )
    assert invoke("status", "--check").exit_code == 0
    assert invoke("status", "--check", "--json").exit_code == 0


def test_strategies_list_shows_each_runtime_state(fleet):
    rows = {r["id"]: r for r in json.loads(invoke("strategies", "list", "--json").stdout)}
    assert rows["u:S:blocked"]["state"] == "BLOCKED" and rows["u:S:gone"]["state"] == "STALE"
    lines = {line.split()[0]: line for line in invoke("strategies", "list").stdout.splitlines()[1:]}
    assert "FAILED: login refused" in lines["u:S:failed"]
    assert "BLOCKED: no engine" in lines["u:S:blocked"]
    assert lines["u:S:live"].split()[-1] == "RUNNING"


@pytest.mark.slow
def test_after_a_kill_the_strategies_show_stale_within_a_lease(tmp_path):
    data = tmp_path / "data"
    s = open_store(Settings(data_dir=str(data)))
    s.upsert_strategy({"user_id": "u", "symbol": "K", "strategy_key": "k", "engine": "demo", "schedule": {"mode": "always"}})
    env = {**os.environ, "QSM_DATA_DIR": str(data), "QSM_LEASE_SECONDS": "1.5", "QSM_LEASE_RENEW_SECONDS": "0.25"}
    proc = subprocess.Popen([sys.executable, "-m", "strategy_manager.cli", "run"], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(r.state == "RUNNING" for r in s.read_status()), 30, "the strategy running")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "strategy_manager.cli", "status", "--check", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    result = wait_for(lambda: (r := check()).returncode == 1 and r, 10, "STALE after the kill")
    (row,) = json.loads(result.stdout)
    assert row["state"] == "STALE" and row["reported_state"] == "RUNNING"
