"""A running CTA strategy takes edited class parameters in place (vnpy's
``edit_strategy``); an edit of the adapter's own settings restarts it."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from vn_support import PARAMS, document

from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store

SID = "u:002050.SZ:k"


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_class_parameters_apply_in_place_and_a_gateway_edit_restarts(tmp_path, bars_csv):
    settings = Settings(data_dir=str(tmp_path / "data"), poll_interval=0.05, snapshot_interval=3600)
    store = open_store(settings)
    original = document("k", bars_csv, hold_after_bars=300)
    store.upsert_strategy(original)
    events: list[tuple[str, str]] = []
    seen = threading.Condition()

    def on_event(kind: str, ident: str, detail: str) -> None:
        with seen:
            events.append((kind, detail))
            seen.notify_all()

    def count(kind: str) -> int:
        return sum(k == kind for k, _ in events)

    orch = MultiStrategyOrchestrator(settings, store, on_event=on_event)
    orch.start()
    try:
        wait_for(lambda: count("started") == 1, 120, "the start")
        engine = orch.slots[SID].worker.engine
        assert engine.stream.holding.wait(60), "the replay never reached bar 300"
        strategy = engine.cta.strategies[SID]
        assert (strategy.fast_window, strategy.slow_window) == (PARAMS["fast_window"], PARAMS["slow_window"])

        edited = copy.deepcopy(original["params"])
        edited["fast_window"] = 5
        del edited["slow_window"]  # back to the class's default, as on a fresh start
        store.update_strategy(SID, {"params": edited})
        wait_for(lambda: count("reload") == 1, 60, "the in-place edit")
        assert events[-1] == ("reload", "params applied in place, without a restart")
        assert orch.slots[SID].worker.engine is engine and engine.cta.strategies[SID] is strategy
        assert (strategy.fast_window, strategy.slow_window) == (5, type(strategy).slow_window)
        assert strategy.trading and count("started") == 1
        assert orch.slots[SID].worker.snapshot()["gateway"]["bars"] == 300  # the same replay, not restarted

        moved = copy.deepcopy(edited)
        moved["vnpy"]["gateway"]["setting"]["hold_after_bars"] = 400
        store.update_strategy(SID, {"params": moved})
        wait_for(lambda: count("started") == 2, 120, "the restart")
        assert [d for k, d in events if k == "reload"][1] == (
            "document changed; restarting with the new spec (the engine cannot take these params in place)"
        )
        fresh = orch.slots[SID].worker.engine
        assert fresh is not engine and fresh.cta.strategies[SID].fast_window == 5
    finally:
        orch.stop()
