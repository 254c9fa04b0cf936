"""The oracle: backtrader itself. Through the adapter, and across stops and restores,
the final broker value and every order equal a plain ``cerebro.run()`` exactly."""

from __future__ import annotations

import time
from typing import Any

import pytest
from backtrader.strategies import SMA_CrossOver
from bt_support import BARS, COOLDOWN, plain_run
from bt_support import assert_same_as_oracle_json as assert_same_as_oracle

from qsm_backtrader import plugin


def bar_of(oracle: dict[str, Any], iso: str) -> int:
    """The 1-based bar number of the bar dated ``iso``."""
    return oracle["dates"].index(iso[:10]) + 1


def test_adapter_run_equals_plain_cerebro(driver, sma_oracle):
    assert len(sma_oracle["finished"]) > 50  # the series really trades
    final = driver.run_to_end(driver.spec())
    assert_same_as_oracle(final, sma_oracle)


def stop_points(oracle: dict[str, Any]) -> dict[str, int]:
    """Bars to stop after, each a different situation for the restore."""
    orders = oracle["orders"]
    buy = next(o for o in orders[10:] if o.isbuy())
    sell = next(o for o in orders[10:] if o.issell())
    created = lambda o: bar_of(oracle, bt_iso(o.created.dt))  # noqa: E731
    return {
        "warming_up": 5,  # before the slow SMA has its 30 bars
        "buy_in_flight": created(buy),  # an order was just created; it fills on the next bar
        "sell_in_flight": created(sell),
        "position_open": created(buy) + 3,
        "last_bar_but_one": BARS - 1,
    }


def bt_iso(num: float) -> str:
    import backtrader as bt

    return bt.num2date(num).isoformat()


@pytest.mark.parametrize(
    "where", ["warming_up", "buy_in_flight", "sell_in_flight", "position_open", "last_bar_but_one"]
)
def test_stop_then_restore_equals_uninterrupted_run(driver, sma_oracle, where):
    bars = stop_points(sma_oracle)[where]
    engine, context = driver.hold_at(bars)
    snap = driver.stop(engine, context)
    assert snap["bars"] == bars
    if where.endswith("in_flight"):
        assert len(snap["submitted"]) == 1 and len(snap["notifications"]) == 1
    if where == "position_open":
        assert snap["positions"][0]["attrs"]["size"] != 0 and not snap["submitted"]

    final = driver.run_to_end(driver.spec(), snapshot=snap)
    assert_same_as_oracle(final, sma_oracle)


def test_two_stops_in_a_row(driver, sma_oracle):
    first = driver.stop(*driver.hold_at(700))
    spec = driver.spec(feed={"hold_after_bars": 1900})
    second = driver.stop(*driver.hold_at(1900, spec, snapshot=first))
    assert second["bars"] == 1900
    assert_same_as_oracle(driver.run_to_end(driver.spec(), snapshot=second), sma_oracle)


def test_snapshots_taken_while_running_each_resume_exactly(driver, sma_oracle):
    """What a crash leaves: periodic snapshots from a running engine, at any bar."""
    engine, context = driver.start(driver.spec(feed={"pace": 4000}))
    snaps = []
    while context.threads[0].is_alive() and len(snaps) < 4:
        time.sleep(0.1)  # spaces the snapshots out; a loaded machine may not have run a bar yet
        snap = driver.snapshot(engine, context)
        if snap["bars"]:
            snaps.append(snap)
    driver.stop(engine, context)
    taken = sorted({s["bars"] for s in snaps})
    assert len(taken) >= 2 and taken[0] < BARS, taken
    for snap in snaps[:3]:
        assert_same_as_oracle(driver.run_to_end(driver.spec(), snapshot=snap), sma_oracle)


def losing_trades(strategy: Any) -> list[Any]:
    return [t for runs in strategy._trades[strategy.data].values() for t in runs if t.isclosed and t.pnlcomm < 0]


def test_strategy_state_survives_a_restart(driver, prices_csv):
    """SmaCrossCooldown remembers its order in flight, its cooldown and its losses;
    the adapter carries its open trade, whose loss starts the next cooldown."""
    params = {"fast": 10, "slow": 30, "cooldown": 10}
    oracle = plain_run(prices_csv, COOLDOWN, params)
    strat = oracle["strategy"]
    assert strat.losses > 5
    spec = driver.spec(COOLDOWN, params=params)
    uninterrupted = driver.run_to_end(spec)
    assert_same_as_oracle(uninterrupted, oracle)
    assert uninterrupted["strategy_state"]["attrs"]["losses"] == strat.losses

    loss = losing_trades(strat)[3]
    sells = [o for o in oracle["orders"] if o.issell()]
    cases = {
        "cooling_down": loss.barclose + 1,
        "order_in_flight": bar_of(oracle, bt_iso(sells[8].created.dt)),
        "losing_trade_open": loss.baropen + 1,
    }
    for case, bars in cases.items():
        held = driver.spec(COOLDOWN, params=params, feed={"hold_after_bars": bars})
        snap = driver.stop(*driver.hold_at(bars, held))
        state = snap["strategy_state"]["attrs"]
        if case == "cooling_down":
            assert state["cooldown_left"] > 0
        elif case == "order_in_flight":
            assert state["order"]["__qsm__"] == "order"
        else:
            assert len(snap["trades"]) == 1
        final = driver.run_to_end(spec, snapshot=snap)
        assert_same_as_oracle(final, oracle)
        assert final["strategy_state"]["attrs"]["losses"] == strat.losses, case


class Journal(SMA_CrossOver):
    """SMA_CrossOver writing down every order and trade notification it receives."""

    qsm_state = ["journal"]

    def __init__(self) -> None:
        super().__init__()
        self.journal: list[list[Any]] = []

    def notify_order(self, order: Any) -> None:
        self.journal.append(["order", len(self), order.getstatusname(), order.size, order.executed.price])

    def notify_trade(self, trade: Any) -> None:
        self.journal.append(["trade", len(self), trade.status, trade.size, trade.pnlcomm, trade.barlen])


def test_notifications_resume_exactly(driver, sma_oracle, prices_csv):
    """In-flight notifications and open trades are delivered after a restore as before."""
    oracle = plain_run(prices_csv, f"{__name__}.Journal", {"fast": 10, "slow": 30})
    expected = [list(entry) for entry in oracle["strategy"].journal]
    assert {e[2] for e in expected if e[0] == "order"} >= {"Submitted", "Accepted", "Completed"}
    spec = driver.spec(f"{__name__}.Journal")
    points = stop_points(sma_oracle)
    for where in ("buy_in_flight", "position_open"):
        held = driver.spec(f"{__name__}.Journal", feed={"hold_after_bars": points[where]})
        snap = driver.stop(*driver.hold_at(points[where], held))
        final = driver.run_to_end(spec, snapshot=snap)
        assert final["strategy_state"]["attrs"]["journal"] == expected, where


def test_a_stop_at_any_moment_resumes_exactly(driver, sma_oracle):
    """No hold: the stop lands wherever the running replay is."""
    engine, context = driver.start(driver.spec(feed={"pace": 5000}))
    while (driver.snapshot(engine, context) or {"bars": 0})["bars"] < 100:
        time.sleep(0.02)
    started = time.monotonic()
    snap = driver.stop(engine, context)
    assert time.monotonic() - started < 2.0
    assert 0 < snap["bars"] < BARS
    assert_same_as_oracle(driver.run_to_end(driver.spec(), snapshot=snap), sma_oracle)


def test_restoring_a_finished_run_changes_nothing(driver, sma_oracle):
    final = driver.run_to_end(driver.spec())
    again = driver.run_to_end(driver.spec(), snapshot=final)
    assert again == final
    assert_same_as_oracle(again, sma_oracle)


def test_a_restored_run_does_not_hold_again_at_a_bar_it_took_over_past(driver, sma_oracle):
    """The same document (same hold_after_bars) restarted from its snapshot runs on."""
    held = driver.spec(feed={"hold_after_bars": 1200})
    snap = driver.stop(*driver.hold_at(1200, held))
    assert_same_as_oracle(driver.run_to_end(held, snapshot=snap), sma_oracle)


def test_the_core_stop_event_alone_ends_a_held_run_where_it_held(driver, sma_oracle):
    engine, context = driver.hold_at(1200)
    context.stop_event.set()
    assert not context.join_threads(2), "the held run did not see the stop event"
    snap = driver.snapshot(engine, context)
    assert snap["bars"] == 1200
    assert_same_as_oracle(driver.run_to_end(driver.spec(), snapshot=snap), sma_oracle)


def test_the_core_stop_event_alone_ends_an_undisturbed_run_at_its_next_bar(driver):
    """No hold, pace or request: the per-bar check must still see the event."""
    spec = driver.spec()
    engine, context = driver.create(spec)
    context.stop_event.set()  # before the first bar
    plugin.qsm_start_engine(engine=engine, context=context)
    assert not context.join_threads(5)
    assert driver.snapshot(engine, context)["bars"] <= 1
