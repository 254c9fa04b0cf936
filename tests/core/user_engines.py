"""User engine classes named by ``engine_class`` in the worker and plugin tests."""

from __future__ import annotations

import threading
from typing import Any

from strategy_manager.core import StrategyWorker, WorkerState


class Counter:
    """The seed's plain engine: ``Counter(symbol, params)`` with start/stop/snapshot/restore."""

    instances: list[Counter] = []
    #: What a document may set (engine ``python`` refuses other names before it runs).
    parameters = ("start", "fail_start", "halt")

    def __init__(self, symbol: str, params: dict[str, Any]) -> None:
        self.symbol, self.params = symbol, params
        self.count = params.get("start", 0)
        self.running = False
        Counter.instances.append(self)

    def start(self) -> None:
        if self.params.get("fail_start"):
            raise RuntimeError("exchange login refused")
        if self.params.get("halt"):
            from strategy_manager.core.errors import EngineHalted

            raise EngineHalted("broker reports 3 lots, the snapshot 2")
        self.running = True
        self.count += 1

    def stop(self) -> None:
        self.running = False

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count}

    def restore(self, state: dict[str, Any]) -> None:
        self.count = state["count"]


class Unserializable(Counter):
    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count, "opened": {"at": object()}}


class HangsInStop(Counter):
    release = threading.Event()

    def stop(self) -> None:
        HangsInStop.release.wait(30)


class SeedWorker(StrategyWorker):
    """The seed README's adapter pattern, plus the parameters it accepts (none)."""

    parameters = ()

    def __init__(self, symbol: str, strategy_key: str, params: dict[str, Any], **kwargs: Any):
        super().__init__(symbol, strategy_key)
        self.ticks = 0
        self.params = params

    def run(self) -> None:
        self._state = WorkerState.RUNNING
        while not self._stop_event.is_set():
            self.ticks += 1
            self._stop_event.wait(timeout=0.01)
        self._state = WorkerState.STOPPED

    def stop(self, save_state: bool = True) -> None:
        if save_state:
            self.save_state()
        self._stop_event.set()

    def get_stats(self) -> dict[str, Any]:
        return {"ticks": self.ticks}

    def get_state(self) -> dict[str, Any]:
        return {"ticks": self.ticks}

    def set_state(self, state: dict[str, Any]) -> None:
        self.ticks = state["ticks"]


class Stubborn(SeedWorker):
    """Ignores the stop event: its thread outlives the stop, and must be reported."""

    release = threading.Event()

    def run(self) -> None:
        self._state = WorkerState.RUNNING
        Stubborn.release.wait(30)


class FinishesWhileStarting:
    """An engine whose run ends before its start hook returns (a replay restored at
    its end, a short feed played at full speed)."""

    def __init__(self, symbol: str, params: dict[str, Any], context: Any) -> None:
        self.context = context

    def start(self) -> None:
        done = self.context.spawn(lambda: None, name="replay")
        done.join()  # finished, and its "finished" report made, before start returns

    def stop(self) -> None:
        pass
