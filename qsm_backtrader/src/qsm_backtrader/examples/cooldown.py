"""An example strategy whose memory matters: it must survive a restart exactly."""

from __future__ import annotations

from typing import Any

import backtrader as bt


class SmaCrossCooldown(bt.Strategy):
    """Long-only SMA crossover that sits out ``cooldown`` bars after a losing trade.

    It keeps at most one order in flight (``self.order``, cleared in
    ``notify_order``), learns of losses from ``notify_trade``, counts down its
    cooldown and counts its losses. Those attributes are its state, declared in
    ``qsm_state`` so that snapshots carry them; the open trade and the order in
    flight are carried by the adapter.
    """

    params = (("fast", 10), ("slow", 30), ("cooldown", 10))
    qsm_state = ["order", "cooldown_left", "losses"]

    def __init__(self) -> None:
        fast = bt.indicators.SMA(period=self.p.fast)
        slow = bt.indicators.SMA(period=self.p.slow)
        self.crossover = bt.indicators.CrossOver(fast, slow)
        self.order: Any = None
        self.cooldown_left = 0
        self.losses = 0

    def notify_order(self, order: Any) -> None:
        if not order.alive():
            self.order = None

    def notify_trade(self, trade: Any) -> None:
        if trade.isclosed and trade.pnlcomm < 0:
            self.losses += 1
            self.cooldown_left = self.p.cooldown

    def next(self) -> None:
        if self.cooldown_left:
            self.cooldown_left -= 1
        if self.order is not None:
            return
        if not self.position:
            if self.crossover > 0 and not self.cooldown_left:
                self.order = self.buy()
        elif self.crossover < 0:
            self.order = self.sell()
