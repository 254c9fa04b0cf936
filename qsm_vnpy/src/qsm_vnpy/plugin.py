"""Hook implementations for engine ``vnpy``.

Thin on purpose: vnpy (which loads numpy, pandas and talib) and the adapter's
modules are imported inside the hooks, after :mod:`qsm_vnpy.home` has pointed
vnpy's folder at our data directory. Importing this module imports no vnpy.

Two kinds of ``engine_class``:

* a ``CtaTemplate`` subclass runs inside vnpy's MainEngine and CtaEngine with the
  document's gateway (:mod:`qsm_vnpy.cta`);
* any other class is the user's own real-time engine, constructed as
  ``Cls(symbol, params)`` and driven by ``start()``/``stop()`` with optional
  ``snapshot()``/``restore(state)``, as engine ``python`` does.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import attrs

from strategy_manager.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from strategy_manager.core.context import EngineContext
    from strategy_manager.core.spec import StrategySpec

#: Modules whose CtaTemplate subclasses documents may name without configuration.
CTA_MODULES = ("vnpy_ctastrategy.strategies", "qsm_vnpy.examples")
#: Modules whose user engines (any class) documents may name without configuration.
ENGINE_MODULES = ("qsm_vnpy.examples.breakout_engine",)
#: Places in ``engine_options.vnpy`` that hold secrets, masked wherever settings are
#: shown (every value under ``gateways`` is masked by the core in any case).
SECRET_OPTIONS = [
    ["gateways"],
    ["settings", "datafeed.username"],
    ["settings", "datafeed.password"],
    ["settings", "database.user"],
    ["settings", "database.password"],
]


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _timeout(context: EngineContext, name: str) -> float:
    return float(context.options.get(name, 5.0))


def _is_cta(engine: Any) -> bool:
    from qsm_vnpy.cta import CtaRunner

    return isinstance(engine, CtaRunner)


@hookimpl
def qsm_engine_info() -> dict[str, Any]:
    return {
        "name": "vnpy",
        "version": _version("vnpy"),
        "capabilities": ["snapshot", "restore", "cta", "user-engine", "replay-gateway", "resume-check"],
        "description": "vnpy CTA strategies on any vnpy gateway, or a user's own real-time engine",
        "secret_options": SECRET_OPTIONS,
    }


@attrs.define(frozen=True)
class CtaPlan:
    """A CTA document, checked: what :class:`qsm_vnpy.cta.CtaRunner` is built from."""

    settings: Any
    params: dict[str, Any]
    vt_symbol: str
    #: The gateway class the document names, or None for a known gateway's.
    gateway: Any
    setting: dict[str, Any]


def check(spec: StrategySpec, context: EngineContext) -> tuple[type, CtaPlan | None]:
    """Load and check what the document names, without starting anything: its class,
    and for a CTA strategy its params (names and types), symbol, gateway and the
    gateway setting a document may give. Returns the class and, for a CTA strategy,
    the plan; a user engine is checked as engine ``python`` checks it."""
    from qsm_vnpy import home
    from strategy_manager.core.errors import InvalidStrategy

    if not spec.engine_class:
        raise InvalidStrategy(
            f"{spec.id}: engine 'vnpy' needs an engine_class (a CtaTemplate subclass or an engine class)"
        )
    options = context.options
    home.prepare(context.data_dir.parent, dict(options.get("settings", {})))
    cls = engine_class(spec.engine_class, context)

    from vnpy_ctastrategy.template import CtaTemplate

    if not issubclass(cls, CtaTemplate):
        from strategy_manager.plugins import python_engine

        python_engine.check_class(spec, cls)
        return cls, None

    from qsm_vnpy.gateways import check_installed, gateway_setting, named_gateway
    from qsm_vnpy.replay import ReplayGateway
    from qsm_vnpy.settings import replay_settings, split_params
    from qsm_vnpy.symbols import to_vt_symbol
    from strategy_manager.core.validation import check_params

    settings, params = split_params(spec)
    accepted = {str(name): getattr(cls, str(name), None) for name in getattr(cls, "parameters", [])}
    check_params(spec.id, f"params for {cls.__name__}", params, accepted)
    vt_symbol = settings.vt_symbol or to_vt_symbol(spec.symbol, options.get("exchange_map"), spec.id)
    named = named_gateway(settings.gateway.name, settings.gateway.cls, context)
    setting = gateway_setting(settings.gateway, named, context)
    if named is None:
        check_installed(settings.gateway.name, spec.id)
    if (named is None and settings.gateway.name == "REPLAY") or (named and issubclass(named, ReplayGateway)):
        replay_settings(setting, spec.id)
    return cls, CtaPlan(settings, params, vt_symbol, named, setting)


@hookimpl
def qsm_validate_engine(spec: StrategySpec, context: EngineContext) -> None:
    check(spec, context)


@hookimpl
def qsm_create_engine(spec: StrategySpec, context: EngineContext) -> Any:
    cls, plan = check(spec, context)
    if plan is None:
        from strategy_manager.plugins import python_engine

        return python_engine.make_engine(spec, cls, context)

    from qsm_vnpy.cta import CtaRunner
    from qsm_vnpy.gateways import gateway_class

    gateway = plan.gateway or gateway_class(plan.settings.gateway.name, None, context)
    return CtaRunner(context, plan.settings, cls, plan.params, plan.vt_symbol, gateway, plan.setting)


def engine_class(dotted: str, context: EngineContext) -> type:
    """The class ``engine_class`` names: a user engine (any class) from the operator's
    modules or :data:`ENGINE_MODULES`, else a ``CtaTemplate`` subclass, which the
    adapter also accepts from :data:`CTA_MODULES`."""
    from vnpy_ctastrategy.template import CtaTemplate

    if context.classes.admits(dotted, ENGINE_MODULES):
        return context.load_class(dotted, kind=object, trusted=ENGINE_MODULES)
    return context.load_class(dotted, kind=CtaTemplate, trusted=CTA_MODULES)


@hookimpl
def qsm_restore_engine(engine: Any, snapshot: dict[str, Any], context: EngineContext) -> None:
    if _is_cta(engine):
        engine.restore(snapshot)
    else:
        from strategy_manager.plugins import python_engine

        python_engine.qsm_restore_engine(engine=engine, snapshot=snapshot, context=context)


@hookimpl
def qsm_start_engine(engine: Any, context: EngineContext) -> None:
    if _is_cta(engine):
        engine.start()
    else:
        from strategy_manager.plugins import python_engine

        python_engine.qsm_start_engine(engine=engine, context=context)


@hookimpl
def qsm_stop_engine(engine: Any, context: EngineContext) -> None:
    if _is_cta(engine):
        engine.stop()
    else:
        from strategy_manager.plugins import python_engine

        python_engine.qsm_stop_engine(engine=engine, context=context)


@hookimpl
def qsm_snapshot_engine(engine: Any, context: EngineContext) -> dict[str, Any] | None:
    if _is_cta(engine):
        result: dict[str, Any] | None = engine.snapshot(_timeout(context, "snapshot_timeout"))
        return result
    from strategy_manager.plugins import python_engine

    return python_engine.qsm_snapshot_engine(engine=engine, context=context)
