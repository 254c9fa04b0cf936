"""A live backtrader feed whose bars are pushed from any thread.

``{"feed": {"factory": "qsm_backtrader.livefeed:QueueFeed"}}`` gives a strategy a
feed that waits for bars; the engine exposes it as ``engine.data``, and code
bridging a data source calls :meth:`QueueFeed.put`. Like backtrader's own live
feeds it returns control to cerebro every ``qcheck`` seconds while idle, so an idle
strategy still snapshots and stops promptly; :meth:`QueueFeed.finish` ends it.
"""

from __future__ import annotations

import queue
from datetime import datetime
from typing import Any

import backtrader as bt

_END = object()


class QueueFeed(bt.feed.DataBase):
    params = (("qcheck", 0.2),)

    def __init__(self) -> None:
        super().__init__()
        self._bars: queue.Queue[Any] = queue.Queue()

    def islive(self) -> bool:
        return True

    def haslivedata(self) -> bool:
        return not self._bars.empty()

    def start(self) -> None:
        super().start()
        self.put_notification(self.LIVE)

    def put(
        self,
        dt: datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float = 0.0,
        openinterest: float = 0.0,
    ) -> None:
        """Queue one bar; cerebro processes it on its own thread."""
        self._bars.put((dt, open, high, low, close, volume, openinterest))

    def finish(self) -> None:
        """No more bars: cerebro finishes once the queued ones are processed."""
        self._bars.put(_END)

    def _load(self) -> bool | None:
        try:
            bar = self._bars.get(timeout=max(self._qcheck, 0.01))
        except queue.Empty:
            return None  # nothing yet, but not finished: cerebro goes round again
        if bar is _END:
            return False
        dt, *values = bar
        self.lines.datetime[0] = bt.date2num(dt)
        for line, value in zip(
            (self.lines.open, self.lines.high, self.lines.low, self.lines.close,
             self.lines.volume, self.lines.openinterest),
            values,
            strict=True,
        ):
            line[0] = value
        return True
