"""``hosts`` and the HOST column of ``status``, from heartbeat records in the store,
without Ray: a Ray host (its node in the details), a plain orchestrator gone silent,
one stopped cleanly, and a status row whose owner left no record."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import OwnerRecord, StatusRecord, open_store
from tests.conftest import run_cli

NODE = "a1b2c3d4e5f6a7b8c9d0"


def _fill() -> None:
    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    now = datetime.now(UTC)
    store.write_owner(
        OwnerRecord(
            "n1:101:aaaa",
            "n1",
            101,
            heartbeat=now,
            leases=2,
            details={"executor": "ray", "ray_node": NODE},
        )
    )
    store.write_owner(OwnerRecord("n2:202:bbbb", "n2", 202, heartbeat=now - timedelta(minutes=5), leases=1))
    store.write_owner(OwnerRecord("n3:303:cccc", "n3", 303, heartbeat=now, stopped=True))
    store.write_status(
        [
            StatusRecord("u:A:k", "RUNNING", "demo", owner="n1:101:aaaa"),
            StatusRecord("u:B:k", "STALE", "demo", owner="n2:202:bbbb"),
            StatusRecord("u:C:k", "STOPPED", "demo", owner="gone:404:dddd"),
            StatusRecord("u:D:k", "WAITING", "demo"),
        ]
    )


def test_hosts_lists_processes_by_heartbeat_alive_silent_and_with_all_stopped():
    _fill()
    out = run_cli("hosts", "--json")
    assert out.returncode == 0, out.stderr
    shown = {h["owner"]: (h["node"], h["leases"], h["state"]) for h in json.loads(out.stdout)}
    assert shown == {"n1:101:aaaa": (NODE, 2, "alive"), "n2:202:bbbb": (None, 1, "silent")}

    every = {h["owner"]: h["state"] for h in json.loads(run_cli("hosts", "--all", "--json").stdout)}
    assert every == {"n1:101:aaaa": "alive", "n2:202:bbbb": "silent", "n3:303:cccc": "stopped"}

    lines = run_cli("hosts").stdout.splitlines()
    assert lines[0].split() == ["OWNER", "NODE", "STRATEGIES", "LAST", "RENEWAL", "AGO", "STATE"]
    assert lines[1].split()[:3] == ["n1:101:aaaa", NODE[:12], "2"] and lines[1].split()[-1] == "alive"
    assert lines[2].split()[:3] == ["n2:202:bbbb", "-", "1"] and lines[2].split()[-1] == "silent"
    assert len(lines) == 3


def test_status_shows_where_each_strategy_runs():
    _fill()
    rows = {r["strategy_id"]: r for r in json.loads(run_cli("status", "--json").stdout)}
    assert {s: (r["host"], r["pid"], r["node"], r["state"]) for s, r in rows.items()} == {
        "u:A:k": ("n1", 101, NODE, "RUNNING"),
        "u:B:k": ("n2", 202, None, "STALE"),
        "u:C:k": (None, None, None, "STOPPED"),  # its owner left no record
        "u:D:k": (None, None, None, "STALE"),
    }
    table = {line.split()[0]: line for line in run_cli("status").stdout.splitlines()[1:] if line.strip()}
    assert table["u:A:k"].rstrip().endswith(f"n1:101 node {NODE[:12]}")
    assert table["u:B:k"].rstrip().endswith("n2:202")
    assert table["u:D:k"].rstrip().endswith("-")


def test_hosts_before_any_run_says_so():
    open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"])).upsert_strategy(
        {"user_id": "u", "symbol": "A", "strategy_key": "k", "engine": "demo"}
    )
    out = run_cli("hosts")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no orchestrator has run against this store (--all: stopped ones too)"
