"""The Ray tests' negative control: an engine with its fence switched off.

Run by the ``python`` engine (``engine_class: tests.scaleout.unfenced.Unfenced``), it
sends an order on every bar and logs it as the demo engine does (time, pid, process,
lease epoch), but never asks ``context.lease_valid()``: a host that wakes from a pause
trades on under the lease it no longer holds until it is told to stop.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from strategy_manager.core.context import EngineContext

_PROCESS = secrets.token_hex(4)


class Unfenced:
    def __init__(self, symbol: str, params: dict[str, Any], context: EngineContext) -> None:
        self.context = context
        self.bar_seconds = float(params.get("bar_seconds", 0.02))
        self.state: dict[str, Any] = {"bar": 0}
        self.orders = context.private_dir() / "orders.jsonl"

    def start(self) -> None:
        self.context.spawn(self._run, name="bars")

    def _run(self) -> None:
        context = self.context
        while not context.stop_event.is_set():
            record = {
                "t": context.clock.now().timestamp(),
                "pid": os.getpid(),
                "process": _PROCESS,
                "epoch": context.lease_epoch,
                "bar": self.state["bar"],
            }
            with self.orders.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            self.state["bar"] += 1
            context.clock.wait(context.stop_event, self.bar_seconds)

    def stop(self) -> None:
        """The bar thread watches the context's stop event."""

    def snapshot(self) -> dict[str, Any]:
        return dict(self.state)

    def restore(self, state: dict[str, Any]) -> None:
        self.state = {"bar": int(state.get("bar", 0))}
