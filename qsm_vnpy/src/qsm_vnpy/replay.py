"""ReplayGateway: a vnpy gateway for paper runs, the demo and the tests. It plays
files of 1-minute bars as ticks and fills orders against the bars, with the rules
of vnpy's ``BacktestingEngine`` in bar mode (:mod:`qsm_vnpy.replay_stream`).

One gateway is one replay *account*: one connection (``connect`` is called once),
any number of symbols, one bar file per symbol (the account's ``csv``: a folder of
``<symbol>.csv`` files or a pattern with ``{symbol}``), and a paper broker whose
position in a symbol is the sum of its strategies' paper positions. Each CTA
strategy of the account has a replay of its own (a :class:`ReplayStream`): its
symbol's bars from its own starting point, its ticks delivered to it alone, its
orders in its own book. The gateway routes an order to the stream of the strategy
that sent it (vnpy's CTA engine puts the strategy's name in the order's
``reference``).

The paper broker's position in a symbol, as the gateway reports it, is the sum of
the paper positions of the strategies attached now, of those that stopped or have
not started yet (their last paper position, which the broker keeps), and of an
offset when the account's ``positions`` setting says what the broker holds.

Events. On the event thread (where a strategy's callbacks run) the gateway hands
its order, trade and position events to vnpy's handlers at once instead of
queueing them, as the backtester calls the strategy at once: an order is known to
vnpy's order book before ``send_order`` returns, so a ``cancel_all`` right after a
send finds it, and the strategy sees the fills of a bar before its next tick.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from vnpy.event import Event, EventEngine
from vnpy.trader.constant import Direction, Exchange, Interval, Product, Status
from vnpy.trader.gateway import BaseGateway
from vnpy.trader.object import (
    AccountData,
    BarData,
    CancelRequest,
    ContractData,
    HistoryRequest,
    OrderData,
    OrderRequest,
    PositionData,
    SubscribeRequest,
)

from qsm_vnpy.bars import Bar, read_bars
from qsm_vnpy.replay_stream import STATE_FORMAT, WORKING, ReplayStream, validate_state
from qsm_vnpy.settings import ReplayAccountSettings, StreamSettings
from strategy_manager.core.errors import EngineError

__all__ = ["STATE_FORMAT", "WORKING", "ReplayGateway", "ReplayStream", "validate_state"]

_STOCK_EXCHANGES = {"SSE", "SZSE", "BSE", "SEHK"}
#: vnpy's CTA engine puts ``<APP_NAME>_<strategy name>`` in an order's reference.
_REFERENCE_PREFIX = "CtaStrategy_"


def stream_tag(sid: str) -> str:
    """A short, stable tag of a strategy, put in front of its order ids on a shared account."""
    return hashlib.blake2b(sid.encode("utf-8"), digest_size=5).hexdigest()


class ReplayGateway(BaseGateway):
    default_name = "REPLAY"
    default_setting: dict[str, str | int | float | bool] = {"csv": "", "timezone": "Asia/Shanghai"}
    exchanges = list(Exchange)

    def __init__(self, event_engine: EventEngine, gateway_name: str) -> None:
        super().__init__(event_engine, gateway_name)
        self.account: ReplayAccountSettings | None = None
        #: Strategies share the gateway: their order ids carry a tag of each.
        self.shared = False
        #: How many times ``connect`` was called (once per account session).
        self.connects = 0
        self.streams: dict[str, ReplayStream] = {}
        #: vt_symbol -> strategy id -> the paper position of a strategy not attached now.
        self.held: dict[str, dict[str, float]] = {}
        #: vt_symbol -> what the broker holds beyond the strategies (the ``positions`` setting).
        self.offsets: dict[str, float] = {}
        self._files: dict[Path, list[Bar]] = {}
        self._files_lock = threading.Lock()
        #: vt_orderid -> the stream whose order it is (for cancels).
        self._orders: dict[str, ReplayStream] = {}
        self._contracts: set[str] = set()

    def configure(self, account: ReplayAccountSettings, shared: bool) -> None:
        """Before ``connect``: the account's files, contracts and paper broker."""
        self.account = account
        self.shared = shared

    # -- BaseGateway -----------------------------------------------------------------
    def connect(self, setting: dict[str, Any]) -> None:
        if self.account is None:
            raise RuntimeError("ReplayGateway.configure() must come before connect()")
        self.connects += 1
        self.on_account(AccountData(accountid=self.gateway_name, balance=0.0, gateway_name=self.gateway_name))
        self.write_log(f"replay account connected: bars from {self.account.csv}")

    def close(self) -> None:
        for stream in list(self.streams.values()):
            stream.stop_replay()

    def subscribe(self, req: SubscribeRequest) -> None:
        return None

    def on_event(self, type: str, data: Any = None) -> None:
        """On the event thread, hand the event to vnpy's handlers now; otherwise queue it."""
        if threading.current_thread() is self.event_engine._thread:
            self.event_engine._process(Event(type, data))
        else:
            self.event_engine.put(Event(type, data))

    def send_order(self, req: OrderRequest) -> str:
        stream = self._stream_of(req.reference)
        if stream is None:
            order = req.create_order_data("rejected", self.gateway_name)
            self.write_log(
                f"order from {req.reference!r} rejected: no strategy of this replay account sent it"
            )
            order.status = Status.REJECTED
            self.on_order(order)
            return ""
        return stream.send_order(req)

    def _stream_of(self, reference: str) -> ReplayStream | None:
        if reference.startswith(_REFERENCE_PREFIX):
            return self.streams.get(reference[len(_REFERENCE_PREFIX) :])
        if len(self.streams) == 1:  # a strategy on its own: every order is its own
            return next(iter(self.streams.values()))
        return None

    def order_sent(self, stream: ReplayStream, order: OrderData) -> None:
        self._orders[order.vt_orderid] = stream

    def fill_triggered(self, req: OrderRequest, price: float, announce: Any) -> bool:
        """A triggered stop order of the strategy named in ``req.reference``."""
        stream = self._stream_of(req.reference)
        return stream is not None and stream.fill_triggered(req, price, announce)

    def cancel_order(self, req: CancelRequest) -> None:
        vt_orderid = f"{self.gateway_name}.{req.orderid}"
        stream = self._orders.pop(vt_orderid, None)
        if stream is not None:
            stream.cancel(vt_orderid)

    def query_account(self) -> None:
        return None

    def query_position(self) -> None:
        for vt_symbol in sorted(self._contracts):
            self.publish_position(vt_symbol)

    def query_history(self, req: HistoryRequest) -> list[BarData]:
        """History of a symbol from another strategy than the CTA engine's (which asks
        :meth:`history` for its own): the first attached stream of the symbol."""
        for stream in self.streams.values():
            if stream.vt_symbol == req.vt_symbol:
                span = (req.end - req.start) if req.end else timedelta(days=1)
                return stream.history(req.interval or Interval.MINUTE, span)
        return []

    # -- the account's strategies -------------------------------------------------------
    def history(self, sid: str, vt_symbol: str, interval: Interval, span: Any) -> list[BarData]:
        stream = self.streams.get(sid)
        return stream.history(interval, span) if stream is not None and stream.vt_symbol == vt_symbol else []

    def now(self, sid: str) -> Any:
        stream = self.streams.get(sid)
        return stream.now() if stream is not None else None

    def bars_of(self, path: Path, sid: str) -> list[Bar]:
        """A bar file, read once for every strategy of its symbol."""
        assert self.account is not None
        key = path.resolve()
        with self._files_lock:
            bars = self._files.get(key)
            if bars is None:
                bars = self._files[key] = read_bars(path, self.account.timezone, sid)
        return bars

    def add_stream(
        self,
        sid: str,
        vt_symbol: str,
        symbol: str,
        settings: StreamSettings,
        state: dict[str, Any] | None,
        others: dict[str, float],
    ) -> tuple[ReplayStream, dict[str, str]]:
        """Attach strategy ``sid``'s replay, on the event thread. ``others`` are the
        paper positions of the account's other strategies of the symbol, from their
        snapshots (counted until they attach). Returns the stream and the ids of its
        restored working orders that had to be renamed (old -> new vt_orderid)."""
        assert self.account is not None
        if sid in self.streams:
            raise EngineError(f"{sid}: its replay is attached already")
        bars = self.bars_of(self.account.csv_for(symbol), sid)
        prefix = f"{stream_tag(sid)}-" if self.shared else ""
        stream = ReplayStream(self, sid, vt_symbol, bars, settings, self.account.timezone, prefix)
        stream.place(state)
        renamed = {}
        for order in stream.book():
            if order.vt_orderid in self._orders:  # another strategy's id (both restored): a new one
                old = order.vt_orderid
                order = stream.rename(old, f"{prefix}r{order.orderid}")
                renamed[old] = order.vt_orderid
            self._orders[order.vt_orderid] = stream
        held = self.held.setdefault(vt_symbol, {})
        held.pop(sid, None)
        for other, position in others.items():
            if other not in self.streams and other != sid:
                held.setdefault(other, position)
        self.streams[sid] = stream
        if vt_symbol not in self._contracts:
            self._contracts.add(vt_symbol)
            self._publish_contract(vt_symbol)
            told = self.account.positions.get(symbol)
            if told is not None:
                self.offsets[vt_symbol] = float(told) - self._strategies_position(vt_symbol)
        for order in stream.book():  # a restored book: vnpy's order book learns it
            self.on_order(copy.copy(order))
        self.publish_position(vt_symbol)
        return stream, renamed

    def remove_stream(self, sid: str) -> None:
        """Detach a stopped strategy's replay, on the event thread; the paper broker
        keeps its position."""
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        stream.stop_replay()
        for order in stream.book():
            self._orders.pop(order.vt_orderid, None)
        self._orders = {k: s for k, s in self._orders.items() if s is not stream}
        self.held.setdefault(stream.vt_symbol, {})[sid] = stream.position
        self.publish_position(stream.vt_symbol)

    def _strategies_position(self, vt_symbol: str) -> float:
        attached = sum(s.position for s in self.streams.values() if s.vt_symbol == vt_symbol)
        return attached + sum(self.held.get(vt_symbol, {}).values())

    def broker_position(self, vt_symbol: str) -> float:
        """The paper broker's net position in the symbol."""
        return self._strategies_position(vt_symbol) + self.offsets.get(vt_symbol, 0.0)

    def publish_position(self, vt_symbol: str) -> None:
        symbol, _, exchange = vt_symbol.rpartition(".")
        self.on_position(
            PositionData(
                symbol=symbol,
                exchange=Exchange(exchange),
                direction=Direction.NET,
                volume=self.broker_position(vt_symbol),
                gateway_name=self.gateway_name,
            )
        )

    def _publish_contract(self, vt_symbol: str) -> None:
        assert self.account is not None
        symbol, _, exchange = vt_symbol.rpartition(".")
        product = Product.EQUITY if exchange in _STOCK_EXCHANGES else Product.FUTURES
        self.on_contract(
            ContractData(
                symbol=symbol,
                exchange=Exchange(exchange),
                name=symbol,
                product=product,
                size=self.account.size,
                pricetick=self.account.pricetick,
                min_volume=1,
                net_position=True,
                history_data=True,
                gateway_name=self.gateway_name,
            )
        )
