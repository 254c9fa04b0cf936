"""The minimal core: hook contract, registry, workers, orchestration. Knows no engine by name.

The names below are the public surface; every other module is internal.
"""

from strategy_manager.core.errors import QsmError
from strategy_manager.core.hookspecs import hookimpl
from strategy_manager.core.spec import StrategySpec, parse_strategy
from strategy_manager.core.worker import EngineWorker, StrategyWorker, WorkerState

__all__ = [
    "EngineWorker",
    "QsmError",
    "StrategySpec",
    "StrategyWorker",
    "WorkerState",
    "hookimpl",
    "parse_strategy",
]
