"""Working orders across a restart on a live gateway: the snapshot lists the strategy's
open orders and its stop orders; on a restore the gateway's open orders for the
symbol are compared with it. Known ones are attached to the strategy again, stop
orders are put back, and an open order the snapshot does not know is a mismatch
under ``on_mismatch``."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest
from vnpy.trader.constant import Direction, Exchange, Offset, Product, Status
from vnpy.trader.gateway import BaseGateway
from vnpy.trader.object import ContractData, OrderData, OrderRequest, PositionData

from qsm_vnpy import events, plugin
from strategy_manager.core.errors import EngineHalted

SID = "u:002050.SZ:k"


class FakeGateway(BaseGateway):
    """A live gateway as far as the adapter can tell: it reports the contract, the
    position and the open orders its setting lists; it takes orders and cancels
    (writing them down) and never fills."""

    default_name = "FAKE"
    default_setting: dict[str, Any] = {}
    exchanges = [Exchange.SZSE]

    def __init__(self, event_engine: Any, gateway_name: str) -> None:
        super().__init__(event_engine, gateway_name)
        self.count = 100
        self.cancelled: list[str] = []

    def connect(self, setting: dict[str, Any]) -> None:
        self.on_contract(
            ContractData(
                symbol="002050",
                exchange=Exchange.SZSE,
                name="002050",
                product=Product.EQUITY,
                size=1,
                pricetick=0.01,
                net_position=True,
                history_data=True,
                gateway_name=self.gateway_name,
            )
        )
        position = setting.get("position", 0)
        self.on_position(
            PositionData(
                symbol="002050",
                exchange=Exchange.SZSE,
                direction=Direction.NET,
                volume=position,
                gateway_name=self.gateway_name,
            )
        )
        for orderid, direction, volume, price in setting.get("open_orders", []):
            self.on_order(
                OrderData(
                    symbol="002050",
                    exchange=Exchange.SZSE,
                    orderid=orderid,
                    direction=Direction[direction],
                    offset=Offset.OPEN,
                    price=price,
                    volume=volume,
                    status=Status.NOTTRADED,
                    gateway_name=self.gateway_name,
                )
            )

    def send_order(self, req: OrderRequest) -> str:
        self.count += 1
        order = req.create_order_data(str(self.count), self.gateway_name)
        order.status = Status.NOTTRADED
        self.on_order(copy.copy(order))
        return order.vt_orderid

    def cancel_order(self, req: Any) -> None:
        self.cancelled.append(req.orderid)

    def query_history(self, req: Any) -> list[Any]:
        return []

    def close(self) -> None: ...
    def subscribe(self, req: Any) -> None: ...
    def query_account(self) -> None: ...
    def query_position(self) -> None: ...


def spec(driver, on_mismatch: str = "halt"):
    gateway = {"name": "FAKE", "class": "test_vn_live_orders.FakeGateway"}
    return driver.spec(vnpy={"gateway": gateway, "position_wait": 0, "on_mismatch": on_mismatch})


def broker(**setting: Any) -> dict[str, Any]:
    """The fake broker's state, set by the operator (a document may not set a live
    gateway's connection settings)."""
    return {"gateways": {"FAKE": setting}}


def on_event_thread(engine, fn):
    return events.call_on_event_thread(engine.main.event_engine, fn)


@pytest.fixture
def saved(driver):
    """A snapshot taken while the strategy had a limit order (FAKE.101) at the gateway
    and a stop order (STOP.1) in the CTA engine."""
    engine, context = driver.start(spec(driver))
    strategy = engine.cta.strategies[SID]
    sent = on_event_thread(engine, lambda: strategy.buy(19.5, 1) + strategy.short(18.25, 2, stop=True))
    assert sent == ["FAKE.101", "STOP.1"]
    snapshot = driver.stop(engine, context)
    assert engine.gateway.cancelled == ["101"]  # like vnpy, stopping cancels the strategy's orders
    assert snapshot["orders"] == [
        {
            "vt_orderid": "FAKE.101",
            "type": "LIMIT",
            "direction": "LONG",
            "offset": "OPEN",
            "price": 19.5,
            "volume": 1,
            "traded": 0,
            "status": "NOTTRADED",
        }
    ]
    assert [
        (s["stop_orderid"], s["direction"], s["price"], s["volume"]) for s in snapshot["stop_orders"]
    ] == [("STOP.1", "SHORT", 18.25, 2)]
    assert snapshot["stop_order_count"] == 1 and snapshot["gateway"] is None
    return snapshot


def test_known_open_orders_are_attached_again_and_stop_orders_put_back(driver, saved):
    engine, context = driver.start(spec(driver), saved, **broker(open_orders=[["101", "LONG", 1, 19.5]]))
    cta, strategy = engine.cta, engine.cta.strategies[SID]
    assert cta.strategy_orderid_map[SID] == {"FAKE.101", "STOP.1"}
    assert cta.orderid_strategy_map["FAKE.101"] is strategy
    stop = cta.stop_orders["STOP.1"]
    assert (stop.direction, stop.offset, stop.price, stop.volume) == (Direction.SHORT, Offset.OPEN, 18.25, 2)
    assert on_event_thread(engine, lambda: strategy.sell(21.0, 1, stop=True)) == ["STOP.2"]  # ids go on

    on_event_thread(engine, strategy.cancel_all)
    assert engine.gateway.cancelled == ["101"]  # the strategy's cancel reaches the re-attached order
    assert cta.stop_orders == {}
    driver.stop(engine, context)


def test_an_open_order_the_snapshot_does_not_know_halts_by_default(driver, saved):
    open_orders = [["101", "LONG", 1, 19.5], ["7", "SHORT", 3, 20.25]]
    engine, context = driver.create(spec(driver), snapshot=saved, **broker(open_orders=open_orders))
    with pytest.raises(EngineHalted) as caught:
        plugin.qsm_start_engine(engine=engine, context=context)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{SID}: ")
    assert (
        "gateway FAKE has open order(s) on 002050.SZSE the snapshot does not know: FAKE.7 (SHORT OPEN 3 @ 20.25)"
        in message
    )
    assert "FAKE.101" not in message
    assert engine.cta.strategies[SID].trading is False


def test_trust_broker_adopts_the_unknown_order(driver, saved, caplog):
    open_orders = [["101", "LONG", 1, 19.5], ["7", "SHORT", 3, 20.25]]
    engine, context = driver.start(spec(driver, "trust_broker"), saved, **broker(open_orders=open_orders))
    strategy = engine.cta.strategies[SID]
    on_event_thread(engine, strategy.cancel_all)
    assert sorted(engine.gateway.cancelled) == ["101", "7"]
    assert "trusting the broker" in caplog.text
    driver.stop(engine, context)


def test_trust_snapshot_leaves_the_unknown_order_alone(driver, saved, caplog):
    open_orders = [["101", "LONG", 1, 19.5], ["7", "SHORT", 3, 20.25]]
    engine, context = driver.start(spec(driver, "trust_snapshot"), saved, **broker(open_orders=open_orders))
    strategy = engine.cta.strategies[SID]
    on_event_thread(engine, strategy.cancel_all)
    assert engine.gateway.cancelled == ["101"]
    assert "unknown orders are left alone" in caplog.text and "FAKE.7" in caplog.text
    driver.stop(engine, context)


def test_a_known_order_no_longer_open_is_reported_and_the_stop_orders_still_come_back(driver, saved, caplog):
    caplog.set_level(logging.INFO)
    engine, context = driver.start(spec(driver), saved)
    assert "order(s) FAKE.101 of the snapshot no longer open at gateway FAKE" in caplog.text
    assert engine.cta.strategy_orderid_map[SID] == {"STOP.1"}
    driver.stop(engine, context)


def test_a_position_and_an_order_mismatch_are_reported_together(driver, saved):
    engine, context = driver.create(
        spec(driver), snapshot=saved, **broker(position=2, open_orders=[["7", "LONG", 1, 19.0]])
    )
    with pytest.raises(EngineHalted) as caught:
        plugin.qsm_start_engine(engine=engine, context=context)
    assert "the snapshot has pos 0, gateway FAKE reports 2; gateway FAKE has open order(s)" in str(
        caught.value
    )


def test_a_stop_order_a_tick_triggers_is_not_sent_while_fenced(driver, caplog):
    from datetime import datetime

    from vnpy.trader.object import TickData

    engine, context = driver.start(spec(driver))
    strategy, gateway = engine.cta.strategies[SID], engine.gateway
    up = {"on": True}
    context.fence = lambda: up["on"]
    [stop] = on_event_thread(engine, lambda: strategy.sell(19.0, 1, stop=True))

    def tick(price: float) -> None:  # a tick at the stop price: vnpy's live rule triggers it
        gateway.on_tick(
            TickData(
                symbol="002050",
                exchange=Exchange.SZSE,
                datetime=datetime(2026, 9, 15, 9, 31),
                name="002050",
                last_price=price,
                bid_price_5=price,
                gateway_name="FAKE",
            )
        )
        events.barrier(engine.main.event_engine)

    up["on"] = False
    tick(19.0)
    assert gateway.count == 100 and stop in engine.cta.stop_orders  # nothing sent, still working
    assert f"refused: the lease of {SID} is not valid" in caplog.text
    up["on"] = True
    tick(19.0)
    assert gateway.count == 101 and engine.cta.stop_orders == {}
    driver.stop(engine, context)


def test_a_snapshot_of_format_1_does_not_check_open_orders(driver, saved, caplog):
    caplog.set_level(logging.INFO)
    old = {k: v for k, v in saved.items() if k not in ("fields", "stop_order_count", "stop_orders", "orders")}
    old["format"] = 1
    engine, context = driver.start(spec(driver), old, **broker(open_orders=[["7", "SHORT", 3, 20.25]]))
    assert (
        "the snapshot predates saved orders; 1 open order(s) at gateway FAKE are not checked" in caplog.text
    )
    assert engine.cta.strategy_orderid_map[SID] == set() and engine.cta.stop_orders == {}
    driver.stop(engine, context)


def test_a_stop_order_id_another_strategy_of_the_account_took_is_put_back_under_a_new_one(
    driver, saved, caplog
):
    """The account's engine gave the snapshot's STOP.1 to another strategy meanwhile:
    the restored stop order comes back as STOP.2, and the log says so."""
    from strategy_manager.core.context import Account

    account = Account(
        "live",
        "vnpy",
        {
            "gateway": "FAKE",
            "class": "test_vn_live_orders.FakeGateway",
            "setting": {"open_orders": [["101", "LONG", 1, 19.5]]},
        },
    )
    session = driver.open_session(account)
    gateway = {"name": "FAKE", "class": "test_vn_live_orders.FakeGateway"}
    on_account = {"gateway": gateway, "position_wait": 0}
    other, _ = driver.start(driver.spec("other", vnpy=on_account), session=session, account=account)
    other_strategy = other.cta.strategies["u:002050.SZ:other"]
    assert on_event_thread(other, lambda: other_strategy.sell(30.0, 1, stop=True)) == ["STOP.1"]
    with caplog.at_level(logging.WARNING):
        engine, _ = driver.start(driver.spec(vnpy=on_account), saved, session=session, account=account)
    cta = engine.cta
    assert cta is other.cta
    assert cta.stop_orders["STOP.1"].strategy_name == "u:002050.SZ:other"
    assert cta.stop_orders["STOP.2"].strategy_name == SID and cta.stop_orders["STOP.2"].price == 18.25
    assert cta.strategy_orderid_map[SID] == {"FAKE.101", "STOP.2"}
    assert "the orders were put back as STOP.1 -> STOP.2" in caplog.text
