"""Engines that misbehave: the orchestrator reports them and keeps its own promises."""

from __future__ import annotations

import time

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store


def test_a_hung_stop_and_a_stubborn_thread_are_reported_and_shutdown_stays_bounded(tmp_path):
    from tests.core.user_engines import HangsInStop, Stubborn

    HangsInStop.release.clear()  # other tests may have released them
    Stubborn.release.clear()

    settings = Settings(
        data_dir=str(tmp_path),
        poll_interval=0.05,
        stop_timeout=0.5,
        engine_class_allow=("tests.core.user_engines",),
    )
    store = open_store(settings)
    for symbol, cls in (("HANG", "HangsInStop"), ("STUB", "Stubborn"), ("OK", None)):
        doc = {"user_id": "u", "symbol": symbol, "strategy_key": "k", "schedule": {"mode": "always"}}
        if cls:
            doc |= {"engine": "python", "engine_class": f"tests.core.user_engines.{cls}"}
        else:
            doc |= {"engine": "demo", "params": {"bar_seconds": 0.01}}
        store.upsert_strategy(doc)
    events = []
    orch = MultiStrategyOrchestrator(
        settings, store, clock=SystemClock(), on_event=lambda k, i, d: events.append((k, i, d))
    )
    orch.start()
    deadline = time.monotonic() + 10
    while sum(k == "started" for k, _, _ in events) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # Edits restart the two: their stops must not hold up the loop or the others.
    store.update_strategy("u:HANG:k", {"params": {"x": 1}})
    store.update_strategy("u:STUB:k", {"params": {"x": 1}})
    deadline = time.monotonic() + 10
    while sum(k == "warning" for k, _, _ in events) < 2:
        assert time.monotonic() < deadline, events
        time.sleep(0.02)
    assert orch.slots["u:OK:k"].running
    t0 = time.monotonic()
    orch.stop()
    assert time.monotonic() - t0 < 3 * settings.stop_timeout + 1
    warnings = {i: d for k, i, d in events if k == "warning"}
    assert "stop did not return within 0.5s" in warnings["u:HANG:k"]
    assert "engine threads still running after stop" in warnings["u:STUB:k"]
    HangsInStop.release.set()
    Stubborn.release.set()
