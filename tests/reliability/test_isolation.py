"""One bad row or one bad engine affects only itself.

Each scenario runs a real ``strategy-manager run`` process with five good strategies,
does the damage while it runs, and then checks that the good strategies keep
snapshotting, the process keeps renewing its leases, a strategy added afterwards
still starts, the bad one is reported against itself, and SIGTERM still ends the
process within ``stop_timeout`` plus the shutdown margin.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from strategy_manager.core.orchestrator import SHUTDOWN_MARGIN_SECONDS
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import run_cli, wait_for
from tests.reliability.harness import demo_document, run_env, spawn_run

STOP_TIMEOUT = 2.0
#: Interpreter start-up and exit on a loaded machine, on top of the orchestrator's bound.
SLACK = 4.0
BAD = "tests.reliability.bad_engines"


class Fleet:
    """Five good demo strategies under one ``run`` process on the embedded store."""

    def __init__(self, tmp_path: Path, **settings: object) -> None:
        self.tmp = tmp_path
        self.data = tmp_path / "data"
        self.settings = Settings(data_dir=str(self.data))
        self.store = open_store(self.settings)
        self.good = [f"g:F{i}:k" for i in range(5)]
        for i in range(len(self.good)):
            self.store.upsert_strategy(demo_document(i, "g", bar_seconds=0.01))
        self.env = run_env(
            self.data,
            snapshot_interval=0.3,
            lease_seconds=3,
            lease_renew_seconds=0.5,
            stop_timeout=STOP_TIMEOUT,
            start_timeout=3,
            snapshot_timeout=2,
            engine_class_allow=BAD,
            **settings,
        )
        self.log = tmp_path / "run.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        before = {i: self.seq(i) for i in self.good}
        self.proc = spawn_run(self.env, self.log)
        wait_for(self.heartbeat, 30, "the process's first heartbeat")
        wait_for(
            lambda: all(self.seq(i) > before[i] for i in self.good), 30, "snapshots of the good strategies"
        )

    def seq(self, ident: str) -> int:
        snap = self.store.latest_snapshot(ident)
        return snap.seq if snap else 0

    def heartbeat(self) -> datetime | None:
        assert self.proc is not None
        mine = [o for o in self.store.read_owners() if o.pid == self.proc.pid]
        return mine[0].heartbeat if mine else None

    def status(self, ident: str) -> object:
        return next((r for r in self.store.read_status() if r.strategy_id == ident), None)

    def bad_engine(self, symbol: str, cls: str) -> str:
        self.store.upsert_strategy(
            {
                "user_id": "b",
                "symbol": symbol,
                "strategy_key": "k",
                "engine": "python",
                "engine_class": f"{BAD}.{cls}",
                "schedule": {"mode": "always"},
            }
        )
        return f"b:{symbol}:k"

    def assert_unaffected(self) -> None:
        """The good strategies snapshot on, leases renew on, a new strategy starts."""
        before = {i: self.seq(i) for i in self.good}
        beat = self.heartbeat()
        wait_for(
            lambda: all(self.seq(i) >= before[i] + 3 for i in self.good), 30, "good strategies snapshotting"
        )
        wait_for(
            lambda: (h := self.heartbeat()) is not None and beat is not None and h > beat, 10, "renewals"
        )
        self.store.upsert_strategy(demo_document(99, "g", bar_seconds=0.01))
        wait_for(lambda: self.seq("g:F99:k") >= 1, 30, "a strategy added after the damage starting")
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]

    def stop_within_bound(self) -> str:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT + SHUTDOWN_MARGIN_SECONDS + SLACK)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"no exit {time.monotonic() - t0:.1f}s after SIGTERM") from None
        return self.log.read_text()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def raw(self, sql: str, *args: object) -> None:
        with sqlite3.connect(self.settings.embedded_path) as db:
            db.execute(sql, args)


def _insert_row(fleet: Fleet, ident: str, key: tuple[str, str, str], document: str) -> None:
    fleet.raw(
        "INSERT INTO watchlist_strategies (id, user_id, symbol, strategy_key, document, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        ident,
        *key,
        document,
        datetime.now(UTC).isoformat(timespec="milliseconds"),
    )


def _listed_invalid(fleet: Fleet, needle: str) -> str:
    out = run_cli("strategies", "list", env={"QSM_DATA_DIR": str(fleet.data)})
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if needle in line]
    assert lines and "INVALID" in lines[0], out.stdout
    return lines[0]


# -- bad rows -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "document", "reason"),
    [
        ("notjson", "{not json", "not valid JSON"),
        ("deep", "[" * 100_000 + "]" * 100_000, "nests deeper than"),
        ("notobject", "[1, 2, 3]", "not an object"),
    ],
)
def test_a_row_that_does_not_decode_is_reported_alone(tmp_path, name, document, reason):
    fleet = Fleet(tmp_path)
    try:
        fleet.start()
        _insert_row(fleet, f"row-{name}", ("b", name, "k"), document)
        fleet.assert_unaffected()
        wait_for(lambda: fleet.status(f"b:{name}:k"), 10, "the bad row's status")
        status = fleet.status(f"b:{name}:k")
        assert status.state == "BLOCKED" and reason in status.last_error
        assert reason in _listed_invalid(fleet, f"b:{name}:k")
        log = fleet.stop_within_bound()
        assert log.count("Traceback") == 0, log[-2000:]
        # and a restart over the same store works as well
        fleet.start()
        fleet.assert_unaffected()
        fleet.stop_within_bound()
    finally:
        fleet.kill()


@pytest.mark.slow
def test_a_row_whose_document_claims_another_strategys_key_does_not_touch_that_strategy(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        fleet.start()
        hostile = {**demo_document(0, "g"), "enabled": False}  # says it is g:F0:k, disabled
        import json

        _insert_row(fleet, "row-evil", ("b", "EVIL", "k"), json.dumps(hostile))
        fleet.assert_unaffected()
        assert fleet.status("g:F0:k").state == "RUNNING"
        wait_for(lambda: fleet.status("b:EVIL:k"), 10, "the hostile row's status")
        assert "do not match its row" in fleet.status("b:EVIL:k").last_error
        fleet.stop_within_bound()
    finally:
        fleet.kill()


@pytest.mark.slow
def test_a_hand_edited_text_seq_stops_no_snapshot(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        fleet.start()
        fleet.raw(
            "INSERT INTO strategy_snapshots (strategy_id, seq, taken_at, engine, state) VALUES (?, ?, ?, ?, ?)",
            "g:F0:k",
            "not a number",
            "2026-11-28T00:00:00.000+00:00",
            "demo",
            "{}",
        )
        fleet.assert_unaffected()  # g:F0:k included
        fleet.stop_within_bound()
    finally:
        fleet.kill()


# -- bad engines --------------------------------------------------------------------


@pytest.mark.slow
def test_a_snapshot_that_never_returns_fails_its_strategy_alone(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        bad = fleet.bad_engine("BLOCK", "BlocksInSnapshot")
        fleet.start()
        wait_for(lambda: (s := fleet.status(bad)) and s.state == "FAILED", 30, "the blocked engine FAILED")
        assert "snapshot did not return within 2s" in fleet.status(bad).last_error
        fleet.assert_unaffected()
        fleet.stop_within_bound()
    finally:
        fleet.kill()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "reason"), [("DeepSnapshot", "nests deeper"), ("CyclicSnapshot", "refers to itself")]
)
def test_a_deep_or_cyclic_snapshot_is_reported_against_its_strategy_alone(tmp_path, cls, reason):
    fleet = Fleet(tmp_path)
    try:
        bad = fleet.bad_engine(cls, cls)
        fleet.start()
        wait_for(
            lambda: (s := fleet.status(bad)) and reason in (s.last_error or ""),
            30,
            "the bad snapshot reported",
        )
        fleet.assert_unaffected()
        fleet.stop_within_bound()
    finally:
        fleet.kill()


@pytest.mark.slow
def test_a_leaked_non_daemon_thread_does_not_keep_the_process_alive(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        fleet.bad_engine("LEAK", "LeaksThread")
        fleet.start()
        wait_for(lambda: (s := fleet.status("b:LEAK:k")) and s.state == "RUNNING", 30, "the leaking engine")
        fleet.assert_unaffected()
        log = fleet.stop_within_bound()
        assert "exiting despite threads an engine left running: leaked-by-engine" in log
    finally:
        fleet.kill()


@pytest.mark.slow
def test_engines_hanging_in_start_cannot_use_up_the_hook_pool(tmp_path):
    fleet = Fleet(tmp_path, hook_threads=4)
    try:
        hung = [fleet.bad_engine(f"HANG{i}", "HangsInStart") for i in range(6)]  # more than the pool
        fleet.start()
        wait_for(
            lambda: all((s := fleet.status(h)) and s.state == "FAILED" for h in hung),
            30,
            "the hung starts FAILED",
        )
        assert "start did not return within 3s" in fleet.status(hung[0]).last_error
        fleet.assert_unaffected()
        fleet.stop_within_bound()
    finally:
        fleet.kill()


# -- the store itself -------------------------------------------------------------------


@pytest.mark.slow
def test_a_deleted_store_file_stops_the_orchestrator_with_one_clear_line(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        fleet.start()
        fleet.settings.embedded_path.unlink()
        assert fleet.proc is not None
        code = fleet.proc.wait(30)
        log = fleet.log.read_text()
        assert code == 1, log[-2000:]
        assert "error: embedded store" in log and "was deleted or replaced while open" in log
    finally:
        fleet.kill()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("QSM_LEASE_SECONDS", "0", "setting lease_seconds: must be positive"),
        ("QSM_LEASE_SECONDS", "-5", "setting lease_seconds: must be a number from 0"),
        ("QSM_LEASE_SECONDS", "nan", "setting lease_seconds: must be a number"),
        ("QSM_SNAPSHOT_INTERVAL", "Infinity", "setting snapshot_interval: must be a number"),
        ("QSM_RESTART_MAX", "-1", "setting restart_max: must be a number"),
        ("QSM_SNAPSHOT_HISTORY", "0", "setting snapshot_history: must be a number from 1"),
        ("QSM_LEASE_RENEW_SECONDS", "10", "setting lease_seconds: must be at least 3 x lease_renew_seconds"),
    ],
)
def test_settings_that_break_safety_are_refused_in_one_line(tmp_path, variable, value, message):
    out = run_cli("run", "--for", "1s", env={"QSM_DATA_DIR": str(tmp_path), variable: value})
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(f"error: {message}") and out.stderr.count("\n") == 1, out.stderr
