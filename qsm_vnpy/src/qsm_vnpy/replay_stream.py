"""One strategy's replay: its symbol's 1-minute bars played as ticks to it alone, and
its orders filled against the bars, inside the replay gateway of its account
(:mod:`qsm_vnpy.replay`).

How a bar is played. Each bar becomes four ticks inside its minute, at :00, :15,
:30 and :45 seconds, whose prices run open, low, high, close (open, high, low,
close on a falling bar), so that vnpy's ``BarGenerator`` rebuilds the same bar.
On vnpy's event thread the ticks go to the strategy, then the orders working at
that moment are crossed against the bar; then the next bar is played.

The fill rule is vnpy's ``BacktestingEngine`` in bar mode, so that a CTA strategy
trades here exactly as in vnpy's backtester. A strategy sees bar *t* when the
first tick of bar *t+1* arrives (that is how ``BarGenerator`` works), so an order
it sends from ``on_bar`` of bar *t* is crossed against bar *t+1*, as the
backtester crosses it before ``on_bar`` of bar *t+1*. First the limit orders:

* a buy limit order fills when its price is at or above the bar's low, at the
  lower of its price and the bar's open;
* a sell limit order fills when its price is at or below the bar's high, at the
  higher of its price and the bar's open;
* it fills in full; otherwise it keeps working until cancelled.

Then the strategy's stop orders, which the CTA engine keeps (``cross_stops``, set
by the adapter; see :meth:`qsm_vnpy.engines.MemoryCtaEngine.cross_stop_orders`): a
buy stop triggers when the bar's high reaches its price and fills at the higher of
its price and the open; a sell stop when the low reaches it, at the lower of the
two (:meth:`ReplayStream.fill_triggered`). Orders are limit orders only (the
contract has no server-side stop orders); positions are net.

Each strategy has a replay of its own, on a clock of its own: from its ``start``,
or from where its snapshot left off. Strategies started or restored at different
moments therefore each trade exactly as vnpy's backtester from their own point,
and two strategies of one symbol see the same bars, not necessarily at the same
moment. They share the account's gateway, engines and paper positions.

The fence. No order is accepted and none filled while ``fence()`` is False (the
strategy's lease, set by the adapter).

``load_bar`` history: :meth:`ReplayStream.history` serves the bars before the
replay point (the ``start`` setting, or where a restored snapshot left off),
covering the span the request asks for.

Resuming. The replay's state (the last bar played, the paper position, the
counters, the working orders and the recent trades) is part of the strategy's
snapshot. On a restore the working orders go back in the book, and the last bar
played before the snapshot is played again as ticks, before the strategy trades
and without crossing, so the strategy's ``BarGenerator`` holds the same unfinished
bar as before; history ends just before it. The strategy then sees the next bars
exactly as in an uninterrupted run.
"""

from __future__ import annotations

import bisect
import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from vnpy.trader.constant import Direction, Exchange, Interval, Offset, OrderType, Status
from vnpy.trader.object import BarData, LogData, OrderData, OrderRequest, TickData, TradeData

from qsm_vnpy.bars import Bar
from qsm_vnpy.events import EngineGone, call_on_event_thread
from qsm_vnpy.orders import check_fields
from qsm_vnpy.settings import StreamSettings
from strategy_manager.core.errors import InvalidStrategy, SnapshotError

if TYPE_CHECKING:
    from qsm_vnpy.replay import ReplayGateway

TICK_SECONDS = (0, 15, 30, 45)
#: 2 added the working orders; a state of format 1 has none.
STATE_FORMAT = 2
#: The statuses of a working order in the book.
WORKING = (Status.SUBMITTING, Status.NOTTRADED)
#: A replayed tick's prices: all levels at the one price, so any order at it can trade.
_PRICE_FIELDS = (
    "last_price",
    *(f"{side}_price_{level}" for side in ("bid", "ask") for level in range(1, 6)),
)


class _Request:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class ReplayStream:
    def __init__(
        self,
        gateway: ReplayGateway,
        sid: str,
        vt_symbol: str,
        bars: list[Bar],
        settings: StreamSettings,
        timezone: str,
        id_prefix: str = "",
    ) -> None:
        self.gateway = gateway
        self.sid = sid
        self.settings = settings
        self.bars = bars
        self.vt_symbol = vt_symbol
        self.symbol, _, exchange = vt_symbol.rpartition(".")
        self.exchange = Exchange(exchange)
        #: Put in front of the stream's order and trade ids: unique in a shared gateway.
        self.id_prefix = id_prefix
        self.position = 0.0
        self.order_count = 0
        self.trade_count = 0
        self.history_limit = settings.history_limit
        self.trades: deque[dict[str, Any]] = deque()
        #: Index of the next bar to play; ``start_index`` is the first bar after history.
        self.cursor = 0
        self.start_index = 0
        self.warm: int | None = None
        #: The strategy's fence (set by the adapter): no order is accepted or filled while it is False.
        self.fence: Callable[[], bool] = lambda: True
        #: Crosses the strategy's stop orders against a bar, after the limit orders (set by the adapter).
        self.cross_stops: Callable[[Bar], None] = lambda bar: None
        #: Hands a tick to the strategy, on the event thread (set by the adapter).
        self.deliver: Callable[[TickData], None] = lambda tick: None
        #: Called at a safe point to take the strategy's snapshot (set by the adapter).
        self.capture: Callable[[], dict[str, Any]] = lambda: self.state()
        #: The snapshot taken where the replay ended or was stopped.
        self.final: dict[str, Any] | None = None
        self.final_error: BaseException | None = None
        self.holding = threading.Event()
        #: The core's stop event for this strategy (set by the adapter).
        self.stop_event = threading.Event()
        #: The strategy's logger (set by the adapter); else lines go to the gateway's log.
        self.logger: logging.LoggerAdapter | None = None  # type: ignore[type-arg]
        self._lock = threading.Lock()
        self._active: dict[str, OrderData] = {}
        self._current: Bar | None = None
        self._volume = 0.0
        self._turnover = 0.0
        self._cv = threading.Condition()
        self._requests: list[_Request] = []
        self._stop = False
        self._ended = False
        self._started_at = 0
        self._due: float | None = None
        self._fenced_logged = False
        self._tick_template = TickData(
            symbol=self.symbol,
            exchange=self.exchange,
            datetime=bars[0].datetime,
            name=self.symbol,
            gateway_name=gateway.gateway_name,
            bid_volume_1=1,
            ask_volume_1=1,
        ).__dict__
        self._timezone = timezone

    # -- set-up, by the gateway ----------------------------------------------------
    def place(self, state: dict[str, Any] | None) -> None:
        """Place the replay point: the ``start`` setting, or after a restored state."""
        times = [b.datetime for b in self.bars]
        start = self.settings.start_time(self._timezone)
        self.start_index = bisect.bisect_left(times, start) if start else 0
        if self.start_index >= len(self.bars):
            raise InvalidStrategy(
                f"{self.sid}: replay start {self.settings.start} is after the file's last bar"
            )
        self.cursor = self.start_index
        if state is not None:
            self._restore(state, times)
        self.warm = self.cursor - 1 if self.cursor > self.start_index else None
        self._started_at = self.cursor

    def _restore(self, state: dict[str, Any], times: list[datetime]) -> None:
        sid = self.sid
        validate_state(state, sid)
        last = state["last_bar"]
        if last is not None:
            moment = datetime.fromisoformat(last)
            index = bisect.bisect_left(times, moment)
            if index >= len(times) or times[index] != moment:
                raise SnapshotError(f"{sid}: snapshot's last replayed bar {last} is not in the replay file")
            self.cursor = max(index + 1, self.start_index)
        self.position = float(state["position"])
        self.order_count = state["order_count"]
        self.trade_count = state["trade_count"]
        self.trades = deque(state["trades"])
        for saved in state.get("orders", []):
            order = OrderData(
                symbol=self.symbol,
                exchange=self.exchange,
                orderid=saved["orderid"],
                type=OrderType.LIMIT,
                direction=Direction[saved["direction"]],
                offset=Offset[saved["offset"]],
                price=saved["price"],
                volume=saved["volume"],
                status=Status[saved["status"]],
                datetime=datetime.fromisoformat(saved["datetime"]) if saved["datetime"] else None,
                reference=saved["reference"],
                gateway_name=self.gateway.gateway_name,
            )
            self._active[order.vt_orderid] = order

    def book(self) -> list[OrderData]:
        with self._lock:
            return list(self._active.values())

    def rename(self, vt_orderid: str, orderid: str) -> OrderData:
        """Give a restored working order another id (its old one is another's)."""
        with self._lock:
            order = self._active.pop(vt_orderid)
            order.orderid = orderid
            order.vt_orderid = f"{order.gateway_name}.{orderid}"
            self._active[order.vt_orderid] = order
            return order

    # -- orders --------------------------------------------------------------------
    def send_order(self, req: OrderRequest) -> str:
        fenced = not self._fence_up(lambda: f"order {self.gateway.gateway_name}.{self._next_id()}")
        with self._lock:
            self.order_count += 1
            order = req.create_order_data(f"{self.id_prefix}{self.order_count}", self.gateway.gateway_name)
            order.datetime = self.now()
            if fenced:
                order.status = Status.REJECTED
            elif req.type != OrderType.LIMIT:
                order.status = Status.REJECTED
                self.gateway.write_log(
                    f"order {order.vt_orderid} rejected: the replay takes limit orders only"
                )
            else:
                self._active[order.vt_orderid] = order
            pushed = copy.copy(order)
        self.gateway.order_sent(self, order)
        self.gateway.on_order(pushed)
        return order.vt_orderid

    def _next_id(self) -> str:
        return f"{self.id_prefix}{self.order_count + 1}"

    def fill_triggered(self, req: OrderRequest, price: float, announce: Callable[[str], None]) -> bool:
        """A triggered stop order: a new order that fills at once, in full, at ``price``.

        ``announce`` gets the new order's id before any event of it is pushed (the CTA
        engine tells the strategy its stop order triggered). The order never works in
        the book, so nothing can cancel it. False, and nothing done, when fenced off.
        """
        assert self._current is not None
        if not self._fence_up(lambda: "a triggered stop order"):
            return False
        with self._lock:
            self.order_count += 1
            order = req.create_order_data(f"{self.id_prefix}{self.order_count}", self.gateway.gateway_name)
            order.datetime = self._current.datetime
        announce(order.vt_orderid)
        self._fill(order, price, self._current)
        return True

    def cancel(self, vt_orderid: str) -> None:
        with self._lock:
            order = self._active.pop(vt_orderid, None)
            if order is None:
                return
            order.status = Status.CANCELLED
            pushed = copy.copy(order)
        self.gateway.on_order(pushed)

    def now(self) -> datetime | None:
        """The time of the bar being played."""
        return self._current.datetime if self._current else None

    def _fence_up(self, what: Callable[[], str]) -> bool:
        """The fence; when it is down, a log line saying what was refused (``what()``)."""
        if self.fence():
            return True
        level = logging.DEBUG if self._fenced_logged else logging.ERROR
        self._fenced_logged = True
        message = (
            f"{what()} refused: the lease of {self.sid} is not valid or its account is halted; "
            "nothing sent or filled"
        )
        if self.logger is not None:
            self.logger.log(level, "%s", message)
        else:
            self.gateway.on_log(LogData(msg=message, level=level, gateway_name=self.gateway.gateway_name))
        return False

    def history(self, interval: Interval, span: timedelta) -> list[BarData]:
        """The bars before the replay point, over ``span``."""
        if interval != Interval.MINUTE:
            self.gateway.write_log(f"history of interval {interval} asked; the replay has 1-minute bars only")
            return []
        cut = self.warm if self.warm is not None else self.start_index
        if cut == 0:
            return []
        until = self.bars[cut].datetime if cut < len(self.bars) else self.bars[-1].datetime
        first = bisect.bisect_left([b.datetime for b in self.bars], until - span, 0, cut)
        return [self._bar_data(b) for b in self.bars[first:cut]]

    # -- the replay thread -----------------------------------------------------------
    def run(self) -> None:
        """Play the bars to the end of the file or until stopped (on a spawned thread)."""
        try:
            while self._boundary():
                if self.cursor >= len(self.bars):
                    with self._cv:
                        self._finish()
                    return
                self._play(self.bars[self.cursor], cross=True)
                self.cursor += 1
        except EngineGone:  # closed under us by a stop that did not wait for the boundary
            return

    def warm_up(self) -> None:
        """After a restore, play the last bar played before it again, without fills.

        Called before the strategy trades: its ``BarGenerator`` then holds that bar
        unfinished, as it did when the snapshot was taken, and a strategy that
        trades on ticks cannot act on ticks it has seen already.
        """
        if self.warm is not None:
            self._play(self.bars[self.warm], cross=False)

    def request(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run ``fn`` on the replay thread at its next bar boundary; return its result."""
        with self._cv:
            if self._ended:
                if self.final_error is not None:
                    raise self.final_error
                return copy.deepcopy(self.final)
            request = _Request(fn)
            self._requests.append(request)
            self._cv.notify_all()
            if not self._cv.wait_for(lambda: request.done or self._ended, timeout):
                self._requests.remove(request)
                raise SnapshotError(f"no bar boundary within {timeout}s; snapshot not taken")
            if not request.done:  # ended meanwhile: the final capture is the answer
                return self.request(fn, timeout)
        if request.error is not None:
            raise request.error
        return request.result

    def _boundary(self) -> bool:
        """Between two bars: serve requests, stop, hold or pace. False means stop here."""
        with self._cv:
            while True:
                for request in self._requests:
                    try:
                        request.result = request.fn()
                    except BaseException as exc:
                        request.error = exc
                    request.done = True
                self._requests.clear()
                self._cv.notify_all()
                if self._stop or self.stop_event.is_set():
                    self._finish()
                    return False
                if self._must_hold():
                    self.holding.set()
                    self._cv.wait(0.05)
                    continue
                if self._must_wait():
                    continue
                return True

    def _finish(self) -> None:
        try:
            self.final = self.capture()
        except BaseException as exc:
            self.final_error = exc
        self._ended = True
        self._cv.notify_all()

    def stop_replay(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()

    def _must_hold(self) -> bool:
        hold = self.settings.hold_after_bars
        if hold is None:
            return False
        return self._started_at - self.start_index < hold <= self.cursor - self.start_index

    def _must_wait(self) -> bool:
        pace = self.settings.pace
        if not pace:
            return False
        now = time.monotonic()
        if self._due is not None and now < self._due:
            self._cv.wait(self._due - now)
            return True
        self._due = now + 1.0 / pace
        return False

    def _play(self, bar: Bar, cross: bool) -> None:
        """The bar's ticks to the strategy, then (``cross``) its orders crossed: one
        call on the event thread, behind every event queued before."""
        self._current = bar
        ticks = self._ticks(bar)
        deliver = self.deliver

        def handle() -> None:
            for tick in ticks:
                deliver(tick)
            if cross:
                self._cross(bar)

        call_on_event_thread(self.gateway.event_engine, handle)

    def _ticks(self, bar: Bar) -> list[TickData]:
        path = (
            (bar.open, bar.high, bar.low, bar.close)
            if bar.close < bar.open
            else (bar.open, bar.low, bar.high, bar.close)
        )
        # the bar's volume arrives with its first tick (BarGenerator adds differences)
        self._volume += bar.volume
        self._turnover += bar.turnover
        ticks = []
        for seconds, price in zip(TICK_SECONDS, path, strict=True):
            # a copy of a tick TickData built once, with what changes set: less than half
            # the cost of TickData(...), which a replay pays four times a bar
            fields = dict(self._tick_template)
            for name in _PRICE_FIELDS:
                fields[name] = price
            fields["datetime"] = bar.datetime + timedelta(seconds=seconds)
            fields["volume"] = self._volume
            fields["turnover"] = self._turnover
            fields["open_interest"] = bar.open_interest
            tick = TickData.__new__(TickData)
            tick.__dict__ = fields
            ticks.append(tick)
        return ticks

    def _cross(self, bar: Bar) -> None:
        """Cross the working orders against ``bar``: the limit orders, then the stop orders.

        On the event thread, in the backtester's order: each order still SUBMITTING is
        reported NOTTRADED, then filled if the bar reaches it. Orders sent meanwhile (by
        the strategy's callbacks) wait for the next bar.
        """
        if not self._fence_up(lambda: f"crossing bar {bar.datetime.isoformat()}"):
            return
        with self._lock:
            working = list(self._active.values())
        for order in working:
            if order.vt_orderid not in self._active:
                continue  # cancelled meanwhile, by a callback
            if order.status == Status.SUBMITTING:
                order.status = Status.NOTTRADED
                self.gateway.on_order(copy.copy(order))
            buy = order.direction == Direction.LONG
            if buy and not order.price >= bar.low:
                continue
            if not buy and not order.price <= bar.high:
                continue
            with self._lock:
                if self._active.pop(order.vt_orderid, None) is None:
                    continue
            self._fill(order, min(order.price, bar.open) if buy else max(order.price, bar.open), bar)
        self.cross_stops(bar)

    def _fill(self, order: OrderData, price: float, bar: Bar) -> None:
        """Fill ``order`` in full at ``price``: push the order, its trade and the position."""
        buy = order.direction == Direction.LONG
        with self._lock:
            order.traded = order.volume
            order.status = Status.ALLTRADED
            self.trade_count += 1
            self.position += order.volume if buy else -order.volume
            trade = TradeData(
                symbol=order.symbol,
                exchange=order.exchange,
                orderid=order.orderid,
                tradeid=f"{self.id_prefix}{self.trade_count}",
                direction=order.direction,
                offset=order.offset,
                price=price,
                volume=order.volume,
                datetime=bar.datetime,
                gateway_name=self.gateway.gateway_name,
            )
            self._record(trade)
        self.gateway.on_order(copy.copy(order))
        self.gateway.on_trade(trade)
        self.gateway.publish_position(self.vt_symbol)

    def _record(self, trade: TradeData) -> None:
        assert trade.direction is not None and trade.datetime is not None
        self.trades.append(
            {
                "tradeid": trade.tradeid,
                "orderid": trade.orderid,
                "direction": trade.direction.name,
                "offset": trade.offset.name,
                "price": trade.price,
                "volume": trade.volume,
                "datetime": trade.datetime.isoformat(),
            }
        )
        while len(self.trades) > self.history_limit:
            self.trades.popleft()

    def _bar_data(self, bar: Bar) -> BarData:
        return BarData(
            symbol=self.symbol,
            exchange=self.exchange,
            datetime=bar.datetime,
            interval=Interval.MINUTE,
            open_price=bar.open,
            high_price=bar.high,
            low_price=bar.low,
            close_price=bar.close,
            volume=bar.volume,
            turnover=bar.turnover,
            open_interest=bar.open_interest,
            gateway_name=self.gateway.gateway_name,
        )

    # -- state -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The replay's part of a snapshot; call at a safe point."""
        played = self.cursor - self.start_index
        with self._lock:
            orders = [_order_state(order) for order in self._active.values()]
        return {
            "format": STATE_FORMAT,
            "last_bar": self.bars[self.cursor - 1].datetime.isoformat() if played > 0 else None,
            "bars": played,
            "bars_total": len(self.bars) - self.start_index,
            "position": self.position,
            "order_count": self.order_count,
            "trade_count": self.trade_count,
            "orders": orders,
            "trades": list(self.trades),
        }


def _order_state(order: OrderData) -> dict[str, Any]:
    assert order.direction is not None
    return {
        "orderid": order.orderid,
        "direction": order.direction.name,
        "offset": order.offset.name,
        "price": order.price,
        "volume": order.volume,
        "status": order.status.name,
        "datetime": order.datetime.isoformat() if order.datetime else None,
        "reference": order.reference,
    }


def validate_state(state: Any, sid: str) -> None:
    """Refuse a replay state of the wrong shape, naming the key."""
    if not isinstance(state, dict):
        raise SnapshotError(f"{sid}: snapshot key 'gateway' must be an object")
    if state.get("format") not in (1, STATE_FORMAT):
        raise SnapshotError(
            f"{sid}: snapshot key 'gateway.format' is {state.get('format')!r}, expected 1 or {STATE_FORMAT}"
        )
    checks: dict[str, Any] = {
        "last_bar": (str, type(None)),
        "position": (int, float),
        "order_count": int,
        "trade_count": int,
        "trades": list,
    }
    if state["format"] >= 2:
        checks["orders"] = list
    for key, kind in checks.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SnapshotError(f"{sid}: snapshot key 'gateway.{key}' is missing or of the wrong type")
    if state["last_bar"] is not None:
        try:
            datetime.fromisoformat(state["last_bar"])
        except ValueError:
            raise SnapshotError(f"{sid}: snapshot key 'gateway.last_bar' is not a date-time") from None
    for index, order in enumerate(state.get("orders", [])):
        path = f"gateway.orders[{index}]"
        check_fields(order, _ORDER_FIELDS, sid, path)
        if Status[order["status"]] not in WORKING:
            status = order["status"]
            raise SnapshotError(f"{sid}: snapshot key '{path}.status' is {status}, not a working order's")
        if order["datetime"] is not None:
            try:
                datetime.fromisoformat(order["datetime"])
            except ValueError:
                raise SnapshotError(f"{sid}: snapshot key '{path}.datetime' is not a date-time") from None


_ORDER_FIELDS: dict[str, Any] = {
    "orderid": str,
    "direction": Direction,
    "offset": Offset,
    "price": (int, float),
    "volume": (int, float),
    "status": Status,
    "datetime": (str, type(None)),
    "reference": str,
}
