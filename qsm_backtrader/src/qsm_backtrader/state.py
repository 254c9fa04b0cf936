"""The snapshot: what a running cerebro is, as of its last fully processed bar.

:func:`capture` reads it and :func:`inject` puts it back; both run on the engine
thread at a *safe point* (the start of the broker's turn for the next bar, see
:mod:`qsm_backtrader.engine`), or while cerebro is not running. A snapshot holds:

* ``bars`` and ``last_bar``: how many bars the strategy has processed, and the
  datetime of the last one (backtrader's float and ISO text);
* ``broker``: cash, value, starting cash and fund figures; ``positions``: every
  position the broker tracks (size, price, adjustment base ...);
* ``submitted``/``pending``: the broker's orders in flight, in queue order, and
  ``notifications``: the order notifications not yet delivered to the strategy;
* ``trades``: the strategy's open trades (for ``notify_trade`` and its pnl);
* ``strategy_state``: what the strategy declares, through ``get_state()`` or the
  attribute names in ``qsm_state`` (plain data, datetimes and orders);
* ``history``: records of the orders that reached a final status, newest last,
  at most ``history_limit`` of them, and ``history_total``, their full count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import backtrader as bt
from backtrader.position import Position

from qsm_backtrader.codec import TAG, decode, decode_into, encode, encode_vars
from qsm_backtrader.orders import (
    TERMINAL,
    data_index,
    decode_order,
    decode_trade,
    encode_order,
    encode_trade,
    order_record,
)
from strategy_manager.core.errors import SnapshotError

FORMAT = "qsm-backtrader/1"
_KEYS: dict[str, type | tuple[type, ...]] = {
    "bars": int,
    "broker": dict,
    "positions": list,
    "submitted": list,
    "pending": list,
    "notifications": list,
    "trades": list,
    "strategy_state": dict,
    "history": list,
    "history_total": int,
}


class OrderHistory:
    """Records of finished orders, read from the strategy's delivered notifications."""

    def __init__(self, limit: int, records: Iterable[dict[str, Any]] = (), total: int = 0) -> None:
        self.limit = limit
        self.records = list(records)
        self.total = total
        self._seen = 0

    def collect(self, strategy: Any) -> None:
        delivered = strategy._orders
        for order in delivered[self._seen :]:
            if order.status in TERMINAL:
                self.records.append(order_record(order))
                self.total += 1
        self._seen = len(delivered)
        del self.records[: max(0, len(self.records) - self.limit)]


def capture(strategy: Any, broker: Any, history: OrderHistory, sid: str) -> dict[str, Any]:
    datas = strategy.datas
    bars = len(strategy)
    last = strategy.lines.datetime[0] if bars else None
    history.collect(strategy)

    def orders(queue: Iterable[Any], name: str) -> list[dict[str, Any]]:
        return [encode_order(o, datas, f"{sid}: broker {name}") for o in queue]

    def order_tag(value: Any) -> dict[str, Any] | None:
        if isinstance(value, bt.OrderBase):
            return {TAG: "order", "order": encode_order(value, datas, f"{sid}: strategy state")}
        return None

    trades = [
        encode_trade(runs[-1], datas, f"{sid}: trade")
        for per_data in strategy._trades.values()
        for runs in per_data.values()
        if runs and not runs[-1].isclosed
    ]
    return {
        "format": FORMAT,
        "strategy_class": class_name(type(strategy)),
        "bars": bars,
        "last_bar": None if last is None else {"dt": last, "iso": bt.num2date(last).isoformat()},
        "broker": {
            "cash": broker.cash,
            "value": broker.getvalue(),
            "startingcash": broker.startingcash,
            "fundshares": broker._fundshares,
            "fundval": broker._fundval,
        },
        "positions": [
            {
                "data": data_index(datas, data, f"{sid}: position"),
                "attrs": encode_vars(position, f"{sid}: position"),
                "credit": broker.d_credit.get(data, 0.0),
            }
            for data, position in broker.positions.items()
        ],
        "submitted": orders(broker.submitted, "submitted"),
        "pending": orders(broker.pending, "pending") + orders(broker._toactivate, "to activate"),
        "notifications": orders(broker.notifs, "notifications"),
        "trades": trades,
        "strategy_state": _strategy_state(strategy, order_tag, sid),
        "history": [dict(record) for record in history.records],
        "history_total": history.total,
    }


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _strategy_state(strategy: Any, order_tag: Any, sid: str) -> dict[str, Any]:
    getter = getattr(type(strategy), "get_state", None)
    if callable(getter):
        return {"get_state": encode(strategy.get_state(), f"{sid}: get_state()", order_tag)}
    attrs = {}
    for name in state_names(strategy, sid):
        try:
            value = getattr(strategy, name)
        except AttributeError:
            raise SnapshotError(
                f"{sid}: qsm_state names attribute '{name}', which the strategy has not set"
            ) from None
        attrs[name] = encode(value, f"{sid}: strategy attribute '{name}'", order_tag)
    return {"attrs": attrs}


def state_names(strategy: Any, sid: str) -> list[str]:
    names = getattr(type(strategy), "qsm_state", ())
    if isinstance(names, str) or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise SnapshotError(f"{sid}: qsm_state must be a list of attribute names, got {names!r}")
    return list(names)


def validate(snapshot: Any, sid: str, strategy_class: str) -> None:
    """Refuse a snapshot this version cannot restore exactly, before anything starts."""
    if not isinstance(snapshot, dict):
        raise SnapshotError(f"{sid}: snapshot is a {type(snapshot).__name__}, expected an object")
    if snapshot.get("format") != FORMAT:
        raise SnapshotError(
            f"{sid}: snapshot key 'format' is {snapshot.get('format')!r}, expected {FORMAT!r}"
        )
    for key, kind in _KEYS.items():
        if not isinstance(snapshot.get(key), kind):
            raise SnapshotError(f"{sid}: snapshot key '{key}' is missing or not a {_kind_name(kind)}")
    if snapshot.get("strategy_class") != strategy_class:
        raise SnapshotError(
            f"{sid}: snapshot was taken from {snapshot.get('strategy_class')!r}, "
            f"not from engine_class {strategy_class!r}; delete the snapshot to start afresh"
        )
    last = snapshot.get("last_bar")
    if last is not None and not (isinstance(last, dict) and isinstance(last.get("dt"), float)):
        raise SnapshotError(f"{sid}: snapshot key 'last_bar' must hold a float 'dt'")
    if (last is None) != (snapshot["bars"] == 0):
        raise SnapshotError(f"{sid}: snapshot keys 'bars' and 'last_bar' disagree")
    for key in ("cash", "value", "startingcash", "fundshares", "fundval"):
        if not isinstance(snapshot["broker"].get(key), int | float):
            raise SnapshotError(f"{sid}: snapshot key 'broker.{key}' is missing or not a number")
    for key in ("submitted", "pending", "notifications"):
        for rec in snapshot[key]:
            if not isinstance(rec, dict) or not {"ref", "side", "data", "params", "attrs"} <= rec.keys():
                raise SnapshotError(f"{sid}: snapshot key '{key}' holds a malformed order")
            if rec.get("linked"):
                raise SnapshotError(
                    f"{sid}: snapshot holds order ref {rec['ref']} of a bracket or OCO group in "
                    f"'{key}'; restoring linked orders is not supported"
                )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "/".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def inject(strategy: Any, broker: Any, snapshot: dict[str, Any], sid: str) -> None:
    """Put ``snapshot`` into a strategy and broker that processed the same bars untraded."""
    datas = strategy.datas
    where = f"{sid}: snapshot"
    account = snapshot["broker"]
    broker.cash = account["cash"]
    broker._value = account["value"]
    broker.startingcash = account["startingcash"]
    broker._fundshares = account["fundshares"]
    broker._fundval = account["fundval"]
    broker.positions.clear()
    try:
        for i, rec in enumerate(snapshot["positions"]):
            data = datas[rec["data"]]
            broker.positions[data] = decode_into(Position(), rec["attrs"], f"{where}.positions[{i}]")
            if rec["credit"]:
                broker.d_credit[data] = rec["credit"]
    except (KeyError, IndexError, TypeError) as exc:
        raise SnapshotError(f"{where}: malformed position: {type(exc).__name__} {exc}") from None

    orders: dict[int, Any] = {}  # old ref -> the new order standing for it
    for key in ("submitted", "pending"):
        queue = getattr(broker, key)
        for i, rec in enumerate(snapshot[key]):
            order = decode_order(rec, strategy, broker, f"{where}.{key}[{i}]")
            orders[rec["ref"]] = order
            queue.append(order)
            broker.orders.append(order)
            broker._ocos[order.ref] = order.ref
            broker._ocol[order.ref].append(order.ref)
            broker._pchildren[order.ref].append(order)
    for i, rec in enumerate(snapshot["notifications"]):
        note = decode_order(rec, strategy, broker, f"{where}.notifications[{i}]")
        if rec["ref"] in orders:
            note.ref = orders[rec["ref"]].ref  # a notification is a copy of a live order
        else:
            orders[rec["ref"]] = note
        broker.notifs.append(note)

    for i, rec in enumerate(snapshot["trades"]):
        trade = decode_trade(rec, strategy, f"{where}.trades[{i}]")
        strategy._trades[trade.data][trade.tradeid] = [trade]

    def resolve(tagged: dict[str, Any]) -> Any:
        if tagged.get(TAG) != "order" or not isinstance(tagged.get("order"), dict):
            raise SnapshotError(f"{where}.strategy_state: unknown tagged value {tagged.get(TAG)!r}")
        rec = tagged["order"]
        if rec.get("ref") not in orders:
            orders[rec.get("ref")] = decode_order(rec, strategy, broker, f"{where}.strategy_state")
        return orders[rec["ref"]]

    state = snapshot["strategy_state"]
    if "get_state" in state:
        setter = getattr(strategy, "set_state", None)
        if not callable(setter):
            raise SnapshotError(f"{sid}: snapshot holds get_state() data but the strategy has no set_state()")
        setter(decode(state["get_state"], f"{where}.strategy_state", resolve))
    else:
        for name, value in state.get("attrs", {}).items():
            setattr(strategy, name, decode(value, f"{where}.strategy_state.{name}", resolve))
