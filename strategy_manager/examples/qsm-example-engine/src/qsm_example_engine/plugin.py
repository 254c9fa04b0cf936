"""The hooks: how quant-strategy-manager drives :class:`GridEngine`.

Keep this module cheap to import (``strategy-manager engines`` imports every
plugin): import your engine library inside the hooks, not up here.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import HookError, SnapshotError
from strategy_manager.core.hookspecs import hookimpl
from strategy_manager.core.spec import StrategySpec
from strategy_manager.core.validation import check_params


@hookimpl
def qsm_engine_info() -> dict[str, Any]:
    # "name" must equal the entry point's name; "capabilities" promise the two
    # optional hooks below.
    return {
        "name": "example",
        "version": version("qsm-example-engine"),
        "capabilities": ["snapshot", "restore"],
        "description": "grid trading on a generated price stream (adapter template)",
    }


@hookimpl
def qsm_validate_engine(spec: StrategySpec, context: EngineContext) -> None:
    # Called before a document is stored or started: check, start nothing. The
    # defaults type the params (a number stays a number); one line naming the field.
    from qsm_example_engine.grid import PARAMS

    check_params(spec.id, "params for example", spec.params, PARAMS)


@hookimpl
def qsm_create_engine(spec: StrategySpec, context: EngineContext) -> Any:
    from qsm_example_engine.grid import GridEngine  # the "heavy" import, done late

    try:
        return GridEngine(spec.symbol, dict(spec.params))
    except ValueError as exc:
        # Errors the user can fix: one line, naming the strategy.
        raise HookError(f"{spec.id}: {exc}") from None


@hookimpl
def qsm_restore_engine(engine: Any, snapshot: dict[str, Any], context: EngineContext) -> None:
    try:
        engine.restore(snapshot)
    except ValueError as exc:
        raise SnapshotError(f"{context.strategy_id}: {exc}") from None


@hookimpl
def qsm_start_engine(engine: Any, context: EngineContext) -> None:
    # Return at once; the loop runs on a thread the core watches and joins.
    context.spawn(lambda: engine.run(context.stop_event), name="ticks")


@hookimpl
def qsm_stop_engine(engine: Any, context: EngineContext) -> None:
    # Nothing to do: the tick loop watches context.stop_event, which is set
    # before this hook is called, and the core joins the thread.
    return None


@hookimpl
def qsm_snapshot_engine(engine: Any, context: EngineContext) -> dict[str, Any]:
    return engine.snapshot()
