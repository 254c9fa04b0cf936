"""Hook implementations for engine `vnpy`. Imports vnpy lazily, inside the hooks."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from strategy_manager.core.hookspecs import hookimpl


@hookimpl
def qsm_engine_info() -> dict[str, Any]:
    try:
        engine_version = version("vnpy")
    except PackageNotFoundError:
        engine_version = "not installed"
    return {
        "name": "vnpy",
        "version": engine_version,
        "capabilities": [],
        "description": "vnpy adapter (not yet able to run strategies)",
    }
