"""Engine ``python``: run a user's own class named by ``engine_class``.

Two kinds of class are accepted:

* a plain engine, constructed as ``Cls(symbol, params)``, with ``start()`` and
  ``stop()`` that return promptly and optional ``snapshot() -> dict`` and
  ``restore(state)`` (the seed's ``MyEngine``);
* a :class:`~strategy_manager.core.worker.StrategyWorker` subclass, constructed as
  ``Cls(symbol, strategy_key, params, spec=spec, context=context)``; its ``run()``
  gets a watched thread and its ``get_state()``/``set_state()`` take part in snapshots.

A plain engine whose constructor has a ``context`` parameter gets the strategy's
:class:`~strategy_manager.core.context.EngineContext` too. An engine that sends
orders needs it: it must call ``context.lease_valid()`` before every order.

Either may declare what it accepts, so a bad document is refused before it runs:
``parameters`` (the names it accepts; a class attribute of the same name gives the
type by its default, as vnpy's strategies do) and ``validate_params(params)`` (a
static or class method raising ValueError or TypeError).
"""

from __future__ import annotations

import inspect
from typing import Any

from attrs import define

from strategy_manager import __version__
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import InvalidStrategy
from strategy_manager.core.hookspecs import hookimpl
from strategy_manager.core.spec import StrategySpec
from strategy_manager.core.validation import check_params
from strategy_manager.core.worker import StrategyWorker


@define
class _Engine:
    target: Any
    is_worker: bool


@hookimpl
def qsm_engine_info() -> dict[str, Any]:
    return {
        "name": "python",
        "version": __version__,
        "capabilities": ["snapshot", "restore"],
        "description": "a user class with start()/stop() named by engine_class",
    }


def _load(spec: StrategySpec, context: EngineContext) -> type:
    if not spec.engine_class:
        raise InvalidStrategy(f"{spec.id}: engine 'python' needs an engine_class")
    return context.load_class(spec.engine_class, kind=object)


def check_class(spec: StrategySpec, cls: type) -> None:
    """What can be told of ``cls`` and ``spec.params`` without constructing it: a
    StrategyWorker or a class with start() and stop(); params among its declared
    ``parameters`` (typed by the class attributes of those names, if any); and its
    own ``validate_params(params)``, if it has one, raising ValueError or TypeError."""
    where = f"params for {cls.__name__}"
    if not issubclass(cls, StrategyWorker):
        missing = [m for m in ("start", "stop") if not callable(getattr(cls, m, None))]
        if missing:
            lacks = ", ".join(f"{m}()" for m in missing)
            raise InvalidStrategy(f"{spec.id}: engine_class {spec.engine_class!r} lacks {lacks}")
    declared = getattr(cls, "parameters", None)
    if isinstance(declared, list | tuple | set | frozenset):
        accepted = {str(name): getattr(cls, str(name), None) for name in declared}
        check_params(spec.id, where, spec.params, accepted)
    validate = getattr(cls, "validate_params", None)
    if callable(validate):
        try:
            validate(dict(spec.params))
        except (ValueError, TypeError) as exc:
            raise InvalidStrategy(f"{spec.id}: {where}: {' '.join(str(exc).split())}") from None


@hookimpl
def qsm_validate_engine(spec: StrategySpec, context: EngineContext) -> None:
    check_class(spec, _load(spec, context))


@hookimpl
def qsm_create_engine(spec: StrategySpec, context: EngineContext) -> _Engine:
    return make_engine(spec, _load(spec, context), context)


def make_engine(spec: StrategySpec, cls: type, context: EngineContext) -> _Engine:
    """Construct the user class ``cls`` (already loaded and checked) for ``spec``; a
    class whose constructor takes ``context`` gets the strategy's context."""
    check_class(spec, cls)
    make: Any = cls  # user classes take their own constructor arguments
    if issubclass(cls, StrategyWorker):
        return _Engine(
            make(spec.symbol, spec.strategy_key, dict(spec.params), spec=spec, context=context), True
        )
    extra = {"context": context} if _takes_context(cls) else {}
    return _Engine(make(spec.symbol, dict(spec.params), **extra), False)


def _takes_context(cls: type) -> bool:
    try:
        return "context" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


@hookimpl
def qsm_restore_engine(engine: _Engine, snapshot: dict[str, Any], context: EngineContext) -> None:
    if engine.is_worker:
        engine.target.set_state(snapshot)
    elif callable(getattr(engine.target, "restore", None)):
        engine.target.restore(snapshot)
    else:
        context.logger.warning("snapshot found but %s has no restore()", type(engine.target).__name__)


@hookimpl
def qsm_start_engine(engine: _Engine, context: EngineContext) -> None:
    if engine.is_worker:
        worker = engine.target
        worker._stop_event = context.stop_event
        context.spawn(worker.run, name="run")
    else:
        engine.target.start()


@hookimpl
def qsm_stop_engine(engine: _Engine, context: EngineContext) -> None:
    engine.target.stop(save_state=False) if engine.is_worker else engine.target.stop()


@hookimpl
def qsm_snapshot_engine(engine: _Engine, context: EngineContext) -> dict[str, Any] | None:
    if engine.is_worker:
        state: dict[str, Any] | None = engine.target.get_state()
        return state
    snapshot = getattr(engine.target, "snapshot", None)
    return snapshot() if callable(snapshot) else None
