"""Assemble a Cerebro from a strategy document, checking every name it passes on."""

from __future__ import annotations

from typing import Any, cast

import backtrader as bt

from qsm_backtrader.feeds import build_feed
from qsm_backtrader.settings import AdapterSettings
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import InvalidStrategy

#: Cerebro settings that would let strategy code run inside the broker's turn, where
#: snapshots are taken (see engine.py), or that only make sense for optimisation.
_AT = "params.backtrader"
_REFUSED_CEREBRO = ("cheat_on_open", "optdatas", "optreturn", "maxcpus")

#: Modules the adapter vouches for, each for classes of one kind only (a document
#: may name these without configuration; anything else needs the operator's
#: import_paths or engine_class_allow).
STRATEGY_MODULES = ("backtrader.strategies", "qsm_backtrader.examples")
SIZER_MODULES = ("backtrader.sizers",)


def check_names(given: dict[str, Any], known: Any, where: str, sid: str) -> None:
    """Refuse names ``where`` does not know, listing those it does."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        names = ", ".join(sorted(known)) or "(none)"
        raise InvalidStrategy(f"{sid}: {where}: unknown {', '.join(map(repr, unknown))}; known: {names}")


def strategy_class(spec_class: str, context: EngineContext) -> Any:
    return context.load_class(spec_class, kind=bt.Strategy, trusted=STRATEGY_MODULES)


def build_cerebro(
    context: EngineContext, settings: AdapterSettings, strategy: Any, params: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """A ready Cerebro with its simulated broker, the feed, the sizer and the strategy."""
    sid = context.strategy_id
    name = strategy.__name__
    check_names(params, strategy.params._getkeys(), f"params for {name}", sid)
    check_names(settings.cerebro, bt.Cerebro.params._getkeys(), f"{_AT}.cerebro", sid)
    refused = [k for k in _REFUSED_CEREBRO if settings.cerebro.get(k)]
    if refused:
        raise InvalidStrategy(f"{sid}: {_AT}.cerebro: {', '.join(refused)} not supported")
    # cash and commission have settings of their own
    broker_keys = [k for k in bt.brokers.BackBroker.params._getkeys() if k not in ("cash", "commission")]
    check_names(settings.broker, broker_keys, f"{_AT}.broker", sid)

    cerebro = bt.Cerebro(**settings.cerebro)
    broker = bt.brokers.BackBroker(cash=settings.cash, **settings.broker)
    cerebro.setbroker(broker)
    if settings.commission:
        try:
            broker.setcommission(**settings.commission)
        except TypeError as exc:
            raise InvalidStrategy(f"{sid}: {_AT}.commission: {exc}") from None
    if settings.sizer is not None:
        sizer = context.load_class(
            settings.sizer.factory, kind=bt.Sizer, trusted=SIZER_MODULES, what=f"{_AT}.sizer.factory"
        )
        known = cast(Any, sizer).params._getkeys()
        check_names(settings.sizer.kwargs, known, f"{_AT}.sizer.kwargs for {sizer.__name__}", sid)
        cerebro.addsizer(sizer, **settings.sizer.kwargs)
    feed = build_feed(settings.feed, context)
    cerebro.adddata(feed, name=context.spec.symbol)
    cerebro.addstrategy(strategy, **params)
    return cerebro, broker, feed
