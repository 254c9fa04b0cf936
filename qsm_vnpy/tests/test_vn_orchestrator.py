"""The oracle through the orchestrator and its store: a stop and restart of the
orchestrator (DoubleMa part-way; AtrRsi and Turtle at a session's last bar with a
stop order working), a SIGKILLed orchestrator process restarted, and the resume
check's ``halt`` as the status shows it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from vn_support import (
    GAPPED_REPLAYED,
    REPLAYED,
    STOP_STRATEGIES,
    document,
    session_end_with_a_stop_working,
    trades,
)

from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from strategy_manager.testing import wait_for_snapshot


def played(state: dict[str, Any]) -> int:
    return int(state["gateway"]["bars"])


def test_through_the_orchestrator_with_a_restart(tmp_path, bars_csv, oracle):
    settings = Settings(data_dir=str(tmp_path / "data"), poll_interval=0.1, snapshot_interval=3600)
    store = open_store(settings)
    store.upsert_strategy(document("whole", bars_csv))
    store.upsert_strategy(document("held", bars_csv, hold_after_bars=1200))

    first = MultiStrategyOrchestrator(settings, store)
    first.start()
    try:
        whole = wait_for_snapshot(store, "u:002050.SZ:whole", lambda s: played(s) == REPLAYED)
        assert trades(whole.state) == oracle
        deadline = time.monotonic() + 60
        while not _holding(first, "u:002050.SZ:held") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.stop()
    assert played(store.latest_snapshot("u:002050.SZ:held").state) == 1200

    second = MultiStrategyOrchestrator(settings, store)
    second.start()
    try:
        done = wait_for_snapshot(store, "u:002050.SZ:held", lambda s: played(s) == REPLAYED)
    finally:
        second.stop()
    assert trades(done.state) == oracle


@pytest.mark.parametrize("name", sorted(STOP_STRATEGIES))
def test_stopped_at_a_sessions_end_with_a_stop_order_working_and_restarted(
    tmp_path, gapped_csv, stop_oracles, name
):
    oracle = stop_oracles[name]
    at, _ = session_end_with_a_stop_working(oracle)
    settings = Settings(data_dir=str(tmp_path / "data"), poll_interval=0.1, snapshot_interval=3600)
    store = open_store(settings)
    ident = "u:002050.SZ:held"
    store.upsert_strategy(
        document("held", gapped_csv, STOP_STRATEGIES[name], {}, hold_after_bars=at, history_limit=5000)
    )

    first = MultiStrategyOrchestrator(settings, store)
    first.start()
    try:
        deadline = time.monotonic() + 60
        while not _holding(first, ident) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.stop()
    held = store.latest_snapshot(ident).state
    assert played(held) == at and held["stop_orders"]

    second = MultiStrategyOrchestrator(settings, store)
    second.start()
    try:
        done = wait_for_snapshot(store, ident, lambda s: played(s) == GAPPED_REPLAYED)
    finally:
        second.stop()
    assert trades(done.state) == oracle.trades


def _holding(orchestrator: MultiStrategyOrchestrator, ident: str) -> bool:
    slot = orchestrator.slots.get(ident)
    engine = slot.worker.engine if slot is not None and slot.worker is not None else None
    return engine is not None and engine.stream is not None and engine.stream.holding.is_set()


def test_a_position_mismatch_halts_the_strategy_and_the_status_shows_both_numbers(tmp_path, bars_csv):
    settings = Settings(data_dir=str(tmp_path / "data"), poll_interval=0.1, snapshot_interval=3600)
    store = open_store(settings)
    store.upsert_strategy(document("gate", bars_csv, hold_after_bars=600))
    first = MultiStrategyOrchestrator(settings, store)
    first.start()
    try:
        deadline = time.monotonic() + 60
        while not _holding(first, "u:002050.SZ:gate") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.stop()
    saved = store.latest_snapshot("u:002050.SZ:gate").state
    pos = saved["variables"]["pos"]
    assert pos != 0, "the test needs a position at bar 600"

    # the broker now reports something else; the default policy is halt
    store.upsert_strategy(document("gate", bars_csv, hold_after_bars=600, position=pos + 3))
    second = MultiStrategyOrchestrator(settings, store)
    events: list[tuple[str, str, str]] = []
    second.on_event = lambda kind, ident, detail: events.append((kind, ident, detail))
    second.start()
    try:
        deadline = time.monotonic() + 60
        while not any(e[0] == "halted" for e in events) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # no restart may follow a halt
        status = _status_row(store, "u:002050.SZ:gate", "FAILED")
    finally:
        second.stop()
    assert [e[0] for e in events].count("halted") == 1
    assert [e for e in events if e[0] in ("started", "error")] == []
    assert f"the snapshot has pos {pos:g}, gateway REPLAY reports {pos + 3:g}" in status.last_error
    # the halted strategy's snapshot is kept as it was
    assert store.latest_snapshot("u:002050.SZ:gate").state == saved


def _status_row(store: Any, ident: str, state: str, timeout: float = 10) -> Any:
    """The strategy's row as ``strategy-manager status`` reads it from the store."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = {r.strategy_id: r for r in store.read_status()}
        if ident in rows and rows[ident].state == state:
            return rows[ident]
        time.sleep(0.1)
    raise AssertionError(f"status of {ident} never became {state}: {rows.get(ident)}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["double_ma", *sorted(STOP_STRATEGIES)])
def test_a_sigkilled_orchestrator_resumes_exactly(tmp_path, request, name):
    if name == "double_ma":
        csv, total, expected = (
            request.getfixturevalue("bars_csv"),
            REPLAYED,
            request.getfixturevalue("oracle"),
        )
        doc = document("k", csv, pace=1500)
    else:
        csv, total = request.getfixturevalue("gapped_csv"), GAPPED_REPLAYED
        expected = request.getfixturevalue("stop_oracles")[name].trades
        doc = document("k", csv, STOP_STRATEGIES[name], {}, pace=2000, history_limit=5000)
    data = tmp_path / "data"
    (tmp_path / "config").mkdir()  # an empty config folder: nothing of the developer's is read
    env = {
        **os.environ,
        "QSM_DATA_DIR": str(data),
        "QSM_SNAPSHOT_INTERVAL": "0.2",
        "QSM_CONFIG_DIR": str(tmp_path / "config"),
    }
    store = open_store(Settings(data_dir=str(data)))
    store.upsert_strategy(doc)
    command = [sys.executable, "-m", "strategy_manager.cli", "run", "--poll-interval", "0.1"]

    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_snapshot(store, "u:002050.SZ:k", lambda s: played(s) > 500)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    at_kill = store.latest_snapshot("u:002050.SZ:k")
    assert 0 < played(at_kill.state) < total

    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        done = wait_for_snapshot(store, "u:002050.SZ:k", lambda s: played(s) == total)
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    assert f"restored snapshot #{at_kill.seq}" in out, out
    assert trades(done.state) == expected
