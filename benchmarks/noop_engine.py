"""A no-op engine for the benchmarks: costs nothing, so what is measured is the core."""

from __future__ import annotations

from typing import Any

from strategy_manager.core.hookspecs import hookimpl


class Engine:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"ticks": 0, "position": 0, "note": "noop"}


@hookimpl
def qsm_engine_info() -> dict[str, Any]:
    return {
        "name": "noop",
        "version": "1",
        "capabilities": ["snapshot", "restore"],
        "description": "does nothing, fast",
    }


@hookimpl
def qsm_create_engine(spec: Any, context: Any) -> Engine:
    return Engine()


@hookimpl
def qsm_restore_engine(engine: Engine, snapshot: dict[str, Any], context: Any) -> None:
    engine.state = dict(snapshot)


@hookimpl
def qsm_start_engine(engine: Engine, context: Any) -> None:
    engine.state["ticks"] += 1


@hookimpl
def qsm_stop_engine(engine: Engine, context: Any) -> None:
    return None


@hookimpl
def qsm_snapshot_engine(engine: Engine, context: Any) -> dict[str, Any]:
    return dict(engine.state)


class InPlace:
    """Engine ``noop-inplace``: the same nothing, taking an edit of its params in place
    (``qsm_update_params``) where ``noop`` restarts."""

    qsm_create_engine = staticmethod(qsm_create_engine)
    qsm_restore_engine = staticmethod(qsm_restore_engine)
    qsm_start_engine = staticmethod(qsm_start_engine)
    qsm_stop_engine = staticmethod(qsm_stop_engine)
    qsm_snapshot_engine = staticmethod(qsm_snapshot_engine)

    @staticmethod
    @hookimpl
    def qsm_engine_info() -> dict[str, Any]:
        return {"name": "noop-inplace", "version": "1", "capabilities": ["snapshot", "restore"]}

    @staticmethod
    @hookimpl
    def qsm_update_params(engine: Engine, spec: Any, context: Any) -> bool:
        engine.state["note"] = f"params {len(spec.params)}"
        return True


class NoopStrategy:
    """The same nothing as a user class, for the built-in ``python`` engine
    (``engine_class: noop_engine.NoopStrategy`` with this folder in ``import_paths``):
    how the scale-out benchmark's hosts load it without installing a plugin."""

    def __init__(self, symbol: str, params: dict[str, Any]) -> None:
        self.state: dict[str, Any] = {"symbol": symbol}

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def snapshot(self) -> dict[str, Any]:
        return dict(self.state)

    def restore(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
