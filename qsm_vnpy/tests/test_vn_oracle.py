"""The oracle: DoubleMaStrategy through the adapter and the replay gateway trades
exactly as in vnpy's BacktestingEngine, with and without a stop part-way."""

from __future__ import annotations

from vn_support import REPLAYED, trades


def test_an_uninterrupted_replay_trades_as_the_backtester(driver, oracle):
    final = driver.run_to_end(driver.spec())
    assert final["gateway"]["bars"] == REPLAYED
    assert trades(final) == oracle
    # the strategy's pos and the paper broker's agree with the trades
    net = sum(t[3] if t[0] == "LONG" else -t[3] for t in oracle)
    assert final["variables"]["pos"] == final["gateway"]["position"] == net


def test_a_stop_part_way_and_a_restore_give_the_same_trades(driver, oracle):
    engine, context = driver.hold_at(1000)
    mid = driver.stop(engine, context)
    assert mid["gateway"]["bars"] == 1000
    assert trades(mid) == [t for t in oracle if t[4] <= mid["gateway"]["last_bar"]]

    final = driver.run_to_end(driver.spec(), snapshot=mid)
    assert final["gateway"]["bars"] == REPLAYED
    assert trades(final) == oracle


def test_two_stops_at_different_bars_still_give_the_same_trades(driver, oracle):
    engine, context = driver.hold_at(7)
    first = driver.stop(engine, context)
    engine, context = driver.hold_at(2500, snapshot=first)
    second = driver.stop(engine, context)
    assert second["gateway"]["bars"] == 2500
    assert trades(driver.run_to_end(driver.spec(), snapshot=second)) == oracle


def test_a_snapshot_while_running_is_taken_between_two_bars(driver, oracle):
    engine, context = driver.start(driver.spec(pace=2000))
    snap = driver.snapshot(engine, context)
    driver.stop(engine, context)
    played = snap["gateway"]["bars"]
    assert 0 <= played < REPLAYED
    assert trades(snap) == [
        t for t in oracle if snap["gateway"]["last_bar"] and t[4] <= snap["gateway"]["last_bar"]
    ]
    assert trades(driver.run_to_end(driver.spec(), snapshot=snap)) == oracle
