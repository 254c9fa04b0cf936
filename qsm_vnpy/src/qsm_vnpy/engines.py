"""vnpy's MainEngine and CtaEngine as the adapter runs them.

Against vnpy's own:

* :class:`QsmMainEngine` does not change the process's working directory.
* :class:`MemoryCtaEngine` keeps strategy settings and variables in memory (vnpy
  keeps them in two JSON files shared by every strategy of the folder); the
  variables reach our store through snapshots instead. It puts a restored
  strategy's fields (:mod:`qsm_vnpy.state`) back right after ``on_init``, where
  vnpy puts back the variables, and reports the strategy exceptions vnpy swallows
  to that strategy's runner (the other strategies of the engine go on).
* One engine runs every CTA strategy of an account (:mod:`qsm_vnpy.session`), as
  vnpy does; the fence stays per strategy. Immediately before an order of a
  strategy goes to the gateway, or a stop order is placed or triggers, that
  strategy's ``context.lease_valid()`` is asked, and when it is False (or the
  resume check halted the strategy's symbol in the account) the order is refused
  with a log line and nothing is sent.
* On the replay gateway (``replay`` set) stop orders follow vnpy's
  ``BacktestingEngine`` in bar mode instead of its live rule: ticks do not trigger
  them; the replay crosses them against each bar after the limit orders
  (:meth:`MemoryCtaEngine.cross_stop_orders`), and the strategy is called as the
  backtester calls it: nothing when a stop order is placed; ``on_stop_order``
  (triggered), ``on_order`` (all traded), then ``on_trade`` when one triggers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from vnpy.event import EventEngine
from vnpy.trader.constant import Direction, Interval, Offset, OrderType
from vnpy.trader.database import DB_TZ
from vnpy.trader.engine import MainEngine
from vnpy.trader.object import BarData, ContractData, OrderRequest, TickData
from vnpy.trader.setting import SETTINGS
from vnpy_ctastrategy.base import APP_NAME, STOPORDER_PREFIX, StopOrder, StopOrderStatus
from vnpy_ctastrategy.engine import CtaEngine
from vnpy_ctastrategy.template import CtaTemplate

from qsm_vnpy.bars import Bar
from qsm_vnpy.replay import ReplayGateway
from qsm_vnpy.state import variables_of
from strategy_manager.core.context import EngineContext

log = logging.getLogger("strategy_manager.engine.vnpy")


class QsmMainEngine(MainEngine):
    """vnpy's MainEngine without its ``os.chdir``: the working directory belongs to
    the process, which runs many strategies."""

    def __init__(self, event_engine: EventEngine) -> None:
        self.event_engine = event_engine
        self.event_engine.start()
        self.gateways = {}
        self.engines = {}
        self.apps = {}
        self.exchanges = []
        self.init_engines()


class MemoryCtaEngine(CtaEngine):
    """vnpy's CtaEngine without files, with a fence per strategy, and with the
    backtester's stop orders on the replay gateway (see the module docstring). A
    strategy's runner registers its context and its crash callback under the
    strategy's name before adding it; set ``replay`` on the replay gateway."""

    replay: ReplayGateway | None = None

    def init_engine(self) -> None:
        #: Strategy name -> its context (the fence, the logger).
        self.contexts: dict[str, EngineContext] = {}
        #: Strategy name -> called with the callback's name and the exception when
        #: one of its callbacks raised.
        self.on_raise: dict[str, Callable[[str, BaseException], None]] = {}
        #: Strategy name -> the fields to put back after its ``on_init``.
        self.restored_fields: dict[str, dict[str, Any]] = {}
        #: vt_symbol -> why no strategy may send orders in it (the resume check).
        self.halted: dict[str, str] = {}
        self._refused: dict[str, int] = {}
        #: The strategy whose ``on_init`` runs now (the init executor runs one at a time).
        self._initing: str | None = None
        if SETTINGS.get("datafeed.name"):
            self.init_datafeed()
        self.register_event()

    # -- no files --------------------------------------------------------------------
    def load_strategy_setting(self) -> None:
        return None

    def load_strategy_data(self) -> None:
        return None

    def update_strategy_setting(self, strategy_name: str, setting: dict[str, Any]) -> None:
        strategy = self.strategies[strategy_name]
        self.strategy_setting[strategy_name] = {
            "class_name": type(strategy).__name__,
            "vt_symbol": strategy.vt_symbol,
            "setting": setting,
        }

    def remove_strategy_setting(self, strategy_name: str) -> None:
        self.strategy_setting.pop(strategy_name, None)
        self.strategy_data.pop(strategy_name, None)

    def sync_strategy_data(self, strategy: CtaTemplate) -> None:
        self.strategy_data[strategy.strategy_name] = variables_of(strategy)

    def call_strategy_func(self, strategy: CtaTemplate, func: Any, params: Any = None) -> None:
        failure: list[BaseException] = []

        def guarded(*args: Any) -> Any:
            try:
                return func(*args)
            except Exception as exc:
                failure.append(exc)
                raise

        super().call_strategy_func(strategy, guarded, params)
        if failure:
            report = self.on_raise.get(strategy.strategy_name)
            if report is not None:
                report(getattr(func, "__name__", "callback"), failure[0])
        elif self.restored_fields and func == strategy.on_init:
            for name, value in self.restored_fields.pop(strategy.strategy_name, {}).items():
                setattr(strategy, name, value)

    def _init_strategy(self, strategy_name: str) -> None:
        self._initing = strategy_name
        try:
            super()._init_strategy(strategy_name)
        finally:
            self._initing = None

    def load_bar(
        self,
        vt_symbol: str,
        days: int,
        interval: Interval,
        callback: Callable[[BarData], None],
        use_database: bool,
    ) -> list[BarData]:
        """On the replay, the history of the strategy being initialised: its own replay
        point decides where history ends."""
        if self.replay is None or use_database or self._initing is None:
            return super().load_bar(vt_symbol, days, interval, callback, use_database)  # type: ignore[no-any-return]
        return self.replay.history(self._initing, vt_symbol, interval, timedelta(days=days))

    # -- the fence -------------------------------------------------------------------
    def may_send(self, strategy: CtaTemplate, what: str) -> bool:
        """The strategy's fence, asked immediately before an order is sent or placed."""
        name = strategy.strategy_name
        context = self.contexts.get(name)
        halted = self.halted.get(strategy.vt_symbol)
        if context is not None and halted is None and context.lease_valid():
            return True
        count = self._refused[name] = self._refused.get(name, 0) + 1
        level = logging.ERROR if count == 1 else logging.DEBUG
        if context is None:
            log.log(level, "%s of %s refused: the strategy is not this engine's; nothing sent", what, name)
        elif halted is not None:
            context.logger.log(level, "%s refused: %s; nothing sent", what, halted)
        else:
            context.logger.log(
                level,
                "%s refused: the lease of %s is not valid (another process may own it) "
                "or its account is halted; nothing sent",
                what,
                name,
            )
        return False

    def send_server_order(
        self,
        strategy: CtaTemplate,
        contract: ContractData,
        direction: Direction,
        offset: Offset,
        price: float,
        volume: float,
        type: OrderType,
        lock: bool,
        net: bool,
    ) -> list[str]:
        if not self.may_send(strategy, _what(type.name.lower(), direction, offset, volume, price)):
            return []
        return super().send_server_order(  # type: ignore[no-any-return]
            strategy, contract, direction, offset, price, volume, type, lock, net
        )

    # -- stop orders -----------------------------------------------------------------
    def send_local_stop_order(
        self,
        strategy: CtaTemplate,
        direction: Direction,
        offset: Offset,
        price: float,
        volume: float,
        lock: bool,
        net: bool,
    ) -> list[str]:
        if not self.may_send(strategy, _what("stop", direction, offset, volume, price)):
            return []
        if self.replay is None:
            return super().send_local_stop_order(  # type: ignore[no-any-return]
                strategy, direction, offset, price, volume, lock, net
            )
        # the backtester's: the strategy is not called, and the time is the replay's
        self.stop_order_count += 1
        stop_order = StopOrder(
            vt_symbol=strategy.vt_symbol,
            direction=direction,
            offset=offset,
            price=price,
            volume=volume,
            stop_orderid=f"{STOPORDER_PREFIX}.{self.stop_order_count}",
            strategy_name=strategy.strategy_name,
            datetime=self.replay.now(strategy.strategy_name) or datetime.now(DB_TZ),
            lock=lock,
            net=net,
        )
        self.stop_orders[stop_order.stop_orderid] = stop_order
        self.strategy_orderid_map[strategy.strategy_name].add(stop_order.stop_orderid)
        self.put_stop_order_event(stop_order)
        return [stop_order.stop_orderid]

    def check_stop_order(self, tick: TickData) -> None:
        """vnpy's live rule (a tick at or through the price triggers), except on the replay."""
        if self.replay is None:
            super().check_stop_order(tick)

    def cross_stop_orders(self, bar: Bar, strategy_name: str) -> None:
        """The backtester's ``cross_stop_order`` in bar mode, on the replay's event
        thread, for the stop orders of ``strategy_name`` (whose replay played ``bar``).

        A buy stop triggers when the bar's high is at or above its price and fills at
        the higher of its price and the bar's open; a sell stop when the low is at or
        below it, at the lower of the two. Stop orders placed meanwhile (by the
        strategy's callbacks) wait for the next bar.
        """
        assert self.replay is not None
        mine = [s for s in self.stop_orders.values() if s.strategy_name == strategy_name]
        for stop_order in mine:
            if stop_order.stop_orderid not in self.stop_orders:
                continue  # cancelled meanwhile, by a callback
            buy = stop_order.direction == Direction.LONG
            if not (stop_order.price <= bar.high if buy else stop_order.price >= bar.low):
                continue
            strategy: CtaTemplate = self.strategies[stop_order.strategy_name]
            contract = self.main_engine.get_contract(stop_order.vt_symbol)
            price = max(stop_order.price, bar.open) if buy else min(stop_order.price, bar.open)
            what = _what("triggered stop", stop_order.direction, stop_order.offset, stop_order.volume, price)
            if contract is None or not self.may_send(strategy, what):
                continue
            request = OrderRequest(
                symbol=contract.symbol,
                exchange=contract.exchange,
                direction=stop_order.direction,
                offset=stop_order.offset,
                type=OrderType.LIMIT,
                price=stop_order.price,
                volume=stop_order.volume,
                reference=f"{APP_NAME}_{strategy.strategy_name}",
            )
            announce = functools.partial(self._triggered, strategy, stop_order)
            self.replay.fill_triggered(request, price, announce)

    def _triggered(self, strategy: CtaTemplate, stop_order: StopOrder, vt_orderid: str) -> None:
        """A stop order became the order ``vt_orderid``: the strategy hears it first."""
        self.orderid_strategy_map[vt_orderid] = strategy
        self.stop_orders.pop(stop_order.stop_orderid, None)
        self.strategy_orderid_map[strategy.strategy_name].discard(stop_order.stop_orderid)
        stop_order.status = StopOrderStatus.TRIGGERED
        stop_order.vt_orderids = [vt_orderid]
        self.call_strategy_func(strategy, strategy.on_stop_order, stop_order)
        self.put_stop_order_event(stop_order)


def _what(kind: str, direction: Direction, offset: Offset, volume: float, price: float) -> str:
    return f"{kind} order {direction.name} {offset.name} {volume:g} @ {price:g}"
