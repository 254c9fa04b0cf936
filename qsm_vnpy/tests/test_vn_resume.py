"""The resume check's three policies, a strategy exception, and snapshots refused
with a message naming the bad key."""

from __future__ import annotations

import pytest
from vn_support import REPLAYED, trades

from qsm_vnpy import plugin
from strategy_manager.core.errors import EngineHalted, SnapshotError


@pytest.fixture(scope="module")
def mid(tmp_path_factory, bars_csv):
    """A snapshot at bar 600, where DoubleMa holds a position."""
    from vn_support import Driver

    d = Driver(tmp_path_factory.mktemp("mid"), bars_csv)
    try:
        engine, context = d.hold_at(600)
        snap = d.stop(engine, context)
    finally:
        d.close()
    assert snap["variables"]["pos"] != 0
    return snap


def test_halt_keeps_the_strategy_from_trading_and_names_both_numbers(driver, mid):
    pos = mid["variables"]["pos"]
    engine, context = driver.create(driver.spec(position=pos + 2), snapshot=mid)
    with pytest.raises(EngineHalted) as caught:
        plugin.qsm_start_engine(engine=engine, context=context)
    message = str(caught.value)
    assert f"the snapshot has pos {pos:g}, gateway REPLAY reports {pos + 2:g}" in message
    assert "\n" not in message
    assert engine.cta.strategies["u:002050.SZ:k"].trading is False
    assert context.threads == []  # the replay never began


def test_trust_broker_takes_the_gateways_position(driver, mid):
    pos = mid["variables"]["pos"]
    engine, context = driver.start(driver.spec(position=pos + 2, vnpy={"on_mismatch": "trust_broker"}), mid)
    assert engine.cta.strategies["u:002050.SZ:k"].pos == pos + 2
    assert driver.stop(engine, context)["variables"]["pos"] == pos + 2


def test_trust_snapshot_keeps_the_strategys_position(driver, mid):
    pos = mid["variables"]["pos"]
    engine, context = driver.start(driver.spec(position=pos + 2, vnpy={"on_mismatch": "trust_snapshot"}), mid)
    assert engine.cta.strategies["u:002050.SZ:k"].pos == pos
    driver.stop(engine, context)


def test_matching_positions_resume_without_a_word(driver, mid, oracle, caplog):
    final = driver.run_to_end(driver.spec(), snapshot=mid)
    assert trades(final) == oracle and final["gateway"]["bars"] == REPLAYED
    assert "mismatch" not in caplog.text


def test_restored_variables_are_put_back_after_on_init(driver, mid, monkeypatch):
    from vnpy_ctastrategy.strategies.double_ma_strategy import DoubleMaStrategy

    at_start = {}
    original = DoubleMaStrategy.on_start

    def on_start(self):  # vnpy calls it after on_init and the restore, before any new bar
        at_start.update({name: getattr(self, name) for name in mid["variables"]})
        original(self)

    monkeypatch.setattr(DoubleMaStrategy, "on_start", on_start)
    engine, context = driver.start(driver.spec(), mid)
    driver.stop(engine, context)
    assert at_start == mid["variables"]


#: A working order of the replay's book, as a snapshot holds it.
ORDER = {
    "orderid": "3",
    "direction": "LONG",
    "offset": "OPEN",
    "price": 20.0,
    "volume": 1,
    "status": "NOTTRADED",
    "datetime": None,
    "reference": "",
}


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda s: s.update(format=7), "'format'"),
        (lambda s: s.update({"class": "AtrRsiStrategy"}), "'class'"),
        (lambda s: s["variables"].pop("pos"), "'variables.pos'"),
        (lambda s: s["gateway"].update(position="3"), "'gateway.position'"),
        (lambda s: s["gateway"].update(last_bar="2030-01-01T09:30:00+08:00"), "last replayed bar"),
        (
            lambda s: s.update(stop_orders=[{"stop_orderid": "STOP.1"}]),
            r"'stop_orders\[0\].direction' is None",
        ),
        (lambda s: s.update(stop_order_count=-1), "'stop_order_count'"),
        (lambda s: s["gateway"].update(orders=[dict(ORDER, status="ALLTRADED")]), "not a working order's"),
        (lambda s: s.update(orders={}), "'orders' is not a list"),
        (lambda s: s["gateway"].update(orders=[{"orderid": 3}]), r"'gateway.orders\[0\].orderid' is missing"),
        (
            lambda s: s.update(fields={"cta_engine": 1}),
            "'fields.cta_engine' is not a field of DoubleMaStrategy",
        ),
    ],
)
def test_a_corrupt_snapshot_is_refused_naming_the_key(driver, mid, mutate, key):
    import copy

    bad = copy.deepcopy(mid)
    mutate(bad)
    with pytest.raises(SnapshotError, match=key):
        engine, context = driver.create(driver.spec(), snapshot=bad)
        plugin.qsm_start_engine(engine=engine, context=context)


def test_an_exception_in_the_strategy_is_a_crash_of_that_strategy(driver, monkeypatch):
    from vnpy_ctastrategy.strategies.double_ma_strategy import DoubleMaStrategy

    seen = {"bars": 0}
    original = DoubleMaStrategy.on_bar

    def on_bar(self, bar):
        seen["bars"] += self.trading
        if seen["bars"] == 50:
            raise ZeroDivisionError("boom in on_bar")
        original(self, bar)

    monkeypatch.setattr(DoubleMaStrategy, "on_bar", on_bar)
    crashes = []
    engine, context = driver.create(driver.spec())
    context.on_crash = crashes.append
    plugin.qsm_start_engine(engine=engine, context=context)
    context.join_threads(60)
    assert len(crashes) == 1  # vnpy stops delivering to a strategy that raised
    assert "on_tick raised ZeroDivisionError: boom in on_bar" in str(crashes[0])


def test_an_exception_in_on_init_fails_the_start_with_its_message(driver, monkeypatch):
    from vnpy_ctastrategy.strategies.double_ma_strategy import DoubleMaStrategy

    def on_init(self):
        raise KeyError("no_such_param")

    monkeypatch.setattr(DoubleMaStrategy, "on_init", on_init)
    engine, context = driver.create(driver.spec())
    with pytest.raises(Exception, match="on_init raised KeyError: 'no_such_param'"):
        plugin.qsm_start_engine(engine=engine, context=context)


def test_the_replayed_bar_after_a_restore_reaches_the_strategy_before_it_trades(driver, mid, monkeypatch):
    from vnpy_ctastrategy.strategies.double_ma_strategy import DoubleMaStrategy

    seen = []
    original = DoubleMaStrategy.on_tick

    def on_tick(self, tick):
        seen.append((tick.datetime.isoformat(), self.trading))
        original(self, tick)

    monkeypatch.setattr(DoubleMaStrategy, "on_tick", on_tick)
    engine, context = driver.start(driver.spec(hold_after_bars=601), mid)
    assert engine.stream.holding.wait(30)
    driver.stop(engine, context)
    last = mid["gateway"]["last_bar"]
    # the bar played last before the snapshot comes again, four ticks, while not trading
    assert [t for t, trading in seen[:4]] == [last.replace(":00+", f":{s:02d}+") for s in (0, 15, 30, 45)]
    assert [trading for _, trading in seen[:4]] == [False] * 4
    assert all(trading for _, trading in seen[4:]) and len(seen) == 8  # then one new bar, trading


def test_a_snapshot_of_format_1_restores_without_working_orders(driver, mid, oracle):
    """Snapshots written before working orders were saved still resume."""
    import copy

    old = copy.deepcopy(mid)
    for key in ("fields", "stop_order_count", "stop_orders", "orders"):
        old.pop(key)
    old["gateway"].pop("orders")
    old["format"] = old["gateway"]["format"] = 1
    final = driver.run_to_end(driver.spec(), snapshot=old)
    assert trades(final) == oracle and final["format"] == 2
