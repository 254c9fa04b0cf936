"""Engines that misbehave in the ways a real one can, for the isolation tests.

Each is a plain engine for the ``python`` engine: ``Cls(symbol, params)`` with
``start()``/``stop()`` and ``snapshot()``.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class _Base:
    def __init__(self, symbol: str, params: dict[str, Any]) -> None:
        self.symbol = symbol
        self.ticks = 0

    def start(self) -> None:
        self.ticks += 1

    def stop(self) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"ticks": self.ticks}

    def restore(self, state: dict[str, Any]) -> None:
        self.ticks = state.get("ticks", 0)


class BlocksInSnapshot(_Base):
    """The snapshot hook never returns."""

    def snapshot(self) -> dict[str, Any]:
        threading.Event().wait()
        return {}


class DeepSnapshot(_Base):
    """A snapshot nested far deeper than any state should be."""

    def snapshot(self) -> dict[str, Any]:
        state: dict[str, Any] = {"leaf": 1}
        for _ in range(5000):
            state = {"x": state}
        return state


class CyclicSnapshot(_Base):
    """A snapshot that contains itself."""

    def snapshot(self) -> dict[str, Any]:
        state: dict[str, Any] = {"ticks": self.ticks}
        state["self"] = state
        return state


class LeaksThread(_Base):
    """Starts a non-daemon thread that never ends, and forgets it."""

    def start(self) -> None:
        super().start()
        threading.Thread(target=lambda: time.sleep(3600), name="leaked-by-engine", daemon=False).start()


class HangsInStart(_Base):
    """The start hook never returns."""

    def start(self) -> None:
        threading.Event().wait()
