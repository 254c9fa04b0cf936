"""Hook implementations for engine ``backtrader``.

Thin on purpose: backtrader and the adapter's modules are imported inside the
hooks, so that listing engines stays fast. The work is in :mod:`qsm_backtrader.engine`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from strategy_manager.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from qsm_backtrader.engine import BacktraderEngine
    from strategy_manager.core.context import EngineContext
    from strategy_manager.core.spec import StrategySpec

def _timeout(context: EngineContext, name: str) -> float:
    return float(context.options.get(name, 5.0))


@hookimpl
def qsm_engine_info() -> dict[str, Any]:
    try:
        engine_version = version("backtrader")
    except PackageNotFoundError:
        engine_version = "not installed"
    return {
        "name": "backtrader",
        "version": engine_version,
        "capabilities": ["snapshot", "restore", "sessions"],
        "description": "backtrader strategies on a replay or live feed, resumable bar for bar",
    }


@hookimpl
def qsm_validate_engine(spec: StrategySpec, context: EngineContext) -> None:
    from qsm_backtrader.build import plan

    plan(spec, context)


@hookimpl
def qsm_create_engine(spec: StrategySpec, context: EngineContext) -> BacktraderEngine:
    from qsm_backtrader.build import plan
    from qsm_backtrader.engine import BacktraderEngine
    from qsm_backtrader.state import class_name

    checked = plan(spec, context)
    return BacktraderEngine(context, checked, class_name(checked.strategy))


@hookimpl
def qsm_restore_engine(engine: BacktraderEngine, snapshot: dict[str, Any], context: EngineContext) -> None:
    engine.restore(snapshot)


@hookimpl
def qsm_start_engine(engine: BacktraderEngine, context: EngineContext) -> None:
    engine.start()


@hookimpl
def qsm_stop_engine(engine: BacktraderEngine, context: EngineContext) -> None:
    engine.stop(_timeout(context, "stop_timeout"))


@hookimpl
def qsm_snapshot_engine(engine: BacktraderEngine, context: EngineContext) -> dict[str, Any] | None:
    return engine.snapshot(_timeout(context, "snapshot_timeout"))


@hookimpl
def qsm_open_session(account: Any, context: Any) -> Any:
    """The account's shared store (see :mod:`qsm_backtrader.session`)."""
    from qsm_backtrader.session import StoreSession

    return StoreSession.open(account, context)


@hookimpl
def qsm_close_session(session: Any, account: Any, context: Any) -> None:
    session.close()


@hookimpl
def qsm_snapshot_positions(snapshot: dict[str, Any], spec: StrategySpec) -> dict[str, float] | None:
    """The simulated broker's position in a snapshot: the strategy's one feed is its
    document's symbol."""
    positions = snapshot.get("positions")
    if not isinstance(positions, list):
        return None
    sizes = [p.get("attrs", {}).get("size") for p in positions if isinstance(p, dict)]
    return {spec.symbol: float(sum(size for size in sizes if isinstance(size, int | float)))}
