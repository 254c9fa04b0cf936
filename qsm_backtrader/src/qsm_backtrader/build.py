"""From a strategy document to a Cerebro: :func:`plan` loads and checks every name and
value the document passes on, without building anything (the validation hook stops
there); :func:`build_cerebro` assembles the plan."""

from __future__ import annotations

import inspect
from typing import Any

import backtrader as bt
from attrs import define

from qsm_backtrader.feeds import build_feed, feed_class, reader_class
from qsm_backtrader.settings import AdapterSettings, split_params
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import InvalidStrategy
from strategy_manager.core.spec import StrategySpec
from strategy_manager.core.validation import check_params

#: Cerebro settings that would let strategy code run inside the broker's turn, where
#: snapshots are taken (see engine.py), or that only make sense for optimisation.
_AT = "params.backtrader"
_REFUSED_CEREBRO = ("cheat_on_open", "optdatas", "optreturn", "maxcpus")

#: Modules the adapter vouches for, each for classes of one kind only (a document
#: may name these without configuration; anything else needs the operator's
#: import_paths or engine_class_allow).
STRATEGY_MODULES = ("backtrader.strategies", "qsm_backtrader.examples")
SIZER_MODULES = ("backtrader.sizers",)


@define(frozen=True)
class Plan:
    """What a document asks for, loaded and checked; :func:`build_cerebro` builds it."""

    settings: AdapterSettings
    strategy: Any
    params: dict[str, Any]
    sizer: Any = None


def check_names(given: dict[str, Any], known: Any, where: str, sid: str) -> None:
    """Refuse names ``where`` does not know, listing those it does."""
    check_params(sid, where, given, dict.fromkeys(known))


def defaults(cls: Any) -> dict[str, Any]:
    """A backtrader class's params and their defaults (which type them)."""
    params = cls.params
    return dict(zip(params._getkeys(), params._getdefaults(), strict=True))


def keyword_defaults(cls: Any) -> dict[str, Any]:
    """The params of a feed class, and the keyword arguments its ``__init__`` takes."""
    accepted = defaults(cls)
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return accepted
    for name, parameter in list(signature.parameters.items())[1:]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return accepted | {"": None}  # anything goes; the empty name marks it
        if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            default = parameter.default
            accepted[name] = None if default is inspect.Parameter.empty else default
    return accepted


def plan(spec: StrategySpec, context: EngineContext) -> Plan:
    """Every class the document names loaded with its kind, every parameter checked
    by name and (where a default tells) type; nothing built, nothing started."""
    sid = context.strategy_id
    if not spec.engine_class:
        raise InvalidStrategy(f"{sid}: engine 'backtrader' needs an engine_class (a backtrader.Strategy)")
    settings, params = split_params(spec)
    strategy = context.load_class(spec.engine_class, kind=bt.Strategy, trusted=STRATEGY_MODULES)
    check_params(sid, f"params for {strategy.__name__}", params, defaults(strategy))
    check_names(settings.cerebro, bt.Cerebro.params._getkeys(), f"{_AT}.cerebro", sid)
    refused = [k for k in _REFUSED_CEREBRO if settings.cerebro.get(k)]
    if refused:
        raise InvalidStrategy(f"{sid}: {_AT}.cerebro: {', '.join(refused)} not supported")
    # cash and commission have settings of their own
    broker_keys = [k for k in bt.brokers.BackBroker.params._getkeys() if k not in ("cash", "commission")]
    check_names(settings.broker, broker_keys, f"{_AT}.broker", sid)
    commission = list(inspect.signature(bt.brokers.BackBroker.setcommission).parameters)[1:]
    check_names(settings.commission, commission, f"{_AT}.commission", sid)
    sizer = None
    if settings.sizer is not None:
        sizer = context.load_class(
            settings.sizer.factory, kind=bt.Sizer, trusted=SIZER_MODULES, what=f"{_AT}.sizer.factory"
        )
        where = f"{_AT}.sizer.kwargs for {sizer.__name__}"
        check_params(sid, where, settings.sizer.kwargs, defaults(sizer))
    feed = settings.feed
    if feed.factory:
        cls = feed_class(feed.factory, context)
        accepted = keyword_defaults(cls)
        if "" not in accepted:
            check_params(sid, f"{_AT}.feed.kwargs for {cls.__name__}", feed.kwargs, accepted)
    elif feed.store is not None:
        if context.account is None:
            raise InvalidStrategy(
                f"{sid}: {_AT}.feed.store takes its bars from the shared store of the strategy's account: "
                "name an account whose settings have a store"
            )
        from qsm_backtrader.session import store_class

        store_class(context.account, context)
    else:
        cls = reader_class(feed)
        check_names(feed.reader, defaults(cls), f"{_AT}.feed.reader for {cls.__name__}", sid)
    return Plan(settings, strategy, params, sizer)


def build_cerebro(context: EngineContext, plan: Plan) -> tuple[Any, Any, Any]:
    """A ready Cerebro with its simulated broker, the feed, the sizer and the strategy."""
    settings = plan.settings
    cerebro = bt.Cerebro(**settings.cerebro)
    broker = bt.brokers.BackBroker(cash=settings.cash, **settings.broker)
    cerebro.setbroker(broker)
    if settings.commission:
        try:
            broker.setcommission(**settings.commission)
        except TypeError as exc:
            raise InvalidStrategy(f"{context.strategy_id}: {_AT}.commission: {exc}") from None
    if plan.sizer is not None and settings.sizer is not None:
        cerebro.addsizer(plan.sizer, **settings.sizer.kwargs)
    feed = build_feed(settings.feed, context)
    cerebro.adddata(feed, name=context.spec.symbol)
    cerebro.addstrategy(plan.strategy, **plan.params)
    return cerebro, broker, feed
