"""A user's own real-time engine, the second way to run vnpy code (the seed's
``SingleStreamRealTimeEngine`` has this shape).

The adapter constructs it as ``BreakoutEngine(symbol, params)`` and drives it with
``start()`` and ``stop()``; ``snapshot()`` and ``restore(state)`` let it resume.
It reads 1-minute bars from a CSV file on its own thread (a live engine would
read a market-data stream), keeps them in vnpy's ``ArrayManager`` and goes long
on a close above the highest high of the last ``window`` bars, flat on a close
below the lowest low. Importing vnpy at the top is fine: the adapter has pointed
vnpy at its folder before it loads this module.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vnpy.trader.constant import Exchange, Interval
from vnpy.trader.object import BarData
from vnpy.trader.utility import ArrayManager

from qsm_vnpy.bars import read_bars


class BreakoutEngine:
    #: The params a document may set; the adapter refuses any other before it runs.
    parameters = ("csv", "window", "pace")

    def __init__(self, symbol: str, params: dict[str, Any]) -> None:
        self.symbol = symbol
        self.csv = Path(params["csv"])
        self.window = int(params.get("window", 20))
        self.pace = float(params.get("pace", 0.0))  # bars per second; 0 = as fast as possible
        self.bars_seen = 0
        self.position = 0
        self.signals: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"breakout-{self.symbol}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"bars_seen": self.bars_seen, "position": self.position, "signals": list(self.signals)}

    def restore(self, state: dict[str, Any]) -> None:
        self.bars_seen = int(state["bars_seen"])
        self.position = int(state["position"])
        self.signals = list(state["signals"])

    def _run(self) -> None:
        am = ArrayManager(size=max(self.window + 1, 2))
        code = self.symbol.partition(".")[0]
        for index, bar in enumerate(read_bars(self.csv, "Asia/Shanghai")):
            if self._stop.is_set():
                return
            am.update_bar(
                BarData(
                    symbol=code,
                    exchange=Exchange.LOCAL,
                    datetime=bar.datetime,
                    interval=Interval.MINUTE,
                    open_price=bar.open,
                    high_price=bar.high,
                    low_price=bar.low,
                    close_price=bar.close,
                    gateway_name="CSV",
                )
            )
            if index < self.bars_seen:  # seen before the restart: only warms the indicators up
                continue
            with self._lock:
                self._on_bar(am, bar.datetime.isoformat(), bar.close)
                self.bars_seen = index + 1
            if self.pace:
                self._stop.wait(1.0 / self.pace)

    def _on_bar(self, am: ArrayManager, when: str, close: float) -> None:
        if not am.inited:
            return
        highs, lows = am.high[:-1], am.low[:-1]
        if self.position == 0 and close > highs[-self.window :].max():
            self.position = 1
            self.signals.append({"at": when, "side": "buy", "price": close})
        elif self.position == 1 and close < lows[-self.window :].min():
            self.position = 0
            self.signals.append({"at": when, "side": "sell", "price": close})
