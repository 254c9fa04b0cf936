"""``strategy-manager accounts``, ``accounts halt`` and ``accounts resume``, through the
real command line: the kill switch works from another process while ``run`` runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import run_cli, wait_for

ACCOUNTS = {"paper": {"engine": "demo", "broker": "paper-broker-7"}, "idle": {"engine": "demo"}}
ENV = {"QSM_ACCOUNTS": json.dumps(ACCOUNTS)}


def seed(count: int, account: str | None = "paper", prefix: str = "S", **params):
    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    for i in range(count):
        document = {
            "user_id": "u",
            "symbol": f"{prefix}{i}",
            "strategy_key": "k",
            "engine": "demo",
            "params": {"bar_seconds": 0.01, **params},
            "schedule": {"mode": "always"},
        }
        if account is not None:
            document["account"] = account
        store.upsert_strategy(document)
    return store


def states(store) -> dict[str, str]:
    return {r.strategy_id: r.state for r in store.read_status()}


def test_accounts_lists_sessions_strategies_and_net_positions():
    store = seed(3, fast=2, slow=4, lot=7)
    seed(1, account=None, prefix="LONE")
    run = run_cli("run", "--for", "2s", "--poll-interval", "0.1", env=ENV)
    assert run.returncode == 0, run.stderr
    listed = run_cli("accounts", "--json", env=ENV)
    assert listed.returncode == 0, listed.stderr
    by_name = {a["account"]: a for a in json.loads(listed.stdout)}
    assert sorted(by_name) == ["idle", "paper"]
    paper = by_name["paper"]
    assert paper["engine"] == "demo" and paper["defined"] and paper["halted"] is None
    assert [s["strategy_id"] for s in paper["strategies"]] == ["u:S0:k", "u:S1:k", "u:S2:k"]
    snapshots = {sid: store.latest_snapshot(sid).state for sid in ("u:S0:k", "u:S1:k", "u:S2:k")}
    assert paper["positions"] == {
        f"S{i}": float(snapshots[f"u:S{i}:k"]["position"]) for i in range(3)
    }
    assert by_name["idle"]["strategies"] == [] and by_name["idle"]["positions"] == {}
    text = run_cli("accounts", env=ENV)
    assert "paper  engine demo (settings)  session -" in text.stdout
    assert "u:S0:k" in text.stdout and "paper-broker-7" not in text.stdout
    assert "idle  engine demo (settings)  session -\n  no strategies\n  net: flat" in text.stdout


def test_halting_an_account_nobody_knows_is_refused_in_one_line():
    result = run_cli("accounts", "halt", "nope", env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: account 'nope' is neither in the settings nor named by any strategy (accounts: idle, paper)"
    )


def test_halt_and_resume_from_another_process_while_run_runs(tmp_path):
    store = seed(5)
    seed(2, account=None, prefix="LONE")
    members = [f"u:S{i}:k" for i in range(5)]
    env = {**os.environ, **ENV}
    run = subprocess.Popen(
        [sys.executable, "-m", "strategy_manager.cli", "run", "--poll-interval", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: all(states(store).get(s) == "RUNNING" for s in [*members, "u:LONE0:k"]), 60, "running")
        halted = run_cli("accounts", "halt", "paper", "--reason", "risk limit", env=ENV)
        assert halted.returncode == 0, halted.stderr
        assert halted.stdout.strip() == (
            "halted account paper: its 5 strategies stop ('accounts resume paper' undoes it)"
        )
        wait_for(lambda: all(states(store).get(s) == "HALTED" for s in members), 30, "every member halted")
        assert states(store)["u:LONE0:k"] == "RUNNING"
        rows = {r.strategy_id: r for r in store.read_status()}
        assert "account paper halted by" in rows["u:S0:k"].last_error and "risk limit" in rows["u:S0:k"].last_error
        listed = {a["account"]: a for a in json.loads(run_cli("accounts", "--json", env=ENV).stdout)}
        assert listed["paper"]["halted"]["reason"] == "risk limit"
        assert run_cli("accounts", env=ENV).stdout.count("HALTED") >= 6  # the account and its 5 strategies
        resumed = run_cli("accounts", "resume", "paper", env=ENV)
        assert resumed.stdout.strip().startswith("resumed account paper")
        wait_for(lambda: all(states(store).get(s) == "RUNNING" for s in members), 30, "running again")
        again = run_cli("accounts", "resume", "paper", env=ENV)
        assert (again.returncode, again.stdout.strip()) == (0, "account paper was not halted")
    finally:
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
    assert run.returncode == 0, out
    assert "account-halt paper  account paper halted by" in out
    assert "account   paper  resumed; 5 strategies may start again" in out
