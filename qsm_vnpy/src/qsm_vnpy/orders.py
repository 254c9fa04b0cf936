"""A CTA strategy's working orders in its snapshot, and putting them back on a restore.

Two kinds, kept in two places:

* **Stop orders** (``self.buy(price, volume, stop=True)`` on a contract without
  server-side stops) live in vnpy's ``CtaEngine`` itself, not at the broker. They
  are the engine's state: the snapshot holds them, with the engine's stop-order
  counter, and a restore puts them back as they were.
* **Orders at the gateway** (limit orders, and stop orders on a contract that
  supports them) belong to the broker. The snapshot lists those the strategy had
  working. On a restore the gateway's open orders for the symbol are compared with
  the list (:mod:`qsm_vnpy.resume`): those the snapshot knew are attached to the
  strategy again (their fills and cancels reach it, its ``cancel_all`` cancels
  them); an open order no strategy of the account knows is a mismatch, decided by
  ``on_mismatch`` as a position is; one it knew that is no longer open was filled
  or cancelled meanwhile (a fill shows in the position check).

The functions that change the engine run on vnpy's event thread (the runner sees
to it), where the CTA engine reads these maps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vnpy.trader.constant import Direction, Offset, Status
from vnpy.trader.engine import MainEngine
from vnpy.trader.object import OrderData
from vnpy_ctastrategy.base import STOPORDER_PREFIX, StopOrder, StopOrderStatus
from vnpy_ctastrategy.engine import CtaEngine
from vnpy_ctastrategy.template import CtaTemplate

from strategy_manager.core.errors import SnapshotError


def capture(cta: CtaEngine, main: MainEngine, sid: str) -> dict[str, Any]:
    """The snapshot keys ``stop_order_count``, ``stop_orders`` and ``orders`` of strategy ``sid``."""
    stops = [_stop_state(s) for s in cta.stop_orders.values() if s.strategy_name == sid]
    working = []
    for vt_orderid in sorted(cta.strategy_orderid_map.get(sid, ())):
        if vt_orderid.startswith(STOPORDER_PREFIX):
            continue
        order = main.get_order(vt_orderid)
        if order is not None and order.is_active():
            working.append(_order_state(order))
    return {"stop_order_count": cta.stop_order_count, "stop_orders": stops, "orders": working}


def put_back_stops(cta: CtaEngine, strategy: CtaTemplate, snapshot: dict[str, Any]) -> dict[str, str]:
    """Put the snapshot's stop orders back in the engine, without telling the strategy
    (it was told when it placed them). Returns the ids that were taken in the engine
    already, each with the new id its order got."""
    cta.stop_order_count = max(cta.stop_order_count, snapshot.get("stop_order_count", 0))
    renamed = {}
    for saved in snapshot.get("stop_orders", []):
        stop_orderid = saved["stop_orderid"]
        if stop_orderid in cta.stop_orders:  # another strategy's of the engine (from another session)
            cta.stop_order_count += 1
            renamed[stop_orderid] = f"{STOPORDER_PREFIX}.{cta.stop_order_count}"
            stop_orderid = renamed[stop_orderid]
        stop_order = StopOrder(
            vt_symbol=strategy.vt_symbol,
            direction=Direction[saved["direction"]],
            offset=Offset[saved["offset"]],
            price=saved["price"],
            volume=saved["volume"],
            stop_orderid=stop_orderid,
            strategy_name=strategy.strategy_name,
            datetime=datetime.fromisoformat(saved["datetime"]),
            lock=saved["lock"],
            net=saved["net"],
            status=StopOrderStatus.WAITING,
        )
        cta.stop_orders[stop_order.stop_orderid] = stop_order
        cta.strategy_orderid_map[strategy.strategy_name].add(stop_order.stop_orderid)
    return renamed


def attach(cta: CtaEngine, strategy: CtaTemplate, vt_orderids: list[str]) -> None:
    """Route these gateway orders' events to ``strategy`` again, as if it had sent them."""
    for vt_orderid in vt_orderids:
        cta.orderid_strategy_map[vt_orderid] = strategy
        cta.strategy_orderid_map[strategy.strategy_name].add(vt_orderid)


def describe(order: OrderData) -> str:
    """An open order in one phrase, for the mismatch message."""
    assert order.direction is not None
    return (
        f"{order.vt_orderid} ({order.direction.name} {order.offset.name} "
        f"{order.volume - order.traded:g} @ {order.price:g})"
    )


def validate(snapshot: dict[str, Any], sid: str) -> None:
    """Refuse working orders of the wrong shape, naming the key (all three keys are
    absent from snapshots of format 1)."""
    count = snapshot.get("stop_order_count", 0)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise SnapshotError(f"{sid}: snapshot key 'stop_order_count' is not a count")
    for key, fields in (("stop_orders", _STOP_FIELDS), ("orders", _ORDER_FIELDS)):
        items = snapshot.get(key, [])
        if not isinstance(items, list):
            raise SnapshotError(f"{sid}: snapshot key '{key}' is not a list")
        for index, item in enumerate(items):
            check_fields(item, fields, sid, f"{key}[{index}]")
    for index, saved in enumerate(snapshot.get("stop_orders", [])):
        where = f"{sid}: snapshot key 'stop_orders[{index}]"
        if not saved["stop_orderid"].startswith(f"{STOPORDER_PREFIX}."):
            raise SnapshotError(f"{where}.stop_orderid' does not start with {STOPORDER_PREFIX}.")
        try:
            datetime.fromisoformat(saved["datetime"])
        except ValueError:
            raise SnapshotError(f"{where}.datetime' is not a date-time") from None


def _stop_state(stop_order: StopOrder) -> dict[str, Any]:
    return {
        "stop_orderid": stop_order.stop_orderid,
        "direction": stop_order.direction.name,
        "offset": stop_order.offset.name,
        "price": stop_order.price,
        "volume": stop_order.volume,
        "lock": stop_order.lock,
        "net": stop_order.net,
        "datetime": stop_order.datetime.isoformat(),
    }


def _order_state(order: OrderData) -> dict[str, Any]:
    assert order.direction is not None
    return {
        "vt_orderid": order.vt_orderid,
        "type": order.type.name,
        "direction": order.direction.name,
        "offset": order.offset.name,
        "price": order.price,
        "volume": order.volume,
        "traded": order.traded,
        "status": order.status.name,
    }


_NUMBER = (int, float)
#: The fields of each saved order and their types (an enum means one of its names).
_STOP_FIELDS: dict[str, Any] = {
    "stop_orderid": str,
    "direction": Direction,
    "offset": Offset,
    "price": _NUMBER,
    "volume": _NUMBER,
    "lock": bool,
    "net": bool,
    "datetime": str,
}
_ORDER_FIELDS: dict[str, Any] = {
    "vt_orderid": str,
    "direction": Direction,
    "offset": Offset,
    "price": _NUMBER,
    "volume": _NUMBER,
    "traded": _NUMBER,
    "status": Status,
}


def check_fields(item: Any, fields: dict[str, Any], sid: str, path: str) -> None:
    """Refuse a saved order unless it has ``fields`` of their types, naming the key
    (``path`` is where it sits in the snapshot, e.g. ``orders[0]``)."""
    if not isinstance(item, dict):
        raise SnapshotError(f"{sid}: snapshot key '{path}' must be an object")
    for key, kind in fields.items():
        value = item.get(key)
        where = f"{sid}: snapshot key '{path}.{key}'"
        if kind in (Direction, Offset, Status):
            if value not in kind.__members__:
                raise SnapshotError(f"{where} is {value!r}, not one of vnpy's {kind.__name__} names")
        elif not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise SnapshotError(f"{where} is missing or of the wrong type")
