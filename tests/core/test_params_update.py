"""An edit of a running strategy's params alone reaches its engine in place
(``qsm_update_params``) when the engine can take it, and restarts it otherwise."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.errors import InvalidStrategy
from strategy_manager.core.hookspecs import hookimpl
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import wait_for
from tests.core.test_orchestrator import Events

SID = "u:S:k"
ALWAYS = {"mode": "always"}


class Engine:
    def __init__(self, params: dict[str, Any], calls: list[str]) -> None:
        self.params = dict(params)
        self.calls = calls


class Plugin:
    """Engine ``fake``: its update hook applies, refuses, raises, or waits for ``gate``."""

    def __init__(self) -> None:
        self.mode = "apply"
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[str] = []
        self.engines: list[Engine] = []
        self.in_update = threading.Event()

    @hookimpl
    def qsm_engine_info(self) -> dict[str, Any]:
        return {"name": "fake", "version": "1", "capabilities": ["snapshot", "restore"]}

    @hookimpl
    def qsm_validate_engine(self, spec: Any, context: Any) -> None:
        if not isinstance(spec.params.get("n"), int):
            raise InvalidStrategy(f"{spec.id}: params.n must be an integer")

    @hookimpl
    def qsm_create_engine(self, spec: Any, context: Any) -> Engine:
        engine = Engine(spec.params, self.calls)
        self.engines.append(engine)
        return engine

    @hookimpl
    def qsm_restore_engine(self, engine: Engine, snapshot: dict[str, Any], context: Any) -> None:
        self.calls.append("restore")

    @hookimpl
    def qsm_start_engine(self, engine: Engine, context: Any) -> None:
        self.calls.append("start")

    @hookimpl
    def qsm_stop_engine(self, engine: Engine, context: Any) -> None:
        self.calls.append("stop")

    @hookimpl
    def qsm_snapshot_engine(self, engine: Engine, context: Any) -> dict[str, Any]:
        return {"params_seen": engine.params}

    @hookimpl
    def qsm_update_params(self, engine: Engine, spec: Any, context: Any) -> bool | None:
        self.calls.append("update")
        self.in_update.set()
        self.gate.wait(30)
        self.calls.append("update-returned")
        if self.mode == "raise":
            raise RuntimeError("cannot")
        if self.mode == "refuse":
            return False
        engine.params = dict(spec.params)
        return True


@pytest.fixture
def rig(tmp_path):
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        poll_interval=0.05,
        snapshot_interval=3600,
        snapshot_timeout=0.5,
        stop_timeout=5,
    )
    store = open_store(settings)
    registry = EngineRegistry.from_entry_points(settings)
    plugin = Plugin()
    registry.add_plugin("fake", plugin)
    events = Events(SystemClock())
    orch = MultiStrategyOrchestrator(settings, store, registry, clock=SystemClock(), on_event=events)
    store.upsert_strategy(
        {"user_id": "u", "symbol": "S", "strategy_key": "k", "engine": "fake", "params": {"n": 1}}
        | {"schedule": ALWAYS}
    )
    orch.start()
    try:
        events.wait_for(SID, "started")
        yield orch, store, events, plugin
    finally:
        plugin.gate.set()
        orch.stop()


def running_engine(orch: MultiStrategyOrchestrator) -> Engine:
    slot = orch.slots[SID]
    assert slot.worker is not None and slot.running
    engine: Engine = slot.worker.engine
    return engine


def reloads(events: Events) -> list[str]:
    return [detail for _t, _k, detail in events.of(SID, "reload")]


def test_a_params_edit_reaches_the_running_engine_without_a_restart(rig):
    orch, store, events, plugin = rig
    first = running_engine(orch)
    store.update_strategy(SID, {"params": {"n": 2}})
    events.wait_for(SID, "reload")
    assert reloads(events) == ["params applied in place, without a restart"]
    assert running_engine(orch) is first and first.params == {"n": 2}
    assert len(events.of(SID, "started")) == 1 and plugin.calls.count("stop") == 0
    assert orch.slots[SID].worker.context.spec.params == {"n": 2}
    status = wait_for(
        lambda: [r for r in store.read_status() if r.details.get("params_applied") == 1],
        10,
        "the in-place edit in the status",
    )
    assert status[0].state == "RUNNING"


def test_an_edit_of_more_than_params_restarts_without_asking_the_engine(rig):
    orch, store, events, plugin = rig
    first = running_engine(orch)
    store.update_strategy(SID, {"params": {"n": 2}, "schedule": {**ALWAYS, "lunch_break": "keep_running"}})
    events.wait_for(SID, "started", count=2)
    assert "update" not in plugin.calls
    assert reloads(events) == ["document changed; restarting with the new spec"]
    assert running_engine(orch) is not first and running_engine(orch).params == {"n": 2}


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("refuse", "the engine cannot take these params in place"),
        ("raise", "qsm_update_params raised RuntimeError: cannot"),
    ],
)
def test_an_engine_that_refuses_or_raises_is_restarted_with_the_new_params(rig, mode, why):
    orch, store, events, plugin = rig
    plugin.mode = mode
    first = running_engine(orch)
    store.update_strategy(SID, {"params": {"n": 2}})
    events.wait_for(SID, "started", count=2)
    assert reloads(events) == [f"document changed; restarting with the new spec ({why})"]
    assert running_engine(orch) is not first and running_engine(orch).params == {"n": 2}
    assert plugin.calls.index("update-returned") < plugin.calls.index("stop")


def test_a_slow_update_falls_back_to_a_restart_that_waits_for_the_hook(rig):
    orch, store, events, plugin = rig
    plugin.gate.clear()
    first = running_engine(orch)
    store.update_strategy(SID, {"params": {"n": 2}})
    events.wait_for(SID, "reload")  # after snapshot_timeout, while the hook still runs
    assert reloads(events) == [
        "document changed; restarting with the new spec (qsm_update_params did not return within 0.5s)"
    ]
    assert "stop" not in plugin.calls  # never two hooks of one engine at once
    plugin.gate.set()
    events.wait_for(SID, "started", count=2)
    assert plugin.calls.index("update-returned") < plugin.calls.index("stop")
    assert running_engine(orch) is not first and running_engine(orch).params == {"n": 2}


def test_a_second_edit_during_an_update_ends_with_the_last_params(rig):
    orch, store, events, plugin = rig
    plugin.gate.clear()
    first = running_engine(orch)
    store.update_strategy(SID, {"params": {"n": 2}})
    assert plugin.in_update.wait(10)
    store.update_strategy(SID, {"params": {"n": 3}})
    wait_for(lambda: orch.slots[SID].spec.params == {"n": 3}, 10, "the second edit read")
    plugin.gate.set()
    events.wait_for(SID, "reload")  # the first edit's outcome is overtaken: only the last one's is told
    assert running_engine(orch) is first and first.params == {"n": 3}
    assert plugin.calls.count("update") == 2 and len(events.of(SID, "started")) == 1
    assert reloads(events) == ["params applied in place, without a restart"]
    assert orch.slots[SID].params_applied == 1


def test_a_removal_during_an_update_wins(rig):
    orch, store, events, plugin = rig
    plugin.gate.clear()
    store.update_strategy(SID, {"params": {"n": 2}})
    assert plugin.in_update.wait(10)
    store.remove_strategy(SID)
    events.wait_for(SID, "removed")
    plugin.gate.set()
    events.wait_for(SID, "stopped")
    wait_for(lambda: SID not in orch.slots, 10, "the removed strategy forgotten")
    assert reloads(events) == [] and len(events.of(SID, "started")) == 1
    assert plugin.calls[-3:] == ["update", "update-returned", "stop"]


def test_an_edit_the_engine_refuses_blocks_the_strategy_and_never_reaches_the_engine(rig):
    orch, store, _events, plugin = rig
    first = running_engine(orch)
    store.update_strategy(SID, {"params": {"n": "two"}})
    wait_for(lambda: str(orch.slots[SID].state) == "BLOCKED", 10, "the strategy blocked")
    assert "params.n must be an integer" in (orch.slots[SID].reason or "")
    assert "update" not in plugin.calls and first.params == {"n": 1}
    wait_for(lambda: plugin.calls.count("stop") == 1, 10, "the running engine stopped")
