"""The orchestrator against the real embedded store, real plugins and a simulated clock."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from strategy_manager.core.clock import SimClock, SystemClock
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import wait_for
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)

CST = timezone(timedelta(hours=8))


class Events:
    def __init__(self, clock):
        self.clock = clock
        self.items: list[tuple[datetime, str, str, str]] = []
        self.changed = threading.Condition()

    def __call__(self, kind, ident, detail):
        with self.changed:
            self.items.append((self.clock.now(), kind, ident, detail))
            self.changed.notify_all()

    def of(self, ident, kind=None):
        return [(t, k, d) for t, k, i, d in self.items if i == ident and (kind is None or k == kind)]

    def wait_for(self, ident, kind, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.of(ident, kind)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} x{count} for {ident}; saw {self.of(ident)}")
                self.changed.wait(left)
        return self.of(ident, kind)


@pytest.fixture(params=["embedded", "mongodb"])
def any_settings(request, settings, tmp_path):
    """The same settings over each store: embedded SQLite, or pymongo to the wire server."""
    if request.param == "embedded":
        return settings
    uri = request.getfixturevalue("mongoeco_uri")
    return attrs.evolve(settings, mongo_uri=uri, mongo_db=f"orch_{tmp_path.name[-20:]}")


@pytest.fixture
def settings(tmp_path):
    return Settings(
        data_dir=str(tmp_path / "data"),
        poll_interval=0.2,
        resync_interval=5,
        snapshot_interval=3600,
        backoff_base=0.01,
        backoff_cap=0.05,
        stop_timeout=5,
        engine_class_allow=("tests.core.user_engines",),
    )


def doc(symbol, key="k", engine="demo", params=None, **extra):
    return {
        "user_id": "u",
        "symbol": symbol,
        "strategy_key": key,
        "engine": engine,
        "params": params or {},
        **extra,
    }


def orchestrator(settings, clock, store=None):
    store = store or open_store(settings)
    events = Events(clock)
    return MultiStrategyOrchestrator(settings, store, clock=clock, on_event=events), store, events


def at(events, ident, kind, index=0):
    return events.of(ident, kind)[index][0].astimezone(CST)


def near(actual, hour, minute, late=timedelta(minutes=10)):
    """Never early (a transition before its time is a bug); late by at most ``late``
    (the control loop's wake-up, magnified by the simulated clock's speed)."""
    expected = actual.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return expected - timedelta(seconds=1) <= actual <= expected + late


@pytest.mark.slow
def test_a_simulated_xshg_day_follows_warm_up_break_and_close_and_resumes_next_day(settings):
    pause = "u:002050.SZ:k"
    keep = "u:600000.SH:k"
    store = open_store(settings)
    store.upsert_strategy(doc("002050.SZ", params={"bar_seconds": 60}, schedule={"lunch_break": "pause"}))
    store.upsert_strategy(doc("600000.SH", params={"bar_seconds": 60}))
    clock = SimClock(datetime(2026, 11, 24, 9, 20, tzinfo=CST), speed=2000)
    orch, _, events = orchestrator(settings, clock, store)
    orch.run(seconds=(15 * 60 + 10 - (9 * 60 + 20)) * 60)  # until 15:10

    assert near(at(events, pause, "started"), 9, 25)  # open 09:30 minus 5 minutes warm-up
    assert near(at(events, keep, "started"), 9, 25)
    assert near(at(events, pause, "paused"), 11, 30)
    assert near(at(events, pause, "started", 1), 13, 0)
    assert events.of(keep, "paused") == []  # keep_running runs through the break
    assert near(at(events, pause, "closed"), 15, 5)
    assert near(at(events, keep, "closed"), 15, 5)
    # Every stop left a snapshot: pause at 11:30 and close at 15:05.
    history = store.snapshot_history(pause, limit=10)
    assert len(history) >= 2
    # The afternoon continued from the morning's state (how many bars a session gets
    # depends on the machine's load: the bar thread runs in real time slices).
    assert "restored snapshot" in events.of(pause, "started")[1][2]
    bars_at_close = store.latest_snapshot(pause).state["bar"]
    seq_at_close = store.latest_snapshot(pause).seq
    assert bars_at_close > 0

    # The next day, a new process: the first start restores the last snapshot.
    clock2 = SimClock(datetime(2026, 11, 25, 9, 20, tzinfo=CST), speed=2000)
    orch2, _, events2 = orchestrator(settings, clock2, store)
    orch2.start()
    events2.wait_for(pause, "started")
    assert "restored snapshot" in events2.of(pause, "started")[0][2]
    # It counts on from where it stopped (a periodic snapshot shows its next bars).
    wait_for(lambda: store.latest_snapshot(pause).state["bar"] > bars_at_close, 30, "bars after the restore")
    orch2.stop()
    later = [s for s in store.snapshot_history(pause, limit=50) if s.seq > seq_at_close]
    assert later and min(s.state["bar"] for s in later) >= bars_at_close


def test_editing_the_schedule_restarts_only_that_worker_with_its_state(any_settings):
    settings = attrs.evolve(any_settings, poll_interval=0.5)
    clock = SystemClock()
    orch, store, events = orchestrator(settings, clock)
    for symbol in ("A", "B"):
        store.upsert_strategy(doc(symbol, params={"bar_seconds": 0.01}, schedule={"mode": "always"}))
    orch.start()
    try:
        events.wait_for("u:A:k", "started")
        events.wait_for("u:B:k", "started")
        time.sleep(0.2)
        t0 = time.monotonic()
        store.update_strategy("u:A:k", {"schedule": {"mode": "always", "lunch_break": "keep_running"}})
        events.wait_for("u:A:k", "started", count=2)
        elapsed = time.monotonic() - t0
        assert "restored snapshot" in events.of("u:A:k", "started")[1][2]
        assert len(events.of("u:B:k", "started")) == 1  # untouched
        # Seen by the poll, not healed by a resync (how quick it is, is benchmarks/run.py's)
        assert elapsed < settings.resync_interval

        store.update_strategy("u:A:k", {"enabled": False})
        events.wait_for("u:A:k", "stopped", count=2)
        bar_when_disabled = store.latest_snapshot("u:A:k").state["bar"]
        store.update_strategy("u:A:k", {"enabled": True})
        events.wait_for("u:A:k", "started", count=3)
        time.sleep(0.1)
        assert orch.slots["u:A:k"].worker.snapshot()["bar"] >= bar_when_disabled
        assert f"#{store.latest_snapshot('u:A:k').seq}" in events.of("u:A:k", "started")[2][2]
    finally:
        orch.stop()


def test_editing_a_demo_strategys_params_applies_them_without_a_restart(settings):
    orch, store, events = orchestrator(settings, SystemClock())
    store.upsert_strategy(doc("A", params={"bar_seconds": 0.01}, schedule={"mode": "always"}))
    orch.start()
    try:
        events.wait_for("u:A:k", "started")
        engine = orch.slots["u:A:k"].worker.engine
        wait_for(lambda: engine.snapshot()["bar"] >= 3, 10, "a few bars")
        bar = engine.snapshot()["bar"]
        store.update_strategy("u:A:k", {"params": {"bar_seconds": 0.01, "fast": 3, "slow": 7}})
        events.wait_for("u:A:k", "reload")
        assert events.of("u:A:k", "reload")[0][2] == "params applied in place, without a restart"
        assert orch.slots["u:A:k"].worker.engine is engine and (engine.fast, engine.slow) == (3, 7)
        assert engine.snapshot()["bar"] >= bar  # the same run goes on
        assert len(events.of("u:A:k", "started")) == 1
    finally:
        orch.stop()


def test_programmatic_api_writes_the_store_and_reconcile_acts(any_settings):
    settings = any_settings
    orch, store, events = orchestrator(settings, SystemClock())
    orch.start()
    try:
        ident = orch.add_strategy(
            "002050.SZ",
            "hidden_dragon",
            engine="demo",
            params={"bar_seconds": 0.05},
            schedule={"mode": "always"},
        )
        assert ident == "default:002050.SZ:hidden_dragon"
        assert store.get_strategy(ident)["params"] == {"bar_seconds": 0.05}
        events.wait_for(ident, "started")
        assert [w["state"] for w in orch.list_workers()] == ["RUNNING"]
        assert orch.remove_strategy("002050.SZ", "hidden_dragon")
        events.wait_for(ident, "stopped")
        deadline = time.monotonic() + 5
        while orch.list_workers() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert orch.list_workers() == []
    finally:
        orch.stop()


def test_a_crash_loop_ends_failed_while_others_keep_running(settings):
    settings = attrs.evolve(settings, restart_max=3)
    orch, store, events = orchestrator(settings, SystemClock())
    store.upsert_strategy(
        doc(
            "BAD",
            engine="python",
            engine_class="tests.core.user_engines.Counter",
            params={"fail_start": True},
            schedule={"mode": "always"},
        )
    )
    store.upsert_strategy(doc("GOOD", params={"bar_seconds": 0.01}, schedule={"mode": "always"}))
    orch.start()
    try:
        events.wait_for("u:BAD:k", "failed", timeout=15)
        assert len(events.of("u:BAD:k", "error")) == 3
        assert "exchange login refused" in events.of("u:BAD:k", "failed")[0][2]
        assert orch.slots["u:GOOD:k"].running
        orch._flush_status()
        status = {r.strategy_id: r for r in store.read_status()}
        assert status["u:BAD:k"].state == "FAILED"
        assert "exchange login refused" in status["u:BAD:k"].last_error
        assert status["u:BAD:k"].restarts == 3
        # It stays failed until its document changes.
        time.sleep(0.3)
        assert orch.slots["u:BAD:k"].state == "FAILED"
        store.update_strategy("u:BAD:k", {"params": {}})
        events.wait_for("u:BAD:k", "started")
    finally:
        orch.stop()


def test_a_halted_engine_is_failed_at_once_without_restarts(settings):
    orch, store, events = orchestrator(settings, SystemClock())
    store.upsert_strategy(
        doc(
            "HALT",
            engine="python",
            engine_class="tests.core.user_engines.Counter",
            params={"halt": True},
            schedule={"mode": "always"},
        )
    )
    orch.start()
    try:
        events.wait_for("u:HALT:k", "halted", timeout=15)
        time.sleep(0.3)  # backoff_base is 0.01 s: a restart would have come by now
        assert events.of("u:HALT:k", "error") == [] and events.of("u:HALT:k", "started") == []
        orch._flush_status()
        status = {r.strategy_id: r for r in store.read_status()}["u:HALT:k"]
        assert status.state == "FAILED" and status.restarts == 0
        assert "broker reports 3 lots, the snapshot 2" in status.last_error
        store.update_strategy("u:HALT:k", {"params": {}})  # a changed document tries again
        events.wait_for("u:HALT:k", "started")
    finally:
        orch.stop()


def test_invalid_and_unrunnable_documents_are_reported_and_the_rest_run(settings):
    orch, store, events = orchestrator(settings, SystemClock())
    store.upsert_strategy(doc("OK", params={"bar_seconds": 0.05}, schedule={"mode": "always"}))
    store.upsert_strategy(doc("NOENGINE", engine="ib", schedule={"mode": "always"}))
    store.upsert_strategy(doc("BADPARAM", params={"fast": "x"}, schedule={"mode": "always"}))
    store.upsert_strategy(
        doc("BADCLASS", engine="python", engine_class="os.system", schedule={"mode": "always"})
    )
    orch.start()
    try:
        events.wait_for("u:OK:k", "started")
        # Refused by their engine's check, at once: BLOCKED with the reason, never retried.
        events.wait_for("u:BADPARAM:k", "blocked")
        events.wait_for("u:BADCLASS:k", "blocked")
        orch._flush_status()
        status = {r.strategy_id: r for r in store.read_status()}
        assert status["u:OK:k"].state == "RUNNING"
        assert status["u:NOENGINE:k"].state == "BLOCKED"
        assert "engine 'ib' is not installed" in status["u:NOENGINE:k"].last_error
        assert status["u:BADPARAM:k"].state == "BLOCKED"
        assert "'fast' must be an integer" in status["u:BADPARAM:k"].last_error
        assert status["u:BADCLASS:k"].state == "BLOCKED" and "refused" in status["u:BADCLASS:k"].last_error
        for ident in ("u:BADPARAM:k", "u:BADCLASS:k"):
            assert events.of(ident, "error") == [] and events.of(ident, "started") == []
        # Fixing the document runs it.
        store.update_strategy("u:BADPARAM:k", {"params": {"fast": 3, "bar_seconds": 0.05}})
        events.wait_for("u:BADPARAM:k", "started")
    finally:
        orch.stop()


def test_past_the_calendars_last_session_it_warns_and_falls_back_to_weekdays(settings, caplog):
    caplog.set_level(logging.WARNING, logger="strategy_manager.schedule")
    clock = SimClock(datetime(2027, 1, 5, 9, 20, tzinfo=CST), speed=600)
    orch, store, events = orchestrator(settings, clock)
    store.upsert_strategy(doc("002050.SZ", params={"bar_seconds": 60}))
    orch.start()
    try:
        events.wait_for("u:002050.SZ:k", "started", timeout=10)
    finally:
        orch.stop()
    assert near(at(events, "u:002050.SZ:k", "started"), 9, 25)
    assert "calendar XSHG had no sessions after 2026-12-31" in caplog.text


def test_past_the_last_session_with_policy_stop_nothing_runs(settings, caplog):
    caplog.set_level(logging.WARNING, logger="strategy_manager.schedule")
    settings = attrs.evolve(settings, calendar_end_policy="stop")
    clock = SimClock(datetime(2027, 1, 5, 9, 20, tzinfo=CST), speed=600)
    orch, store, events = orchestrator(settings, clock)
    store.upsert_strategy(doc("002050.SZ"))
    orch.start()
    time.sleep(2)  # 20 simulated minutes, past the usual warm-up start
    orch.stop()
    assert events.of("u:002050.SZ:k", "started") == []
    assert "running nothing after it (calendar_end_policy=stop)" in caplog.text


def test_a_holiday_override_closes_a_session(settings):
    settings = attrs.evolve(settings, holidays={"XSHG": ("2026-11-24",)})
    clock = SimClock(datetime(2026, 11, 24, 9, 20, tzinfo=CST), speed=600)
    orch, store, events = orchestrator(settings, clock)
    store.upsert_strategy(doc("002050.SZ"))
    orch.start()
    time.sleep(1.5)
    orch.stop()
    assert events.of("u:002050.SZ:k", "started") == []
    assert orch.slots["u:002050.SZ:k"].phase.until.astimezone(CST).date().isoformat() == "2026-11-25"


def test_an_engine_that_finishes_while_starting_stays_finished(settings):
    """The finished report comes before the started one; the status must not say
    RUNNING about an engine that has ended (it did, 3 times of 3, before)."""
    orch, store, events = orchestrator(settings, SystemClock())
    store.upsert_strategy(
        doc(
            "DONE",
            engine="python",
            engine_class="tests.core.user_engines.FinishesWhileStarting",
            schedule={"mode": "always"},
        )
    )
    orch.start()
    try:
        events.wait_for("u:DONE:k", "finished")
        wait_for(
            lambda: {r.strategy_id: r.state for r in store.read_status()}.get("u:DONE:k") == "FINISHED",
            10,
            "FINISHED in the store",
        )
    finally:
        orch.stop()
    assert orch.slots["u:DONE:k"].state == "FINISHED"
    assert {r.strategy_id: r.state for r in store.read_status()}["u:DONE:k"] == "FINISHED"
    assert events.of("u:DONE:k", "started") == []  # it never ran as far as anyone can see


def test_an_error_between_two_turns_of_the_control_loop_does_not_end_it(settings, monkeypatch, caplog):
    orch, store, events = orchestrator(settings, SystemClock())
    failures = []
    original = orch.telemetry.loop_turned

    def loop_turned(late, took):
        if not failures:
            failures.append("once")
            raise RuntimeError("telemetry broke")
        original(late, took)

    monkeypatch.setattr(orch.telemetry, "loop_turned", loop_turned)
    orch.start()
    try:
        wait_for(lambda: failures, 10, "the first turn's telemetry")
        store.upsert_strategy(doc("002050.SZ", "after", schedule={"mode": "always"}))
        orch.wake()
        events.wait_for("u:002050.SZ:after", "started")
        assert "telemetry broke" in caplog.text and orch._thread.is_alive()
    finally:
        orch.stop()
