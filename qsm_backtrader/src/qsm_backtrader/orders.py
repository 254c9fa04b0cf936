"""Orders and trades as snapshot data and back, and the order records we report.

A decoded order is a new backtrader order with a fresh ``ref`` (refs come from a
process-wide counter shared by every strategy, so old refs could collide), but with
every other field exactly as it was: creation data, execution bits, status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import backtrader as bt
from backtrader.order import OrderData, OrderExecutionBit
from backtrader.trade import Trade
from backtrader.utils import AutoOrderedDict

from qsm_backtrader.codec import decode, decode_into, encode, encode_vars
from strategy_manager.core.errors import SnapshotError

_PARAMS = (
    "size", "price", "pricelimit", "exectype", "valid", "tradeid",
    "trailamount", "trailpercent", "transmit", "histnotify",
)
_OWN = ("p", "params", "broker", "comminfo", "info", "created", "executed", "ref")
TERMINAL = frozenset(
    {bt.Order.Completed, bt.Order.Canceled, bt.Order.Expired, bt.Order.Margin, bt.Order.Rejected}
)


def data_index(datas: Sequence[Any], data: Any, where: str) -> int:
    # Line objects overload ==, so compare identities.
    for index, candidate in enumerate(datas):
        if candidate is data:
            return index
    raise SnapshotError(f"{where}: refers to a data feed the strategy does not have")


def encode_orderdata(od: OrderData, where: str) -> dict[str, Any]:
    out = encode_vars(od, where, skip=("exbits",))
    out["exbits"] = [encode_vars(bit, f"{where}.exbits[{i}]") for i, bit in enumerate(od.exbits)]
    return out


def decode_orderdata(data: dict[str, Any], where: str) -> OrderData:
    od = OrderData()
    decode_into(od, {k: v for k, v in data.items() if k != "exbits"}, where)
    for i, bit in enumerate(data.get("exbits", [])):
        od.exbits.append(decode_into(OrderExecutionBit(), bit, f"{where}.exbits[{i}]"))
    return od


def encode_order(order: bt.Order, datas: Sequence[Any], where: str) -> dict[str, Any]:
    where = f"{where} (order ref {order.ref})"
    return {
        "ref": order.ref,
        "side": "buy" if order.isbuy() else "sell",
        "data": data_index(datas, order.data, where),
        "linked": order.p.parent is not None or order.p.oco is not None,
        "params": {k: encode(getattr(order.p, k), f"{where}.{k}") for k in _PARAMS},
        "attrs": encode_vars(order, where, skip=_OWN),
        "created": encode_orderdata(order.created, f"{where}.created"),
        "executed": encode_orderdata(order.executed, f"{where}.executed"),
        "info": encode(dict(order.info), f"{where}.info"),
        "comminfo": order.comminfo is not None,
    }


def decode_order(rec: dict[str, Any], owner: Any, broker: Any, where: str) -> bt.Order:
    """A new order object equal to the encoded one, except for its ``ref``."""
    try:
        data = owner.datas[rec["data"]]
        params = decode(rec["params"], f"{where}.params")
        cls = bt.BuyOrder if rec["side"] == "buy" else bt.SellOrder
        valid = params.pop("valid")
        # simulated: build without reading the data's current bar; fixed just below.
        order = cls(owner=owner, data=data, simulated=True, **params)
        order.p.simulated = False
        order.p.valid = valid
        decode_into(order, rec["attrs"], f"{where}.attrs")
        order.created = decode_orderdata(rec["created"], f"{where}.created")
        order.executed = decode_orderdata(rec["executed"], f"{where}.executed")
        order.info = AutoOrderedDict()
        order.info.update(decode(rec["info"], f"{where}.info"))
        order.comminfo = broker.getcommissioninfo(data) if rec["comminfo"] else None
        order.broker = None
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{where}: malformed order: {type(exc).__name__} {exc}") from None
    return order


def encode_trade(trade: Trade, datas: Sequence[Any], where: str) -> dict[str, Any]:
    return {
        "data": data_index(datas, trade.data, where),
        "attrs": encode_vars(trade, where, skip=("data", "history", "ref")),
    }


def decode_trade(rec: dict[str, Any], owner: Any, where: str) -> Trade:
    try:
        trade = Trade(data=owner.datas[rec["data"]])
        decode_into(trade, rec["attrs"], f"{where}.attrs")
    except (KeyError, IndexError, TypeError) as exc:
        raise SnapshotError(f"{where}: malformed trade: {type(exc).__name__} {exc}") from None
    trade.history = []
    return trade


def _iso(num: float) -> str | None:
    return bt.num2date(num).isoformat() if num else None


def order_record(order: bt.Order) -> dict[str, Any]:
    """What we report about one order: plain data, stable across restarts but ``ref``."""
    return {
        "ref": order.ref,
        "data": order.data._name,
        "side": "buy" if order.isbuy() else "sell",
        "exectype": order.getordername(),
        "status": order.getstatusname(),
        "created": _iso(order.created.dt),
        "size": order.created.size,
        "price": order.created.price,
        "executed": _iso(order.executed.dt),
        "executed_size": order.executed.size,
        "executed_price": order.executed.price,
        "value": order.executed.value,
        "comm": order.executed.comm,
        "pnl": order.executed.pnl,
    }
