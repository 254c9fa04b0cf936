"""Through the core's EngineWorker (what the orchestrator drives): the plugin found by
its entry point, its class prefixes merged into the allow-list, the core's order of
calls (snapshot, then stop), and a restart restoring the saved snapshot."""

from __future__ import annotations

import time
from typing import Any

from bt_support import assert_same_as_oracle_json

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.context import EngineContext
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.worker import EngineWorker, WorkerState
from strategy_manager.testing import json_roundtrip


def make_worker(spec: Any, saved: list[dict[str, Any]], tmp_path: Any) -> EngineWorker:
    hooks = EngineRegistry.from_entry_points().resolve("backtrader")
    classes = ClassLoader((), ())
    return EngineWorker(
        spec,
        hooks,
        lambda: EngineContext(spec=spec, data_dir=tmp_path / "engine", classes=classes),
        load_snapshot=lambda: json_roundtrip(saved[-1]) if saved else None,
        state_sink=saved.append,
        stop_timeout=10.0,
    )


def wait_for(state: WorkerState, worker: EngineWorker, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while worker.state is not state and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.state is state, worker.get_stats()


def test_worker_stop_and_restart_equals_the_uninterrupted_run(driver, sma_oracle, tmp_path):
    saved: list[dict[str, Any]] = []
    first = make_worker(driver.spec(feed={"hold_after_bars": 1500}), saved, tmp_path)
    first.start()
    assert first.engine.holding.wait(30)
    first.stop()
    assert first.state is WorkerState.STOPPED
    assert saved[-1]["bars"] == 1500

    second = make_worker(driver.spec(), saved, tmp_path)
    second.start()
    wait_for(WorkerState.FINISHED, second)
    second.stop()
    assert saved[-1]["bars"] == 3000
    assert_same_as_oracle_json(saved[-1], sma_oracle)
