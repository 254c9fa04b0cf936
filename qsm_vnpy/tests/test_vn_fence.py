"""The fence: while ``context.lease_valid()`` is False the CTA engine sends no order,
places and triggers no stop order, and the replay accepts and fills none."""

from __future__ import annotations

import logging

import pytest
from vn_support import GAPPED_REPLAYED, STOP_STRATEGIES, trades

from qsm_vnpy import events, plugin

SID = "u:002050.SZ:k"


def settings(name: str) -> dict:
    return {"engine_class": STOP_STRATEGIES[name], "params": {}, "history_limit": 5000}


@pytest.mark.parametrize("name", sorted(STOP_STRATEGIES))
def test_a_fenced_strategy_sends_nothing_and_the_replay_records_no_trade(
    gapped_driver, stop_oracles, name, caplog
):
    assert stop_oracles[name].trades  # unfenced, it trades
    engine, context = gapped_driver.create(gapped_driver.spec(**settings(name)))
    asked = []

    def fence() -> bool:
        asked.append(1)
        return False

    context.fence = fence
    caplog.set_level(logging.ERROR)
    plugin.qsm_start_engine(engine=engine, context=context)
    assert not context.join_threads(120)
    final = gapped_driver.snapshot(engine, context)

    assert final["gateway"]["bars"] == GAPPED_REPLAYED
    assert trades(final) == [] and final["gateway"]["trade_count"] == 0
    assert final["gateway"]["order_count"] == 0  # nothing reached the gateway
    assert final["stop_orders"] == [] and final["orders"] == [] and final["variables"]["pos"] == 0
    assert len(asked) > GAPPED_REPLAYED  # asked for every order it would have sent, and every bar
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all(f"the lease of {SID} is not valid" in m for m in refusals)
    assert all(m.startswith(f"[{SID}]") for m in refusals)  # and on the strategy's logger


@pytest.mark.parametrize("name", sorted(STOP_STRATEGIES))
def test_the_fence_going_down_part_way_stops_every_trade_from_then_on(gapped_driver, stop_oracles, name):
    oracle = stop_oracles[name]
    cut = 2000
    engine, context = gapped_driver.create(gapped_driver.spec(**settings(name)))
    context.fence = lambda: engine.stream.cursor < engine.stream.start_index + cut
    plugin.qsm_start_engine(engine=engine, context=context)
    assert not context.join_threads(120)
    final = gapped_driver.snapshot(engine, context)

    down_from = sorted(oracle.working)[cut]  # the first bar crossed with the fence down
    before = [t for t in oracle.trades if t[4] < down_from]
    assert before and len(before) < len(oracle.trades)
    assert trades(final) == before


def test_the_replay_itself_accepts_and_fills_nothing_while_fenced(gapped_driver):
    from vnpy.trader.constant import Direction, Exchange, Offset, OrderType, Status
    from vnpy.trader.object import OrderRequest

    engine, context = gapped_driver.hold_at(5)
    gateway, stream, main = engine.gateway, engine.stream, engine.main
    up = {"on": True}
    context.fence = lambda: up["on"]

    def send(price: float) -> str:
        request = OrderRequest(
            symbol="002050",
            exchange=Exchange.SZSE,
            direction=Direction.LONG,
            type=OrderType.LIMIT,
            volume=1,
            price=price,
            offset=Offset.OPEN,
        )
        vt_orderid: str = events.call_on_event_thread(main.event_engine, lambda: gateway.send_order(request))
        return vt_orderid

    working = send(1000.0)  # above any price: fills on the next bar
    assert main.get_order(working).status == Status.SUBMITTING
    up["on"] = False
    refused = send(1000.0)
    assert main.get_order(refused).status == Status.REJECTED
    bar = stream.bars[stream.cursor]
    events.call_on_event_thread(main.event_engine, lambda: stream._cross(bar))
    assert stream.trade_count == 0 and main.get_order(working).status == Status.SUBMITTING

    up["on"] = True
    events.call_on_event_thread(main.event_engine, lambda: stream._cross(bar))
    assert stream.trade_count == 1 and main.get_order(working).status == Status.ALLTRADED
    gapped_driver.stop(engine, context)


def test_stop_orders_are_not_placed_nor_triggered_while_fenced(gapped_driver):
    engine, context = gapped_driver.hold_at(5)
    cta, main, gateway = engine.cta, engine.main, engine.stream
    strategy = cta.strategies[SID]
    up = {"on": True}
    context.fence = lambda: up["on"]
    bar = gateway.bars[gateway.cursor]

    placed = events.call_on_event_thread(main.event_engine, lambda: strategy.buy(bar.low, 1, stop=True))
    assert len(placed) == 1 and placed[0] in cta.stop_orders
    up["on"] = False
    assert events.call_on_event_thread(main.event_engine, lambda: strategy.buy(bar.low, 1, stop=True)) == []
    orders_before = gateway.order_count
    events.call_on_event_thread(main.event_engine, lambda: cta.cross_stop_orders(bar, SID))  # the bar reaches it
    assert list(cta.stop_orders) == placed and gateway.order_count == orders_before
    assert gateway.trade_count == 0

    up["on"] = True
    events.call_on_event_thread(main.event_engine, lambda: cta.cross_stop_orders(bar, SID))
    assert cta.stop_orders == {} and gateway.trade_count == 1
    gapped_driver.stop(engine, context)
