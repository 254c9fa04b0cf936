"""Working orders survive a restart: a strategy whose stop and limit orders work for
dozens of bars, stopped while both are working, resumes with exactly the
backtester's trades; the snapshot carries the stop orders (the CTA engine's) and
the replay's book (the paper broker's), and callbacks reach the strategy in the
backtester's order."""

from __future__ import annotations

import logging
from typing import Any

from vn_support import GAPPED_REPLAYED, SESSION_BARS, backtest, trades
from vnpy_ctastrategy import BarData, BarGenerator, CtaTemplate, OrderData, StopOrder, TickData, TradeData

PATIENT = "test_vn_working_orders.PatientStrategy"
CALLS = "test_vn_working_orders.CallRecorder"
HASTY = "test_vn_working_orders.SendThenCancel"


class PatientStrategy(CtaTemplate):
    """Flat, it places a buy stop above the price and a buy limit below it; long, a
    sell stop below and a sell limit above. Both work until one fills; then the
    other is cancelled and, on the next bar, a new pair is placed."""

    author = "qsm tests"
    distance: float = 0.01
    parameters = ["distance"]
    variables: list[str] = []
    #: A field (not a variable): True while a pair is working.
    working: bool = False

    def on_init(self) -> None:
        self.bg = BarGenerator(self.on_bar)
        self.load_bar(1)

    def on_tick(self, tick: TickData) -> None:
        self.bg.update_tick(tick)

    def on_bar(self, bar: BarData) -> None:
        if self.working or not self.trading:
            return
        up = round(bar.close_price * (1 + self.distance), 2)
        down = round(bar.close_price * (1 - self.distance), 2)
        if self.pos <= 0:
            self.buy(up, 1, stop=True)
            self.buy(down, 1)
        else:
            self.sell(down, 1, stop=True)
            self.sell(up, 1)
        self.working = True

    def on_trade(self, trade: TradeData) -> None:
        self.cancel_all()
        self.working = False


class CallRecorder(PatientStrategy):
    """PatientStrategy that writes down every callback it gets while trading."""

    calls: list[tuple[Any, ...]] = []

    def on_bar(self, bar: BarData) -> None:
        if self.trading:
            self.calls.append(("bar", bar.datetime.isoformat()))
        super().on_bar(bar)

    def on_order(self, order: OrderData) -> None:
        self.calls.append(("order", order.status.name, order.price, order.traded))

    def on_stop_order(self, stop_order: StopOrder) -> None:
        self.calls.append(("stop", stop_order.status.name, stop_order.price))

    def on_trade(self, trade: TradeData) -> None:
        self.calls.append(("trade", trade.direction.name, trade.price, trade.datetime.isoformat(), self.pos))
        super().on_trade(trade)


class SendThenCancel(CtaTemplate):
    """On every bar, a buy limit order far above the price and a sell stop order far
    above it too (both would fill on the next bar), then ``cancel_all`` at once."""

    author = "qsm tests"
    parameters: list[str] = []
    variables: list[str] = []

    def on_init(self) -> None:
        self.bg = BarGenerator(self.on_bar)

    def on_tick(self, tick: TickData) -> None:
        self.bg.update_tick(tick)

    def on_bar(self, bar: BarData) -> None:
        self.buy(bar.close_price * 2, 1)
        self.short(bar.close_price * 2, 1, stop=True)
        self.cancel_all()


def test_a_cancel_right_after_a_send_always_finds_the_order(gapped_driver, caplog):
    caplog.set_level(logging.INFO)
    final = gapped_driver.run_to_end(gapped_driver.spec(engine_class=HASTY, params={}))
    assert final["gateway"]["bars"] == GAPPED_REPLAYED
    assert final["gateway"]["order_count"] == GAPPED_REPLAYED - 1  # one limit order a bar reached it
    assert trades(final) == [] and final["orders"] == [] and final["stop_orders"] == []
    assert "撤单失败" not in caplog.text  # vnpy's "cancel failed, order not found"


def test_orders_working_across_a_restart_fill_as_in_the_backtester(gapped_driver, gapped_csv):
    oracle = backtest(gapped_csv, PatientStrategy, {})
    assert len(oracle.trades) >= 100 and oracle.stop_trades >= 40
    assert len(oracle.trades) - oracle.stop_trades >= 40  # limit orders fill too

    times = sorted(oracle.working)
    ends = [
        n
        for n in range(SESSION_BARS, GAPPED_REPLAYED, SESSION_BARS)
        if oracle.working[times[n - 1]][:2] == (1, 1)
    ]
    assert len(ends) >= 3
    spec = gapped_driver.spec(engine_class=PATIENT, params={})

    snapshot = None
    for played in ends[:3]:  # three stops, each at a session's end with both orders working
        engine, context = gapped_driver.hold_at(played, snapshot, engine_class=PATIENT, params={})
        snapshot = gapped_driver.stop(engine, context)
        assert snapshot["gateway"]["bars"] == played
        assert len(snapshot["stop_orders"]) == 1 and len(snapshot["gateway"]["orders"]) == 1
        assert [o["vt_orderid"] for o in snapshot["orders"]] == [
            f"REPLAY.{o['orderid']}" for o in snapshot["gateway"]["orders"]
        ]
        assert snapshot["fields"] == {"working": True}
    final = gapped_driver.run_to_end(spec, snapshot=snapshot)
    assert final["gateway"]["bars"] == GAPPED_REPLAYED
    assert trades(final) == oracle.trades


def test_the_strategy_hears_callbacks_in_the_backtesters_order(gapped_driver, gapped_csv, monkeypatch):
    monkeypatch.setattr(CallRecorder, "calls", [])
    backtest(gapped_csv, CallRecorder, {})
    expected = list(CallRecorder.calls)
    assert sum(c[0] == "stop" and c[1] == "TRIGGERED" for c in expected) >= 40
    assert sum(c[0] == "order" and c[1] == "CANCELLED" for c in expected) >= 40

    monkeypatch.setattr(CallRecorder, "calls", [])
    gapped_driver.run_to_end(gapped_driver.spec(engine_class=CALLS, params={}))
    # the file's last bar never reaches on_bar on the replay: BarGenerator finishes a
    # bar on the next tick, and there is none (its orders could not fill anyway)
    assert expected[-1][0] == "bar"
    assert CallRecorder.calls == expected[:-1]
