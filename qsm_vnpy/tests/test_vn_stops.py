"""Strategies that trade through stop orders, AtrRsiStrategy and TurtleSignalStrategy,
trade on the replay gateway exactly as in vnpy's BacktestingEngine (bar mode), on
6,000 replayed 1-minute bars over 25 sessions with opening gaps: uninterrupted, and
stopped at a session's last bar while a stop order is working, then restarted."""

from __future__ import annotations

import pytest
from vn_support import GAPPED_REPLAYED, STOP_STRATEGIES, Backtest, session_end_with_a_stop_working, trades

#: Fewest trades, and trades from stop orders, each strategy must make for the
#: comparison to mean something (the backtester makes 421/210 and 1328/1328).
MINIMUM = {"atr_rsi": (300, 150), "turtle": (1000, 1000)}


def settings(name: str) -> dict:
    """The document's settings for the strategy, default parameters (Turtle makes more
    trades than a snapshot keeps by default)."""
    return {"engine_class": STOP_STRATEGIES[name], "params": {}, "history_limit": 5000}


@pytest.mark.parametrize("name", sorted(STOP_STRATEGIES))
def test_an_uninterrupted_replay_trades_as_the_backtester(gapped_driver, stop_oracles, name):
    oracle: Backtest = stop_oracles[name]
    least, least_from_stops = MINIMUM[name]
    assert len(oracle.trades) >= least and oracle.stop_trades >= least_from_stops

    final = gapped_driver.run_to_end(gapped_driver.spec(**settings(name)))
    assert final["gateway"]["bars"] == GAPPED_REPLAYED
    assert trades(final) == oracle.trades
    net = sum(t[3] if t[0] == "LONG" else -t[3] for t in oracle.trades)
    assert final["variables"]["pos"] == final["gateway"]["position"] == net


@pytest.mark.parametrize("name", sorted(STOP_STRATEGIES))
def test_a_stop_at_a_sessions_last_bar_with_a_stop_order_working_resumes_exactly(
    gapped_driver, stop_oracles, name
):
    oracle: Backtest = stop_oracles[name]
    played, last_bar = session_end_with_a_stop_working(oracle)
    assert last_bar.endswith("14:59:00+08:00")

    engine, context = gapped_driver.hold_at(played, **settings(name))
    mid = gapped_driver.stop(engine, context)
    assert mid["gateway"]["last_bar"] == last_bar
    stops, limits, pos = oracle.working[last_bar]
    assert len(mid["stop_orders"]) == stops >= 1
    assert len(mid["gateway"]["orders"]) == len(mid["orders"]) == limits
    assert mid["variables"]["pos"] == pos != 0
    assert trades(mid) == [t for t in oracle.trades if t[4] <= last_bar]

    final = gapped_driver.run_to_end(gapped_driver.spec(**settings(name)), snapshot=mid)
    assert final["gateway"]["bars"] == GAPPED_REPLAYED
    assert trades(final) == oracle.trades
