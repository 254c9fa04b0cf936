"""Helpers for an adapter's own tests: call its hooks in the worker's order, wait for
the orchestrator's snapshots. See the package docstring."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.context import EngineContext
from strategy_manager.core.spec import StrategySpec
from strategy_manager.core.store.protocol import Snapshot, Store
from strategy_manager.core.worker import WIND_DOWN_SECONDS


def json_roundtrip(value: Any) -> Any:
    """What a store gives back: a snapshot must survive plain JSON unchanged."""
    return json.loads(json.dumps(value, allow_nan=False))


class HookDriver:
    """Calls one plugin module's ``qsm_*`` hooks directly, in the order the core's
    worker does, and keeps the engines it made so :meth:`close` stops them all.

    Snapshots go through :func:`json_roundtrip` both ways, as through a store.
    """

    def __init__(self, plugin: ModuleType, data_dir: Path, class_allow: Iterable[str] = ()) -> None:
        self.plugin = plugin
        self.data_dir = data_dir
        #: The operator's rules: ``class_allow`` plays ``engine_class_allow``.
        self.classes = ClassLoader((), list(class_allow))
        self.engines: list[tuple[Any, EngineContext]] = []

    def context(self, spec: StrategySpec, **options: Any) -> EngineContext:
        return EngineContext(
            spec=spec, data_dir=self.data_dir / spec.strategy_key, classes=self.classes, options=options
        )

    def create(
        self, spec: StrategySpec, snapshot: dict[str, Any] | None = None, **options: Any
    ) -> tuple[Any, EngineContext]:
        context = self.context(spec, **options)
        engine = self.plugin.qsm_create_engine(spec=spec, context=context)
        self.engines.append((engine, context))
        if snapshot is not None:
            self.plugin.qsm_restore_engine(engine=engine, snapshot=json_roundtrip(snapshot), context=context)
        return engine, context

    def start(
        self, spec: StrategySpec, snapshot: dict[str, Any] | None = None, **options: Any
    ) -> tuple[Any, EngineContext]:
        engine, context = self.create(spec, snapshot, **options)
        self.plugin.qsm_start_engine(engine=engine, context=context)
        return engine, context

    def snapshot(self, engine: Any, context: EngineContext) -> dict[str, Any]:
        state = self.plugin.qsm_snapshot_engine(engine=engine, context=context)
        return json_roundtrip(state)  # type: ignore[no-any-return]

    def run_to_end(
        self, spec: StrategySpec, snapshot: dict[str, Any] | None = None, timeout: float = 120
    ) -> dict[str, Any]:
        """Start an engine that finishes on its own (a replay) and snapshot it at the end."""
        engine, context = self.start(spec, snapshot)
        assert not context.join_threads(timeout), f"engine still running after {timeout}s"
        return self.snapshot(engine, context)

    def stop(self, engine: Any, context: EngineContext) -> dict[str, Any]:
        """The worker's stop: the stop event, a moment for the engine's threads, the
        final snapshot, then the stop hook. Returns the snapshot."""
        context.stop_event.set()
        context.join_threads(WIND_DOWN_SECONDS)
        state = self.snapshot(engine, context)
        self.plugin.qsm_stop_engine(engine=engine, context=context)
        assert not context.join_threads(5), "an engine thread survived the stop"
        return state

    def close(self) -> None:
        """Stop every engine this driver made (a test's teardown)."""
        for engine, context in self.engines:
            context.stop_event.set()
            self.plugin.qsm_stop_engine(engine=engine, context=context)
            context.join_threads(5)


def wait_for_snapshot(
    store: Store,
    strategy_id: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> Snapshot:
    """The first stored snapshot of ``strategy_id`` whose state satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.latest_snapshot(strategy_id)
        if record is not None and predicate(record.state):
            return record
        time.sleep(0.05)
    latest = store.latest_snapshot(strategy_id)
    seen = f"snapshot #{latest.seq}" if latest else "no snapshot"
    raise AssertionError(f"{strategy_id}: no snapshot as expected within {timeout}s; latest: {seen}")
