"""The engine itself: grid trading on a generated price stream. Knows nothing of the core.

Every ``interval`` seconds a new price arrives (a random walk seeded by the symbol).
Each time the price falls through a grid line ``step`` below the last trade, the
engine buys ``lot``; each time it rises through one above, it sells ``lot``, never
going short. Its whole state is a small dict, so it snapshots and restores exactly.
"""

from __future__ import annotations

import random
import threading
import zlib
from typing import Any

PARAMS = {"step": 0.5, "lot": 10, "interval": 0.05, "cash": 10_000.0}
STATE_KEYS = ("tick", "price", "anchor", "position", "cash")


class GridEngine:
    def __init__(self, symbol: str, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise ValueError(f"unknown params {unknown}; known: {sorted(PARAMS)}")
        self.symbol = symbol
        self.params = {**PARAMS, **params}
        start = float(10 + zlib.crc32(symbol.encode()) % 90)
        self.state: dict[str, Any] = {
            "tick": 0,
            "price": start,
            "anchor": start,
            "position": 0,
            "cash": self.params["cash"],
        }
        self.lock = threading.Lock()  # snapshots come from another thread than ticks

    def tick(self) -> None:
        rng = random.Random(zlib.crc32(f"{self.symbol}:{self.state['tick']}".encode()))
        with self.lock:
            s, step, lot = self.state, self.params["step"], self.params["lot"]
            s["price"] = round(s["price"] + rng.gauss(0.0, 0.2), 4)
            if s["price"] <= s["anchor"] - step and s["cash"] >= lot * s["price"]:
                s["position"] += lot
                s["cash"] = round(s["cash"] - lot * s["price"], 4)
                s["anchor"] = s["price"]
            elif s["price"] >= s["anchor"] + step and s["position"] >= lot:
                s["position"] -= lot
                s["cash"] = round(s["cash"] + lot * s["price"], 4)
                s["anchor"] = s["price"]
            s["tick"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.state)

    def restore(self, state: dict[str, Any]) -> None:
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"snapshot lacks {missing}")
        self.state = {k: state[k] for k in STATE_KEYS}

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set."""
        while not stop.wait(self.params["interval"]):
            self.tick()
